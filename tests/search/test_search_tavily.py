"""Unit tests of the Tavily backend's pure parts: response parsing, error mapping (Retry-After parsing is shared:
tests/resilience/test_res_units.py)."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from tavily.errors import (
    BadRequestError,
    ForbiddenError,
    InvalidAPIKeyError,
    TavilyKeylessLimitError,
    UsageLimitExceededError,
)
from tavily.errors import TimeoutError as TavilyTimeoutError

from services.search.core import SearchParams
from services.search.tavily import map_error, parse_response, query_hash

PARAMS = SearchParams("acme", 20, "advanced", True)


def test_parse_response_shapes_and_credits() -> None:
    body = {
        "query": "acme",
        "results": [
            {"title": "A", "url": "https://a.com", "content": "c", "raw_content": None, "score": 0.8},
            {"title": None, "url": "https://b.com", "content": "x\ud83dy", "score": "0.5"},
            {"title": "no url", "content": "dropped", "score": 0.9},
            "junk",
            {"url": "https://c.com", "score": float("nan")},
        ],
        "usage": {"credits": 1},
        "request_id": "rid",
        "response_time": 1.5,
    }
    page = parse_response(body, PARAMS)
    assert [h.url for h in page.hits] == ["https://a.com", "https://b.com", "https://c.com"]
    assert page.hits[0].raw_content == "" and page.hits[1].title == ""
    assert page.hits[1].content == "x\ufffdy" and page.hits[1].score == 0.5
    assert page.hits[2].score == 0.0
    assert (page.credits, page.request_id, page.response_time_s) == (1, "rid", 1.5)  # usage.credits wins
    assert parse_response({"results": []}, PARAMS).credits == 2  # advanced, no usage
    assert parse_response({}, SearchParams("q", 5, "basic", False)).credits == 1


def test_parse_response_refuses_non_objects() -> None:
    with pytest.raises(Exception) as info:
        parse_response(["not", "an", "object"], PARAMS)
    assert getattr(info.value, "code", None) == grpc.StatusCode.UNAVAILABLE


def test_query_hash_is_short_and_stable() -> None:
    assert query_hash("acme") == query_hash("acme") != query_hash("acme2")
    assert len(query_hash("acme")) == 12


def _status_error(code: int) -> httpx.HTTPStatusError:
    req = httpx.Request("POST", "https://api.tavily.com/search")
    return httpx.HTTPStatusError("x", request=req, response=httpx.Response(code, request=req))


@pytest.mark.parametrize(
    ("exc", "status", "code", "reason"),
    [
        (InvalidAPIKeyError("Unauthorized"), 401, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_API_KEY"),
        (UsageLimitExceededError("slow down"), 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        (ForbiddenError("plan limit"), 432, grpc.StatusCode.FAILED_PRECONDITION, "CREDITS_EXHAUSTED"),
        (ForbiddenError(""), 433, grpc.StatusCode.FAILED_PRECONDITION, "CREDITS_EXHAUSTED"),
        (BadRequestError("Invalid topic"), 400, grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_BAD_REQUEST"),
        (TavilyTimeoutError(3.0), None, grpc.StatusCode.UNAVAILABLE, "TIMEOUT"),
        (TimeoutError(), None, grpc.StatusCode.UNAVAILABLE, "TIMEOUT"),
        (_status_error(502), 502, grpc.StatusCode.UNAVAILABLE, ""),
        (_status_error(404), 404, grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_ERROR"),
        (httpx.ConnectError("refused"), None, grpc.StatusCode.UNAVAILABLE, "CONNECTION"),
        (httpx.RemoteProtocolError("cut"), 200, grpc.StatusCode.UNAVAILABLE, "CONNECTION"),
        (json.JSONDecodeError("bad", "{", 0), 200, grpc.StatusCode.UNAVAILABLE, "MALFORMED_RESPONSE"),
        (TypeError("exceptions must derive from BaseException"), 202, grpc.StatusCode.UNAVAILABLE, "UNEXPECTED_STATUS"),
    ],
)
def test_error_mapping(exc: BaseException, status: int | None, code: grpc.StatusCode, reason: str) -> None:
    err = map_error(exc, status=status, retry_after=2.0, timeout=3.0)
    assert err is not None
    assert err.code == code
    assert err.provider == "tavily"
    if reason:
        assert err.reason == reason


def test_rate_limit_keeps_retry_after_and_keyless_hint() -> None:
    err = map_error(UsageLimitExceededError("x"), status=429, retry_after=2.5, timeout=1)
    assert getattr(err, "retry_after", None) == 2.5
    keyless = TavilyKeylessLimitError("limit", retry_after_seconds=7)
    assert getattr(map_error(keyless, status=429, retry_after=None, timeout=1), "retry_after", None) == 7


def test_unknown_errors_are_not_mapped() -> None:
    assert map_error(TypeError("a bug"), status=200, retry_after=None, timeout=1) is None
    assert map_error(KeyError("a bug"), status=None, retry_after=None, timeout=1) is None


def test_key_never_in_messages() -> None:
    err = map_error(InvalidAPIKeyError("bad key tvly-secret"), status=401, retry_after=None, timeout=1)
    assert err is not None and "tvly-secret" not in err.message
