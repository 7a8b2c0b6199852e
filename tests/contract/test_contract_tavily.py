"""Tavily Search contract (tests/contract/README.md): each fixture in ``fixtures/tavily/`` is run two ways.

1. Our client (``services.search.tavily.TavilyBackend``, tavily-python 0.8.5 ``AsyncTavilyClient`` underneath) is
   pointed at a loopback server answering the documented response: it parses it (hits, score, raw content,
   credits, request id) or raises the documented error as the :mod:`shared.errors` error our callers rely on.
2. The sandbox answers the fixture's documented request (over real HTTP, no SDK in between) with the documented
   status and a body valid against the same fixture's schema.
"""

from __future__ import annotations

import grpc
import pytest
from contract_kit import ContractFixture, assert_matches_fixture, fixtures_of, load_fixture, send_to_sandbox

from services.search.core import SearchParams
from services.search.tavily import TavilyBackend
from shared.config import Settings
from shared.errors import VantageError

KEY = "tvly-contract-test-key"
#: A query the sandbox corpus answers, so that way 2 checks the shape of real result items, not an empty list.
CORPUS_QUERY = "GPU cloud providers for training"

#: error fixture → (gRPC status, reason) our client raises for it (services/search/tavily.py map_error).
ERRORS = {
    "search_400_query_too_long": (grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_BAD_REQUEST"),
    "search_401_invalid_key": (grpc.StatusCode.FAILED_PRECONDITION, "INVALID_API_KEY"),
    "search_429_rate_limited": (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
    "search_432_plan_limit": (grpc.StatusCode.FAILED_PRECONDITION, "CREDITS_EXHAUSTED"),
    "search_433_paygo_limit": (grpc.StatusCode.FAILED_PRECONDITION, "CREDITS_EXHAUSTED"),
}


def _backend(base_url: str) -> TavilyBackend:
    return TavilyBackend(Settings(tavily_base_url=base_url, tavily_api_key=KEY, retry_attempts=1,
                                  retry_initial_seconds=0.01, retry_max_seconds=0.02, circuit_failure_threshold=0))


def _params(fx: ContractFixture) -> SearchParams:
    body = fx.request["json"]
    return SearchParams(
        query=body["query"],
        max_results=body.get("max_results", 5),
        search_depth=body.get("search_depth", "basic"),
        include_raw_content=bool(body.get("include_raw_content")),
    )


def test_every_tavily_fixture_is_covered_here():
    names = {fx.name for fx in fixtures_of("tavily")}
    assert names == set(ERRORS) | {"search_docs_example", "search_advanced_usage"}


# --- way 1: our client against the documented answers ---------------------------------------------------------


async def test_client_parses_the_docs_example(documented_server):
    fx = load_fixture("tavily", "search_docs_example")
    documented_server.serve(fx)
    backend = _backend(documented_server.url)
    try:
        page = await backend.search(_params(fx), timeout_s=10)
    finally:
        await backend.aclose()
    doc = fx.body["results"][0]
    assert [(h.url, h.title, h.score) for h in page.hits] == [(doc["url"], doc["title"], doc["score"])]
    assert page.hits[0].content == doc["content"] and page.hits[0].raw_content == ""  # raw_content: null
    assert page.response_time_s == pytest.approx(1.67)  # the docs send it as the string "1.67"
    assert page.credits == 1  # no usage in the answer: basic depth = 1 credit (api-credits page)


async def test_client_sends_the_documented_request_and_reads_usage_credits(documented_server):
    fx = load_fixture("tavily", "search_advanced_usage")
    documented_server.serve(fx)
    backend = _backend(documented_server.url)
    try:
        page = await backend.search(_params(fx), timeout_s=10)
    finally:
        await backend.aclose()
    (sent,) = documented_server.received
    assert (sent.method, sent.path) == ("POST", "/search")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == fx.request["json"]  # the SDK drops None values; nothing else is sent
    doc = fx.body["results"][0]
    assert page.credits == 2 and page.request_id == fx.body["request_id"]
    assert page.hits[0].raw_content == doc["raw_content"] and page.hits[0].score == doc["score"]


@pytest.mark.parametrize("name", sorted(ERRORS))
async def test_client_maps_the_documented_error(documented_server, name):
    fx = load_fixture("tavily", name)
    documented_server.serve(fx)
    backend = _backend(documented_server.url)
    try:
        with pytest.raises(VantageError) as info:
            await backend.search(_params(fx), timeout_s=10)
    finally:
        await backend.aclose()
    code, reason = ERRORS[name]
    assert (info.value.code, info.value.reason, info.value.provider) == (code, reason, "tavily")
    assert f"HTTP {fx.status}" in info.value.message and KEY not in info.value.message
    if fx.status == 400:  # the provider's reason reaches the caller
        assert fx.body["detail"]["error"] in info.value.message


# --- way 2: the sandbox against the same fixtures --------------------------------------------------------------


@pytest.mark.parametrize("name", ["search_docs_example", "search_advanced_usage"])
async def test_sandbox_answers_the_documented_search_in_the_documented_shape(sandbox_http, sandbox_base, name):
    fx = load_fixture("tavily", name)
    r = await send_to_sandbox(sandbox_http, sandbox_base("tavily"), fx,
                              json_body={**fx.request["json"], "query": CORPUS_QUERY})
    body = assert_matches_fixture(r, fx)
    assert body["results"], "the corpus query found nothing: the result items' shape went unchecked"
    if fx.request["json"].get("include_usage"):
        assert body["usage"] == {"credits": 2 if fx.request["json"]["search_depth"] == "advanced" else 1}
    if fx.request["json"].get("include_raw_content"):
        assert all(isinstance(x["raw_content"], str) for x in body["results"])


async def test_sandbox_rejects_the_long_query_as_tavily_does(sandbox_http, sandbox_base):
    fx = load_fixture("tavily", "search_400_query_too_long")
    r = await send_to_sandbox(sandbox_http, sandbox_base("tavily"), fx)
    assert assert_matches_fixture(r, fx) == fx.body  # the exact message real users met


async def test_sandbox_answers_401_without_a_key(sandbox_http, sandbox_base):
    fx = load_fixture("tavily", "search_401_invalid_key")
    r = await send_to_sandbox(sandbox_http, sandbox_base("tavily"), fx, headers={"Authorization": ""})
    assert assert_matches_fixture(r, fx) == fx.body


@pytest.mark.parametrize("name", ["search_429_rate_limited", "search_432_plan_limit", "search_433_paygo_limit"])
async def test_sandbox_forced_limits_have_the_documented_shape(sandbox_http, sandbox_base, name):
    fx = load_fixture("tavily", name)
    r = await send_to_sandbox(sandbox_http, sandbox_base("tavily"), fx, headers={"X-Sandbox-Fault": str(fx.status)})
    body = assert_matches_fixture(r, fx)
    if fx.status in (432, 433):
        assert body == fx.body
