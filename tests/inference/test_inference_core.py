"""Pure parts of the inference service: request validation, SDK error mapping, JSON answers, retry-after."""

from __future__ import annotations

import email.utils
import time

import httpx2
import openai
import pytest

from services.inference.core import Inference, build_request
from services.inference.providers import ChatMessage, CompletionRequest, parse_retry_after
from services.inference.providers.openai import (
    OpenAIProvider,
    map_openai_error,
    parse_json_answer,
    response_format,
)
from services.inference.router import Router
from shared.config import Settings
from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)

_REQ = httpx2.Request("POST", "http://sandbox.invalid/openai/v1/chat/completions")


def _status_error(cls: type[openai.APIStatusError], status: int, body: dict, headers: dict | None = None):
    resp = httpx2.Response(status, headers=headers or {}, request=_REQ)
    return cls(f"Error code: {status}", response=resp, body=body)


# --- build_request ---------------------------------------------------------------------------------------------


def test_build_request_normalises() -> None:
    req = build_request(
        model=" gpt-4.1 ",
        messages=[("system", "be brief"), ("user", "hi")],
        json_schema='{"type": "object", "properties": {}}',
        location="us",
    )
    assert req.model == "gpt-4.1"
    assert req.messages == [ChatMessage("system", "be brief"), ChatMessage("user", "hi")]
    assert req.json_schema == {"type": "object", "properties": {}}
    assert req.schema_name == "result"
    assert req.location == "US"
    assert req.max_output_tokens == 0


def test_build_request_collects_every_violation() -> None:
    with pytest.raises(InvalidArgument) as ei:
        build_request(
            model="",
            messages=[("user", "a"), ("tool", "b")],
            json_schema="[1, 2]",
            location="USA",
            max_output_tokens=-1,
        )
    fields = [f for f, _ in ei.value.violations]
    assert fields == ["model", "messages[1].role", "json_schema", "location", "max_output_tokens"]


def test_build_request_needs_messages() -> None:
    with pytest.raises(InvalidArgument) as ei:
        build_request(model="gpt-4.1", messages=[])
    assert [f for f, _ in ei.value.violations] == ["messages"]


def test_build_request_rejects_non_json_schema() -> None:
    with pytest.raises(InvalidArgument) as ei:
        build_request(model="gpt-4.1", messages=[("user", "x")], json_schema="{not json")
    assert ei.value.violations[0][0] == "json_schema"


# --- OpenAI request shape and answers ---------------------------------------------------------------------------


def test_response_format_is_strict_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = CompletionRequest(model="gpt-4.1", messages=[ChatMessage("user", "x")], json_schema=schema)
    assert response_format(req) == {
        "type": "json_schema",
        "json_schema": {"name": "result", "schema": schema, "strict": True},
    }
    req.schema_name = "classification"
    assert response_format(req)["json_schema"]["name"] == "classification"  # type: ignore[index]
    req.json_schema = None
    assert response_format(req) is None


def test_parse_json_answer_reserialises() -> None:
    assert parse_json_answer('{ "tier": "HOT",\n "score": 90 }', "stop", "openai") == '{"tier":"HOT","score":90}'


def test_parse_json_answer_malformed_is_retryable() -> None:
    with pytest.raises(Unavailable) as ei:
        parse_json_answer('{"tier": "HOT"', "stop", "openai")
    assert ei.value.reason == "malformed_response"


def test_parse_json_answer_truncated_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as ei:
        parse_json_answer('{"tier": "HOT", "rationale": "abc', "length", "openai")
    assert ei.value.reason == "OUTPUT_TRUNCATED"
    assert ei.value.violations[0][0] == "max_output_tokens"


# --- error mapping ----------------------------------------------------------------------------------------------


def test_rate_limit_maps_to_resource_exhausted_with_retry_after() -> None:
    e = _status_error(openai.RateLimitError, 429, {"message": "slow down", "code": "rate_limit_exceeded"},
                      {"retry-after-ms": "1500", "retry-after": "9"})
    err = map_openai_error(e)
    assert isinstance(err, ResourceExhausted)
    assert err.retry_after == pytest.approx(1.5)  # the millisecond header is the more precise one
    assert err.provider == "openai"


@pytest.mark.parametrize(
    "err",
    [
        openai.APIConnectionError(request=_REQ),
        openai.APITimeoutError(request=_REQ),
        _status_error(openai.InternalServerError, 500, {"message": "boom"}),
        _status_error(openai.InternalServerError, 503, {"message": "busy"}),
    ],
)
def test_transient_errors_map_to_unavailable(err: openai.APIError) -> None:
    mapped = map_openai_error(err)
    assert isinstance(mapped, Unavailable)
    assert mapped.provider == "openai"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("context_length_exceeded", "This model's maximum context length is 128000 tokens."),
        (None, "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens"),
        (None, "Input is too long for requested model."),
        (None, "Request too large for gpt-4.1"),
        ("string_above_max_length", "Invalid 'messages[0].content': string too long."),
        (None, "The request is not supported: request not supported"),
    ],
)
def test_context_too_long(code: str | None, message: str) -> None:
    e = _status_error(openai.BadRequestError, 400, {"message": message, "code": code, "param": "messages"})
    err = map_openai_error(e)
    assert isinstance(err, InvalidArgument)
    assert err.reason == "CONTEXT_TOO_LONG"
    assert err.violations[0][0] == "messages"


def test_other_bad_request() -> None:
    e = _status_error(openai.BadRequestError, 400, {"message": "Invalid schema", "param": "response_format"})
    err = map_openai_error(e)
    assert isinstance(err, InvalidArgument)
    assert err.reason == "PROVIDER_BAD_REQUEST"
    assert err.violations[0][0] == "response_format"


def test_auth_error_never_shows_the_key() -> None:
    e = _status_error(openai.AuthenticationError, 401,
                      {"message": "Incorrect API key provided: sk-live-abcdefghijklmnop", "code": "invalid_api_key"})
    err = map_openai_error(e)
    assert isinstance(err, FailedPrecondition)
    assert "rejected" in err.message
    assert "sk-live" not in err.message


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": date}) or 0) <= 31


# --- providers not built, keys missing --------------------------------------------------------------------------


async def test_unbuilt_provider_is_unimplemented() -> None:
    core = Inference(Settings(), Router(), {})
    req = build_request(model="claude-sonnet-5", messages=[("user", "hi")])
    with pytest.raises(Unimplemented, match="anthropic"):
        await core.complete(req)


async def test_missing_key_is_failed_precondition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("VANTAGE_OPENAI_API_KEY", raising=False)
    settings = Settings(sandbox_url="", _env_file=None)  # a real provider, no key
    provider = OpenAIProvider.from_settings(settings)
    assert not provider.available
    core = Inference(settings, Router(), {"openai": provider})
    with pytest.raises(FailedPrecondition, match="OPENAI_API_KEY is not set"):
        await core.complete(build_request(model="gpt-4.1", messages=[("user", "hi")]))
