"""Anthropic contract (tests/contract/README.md): Messages with the web search server tool, native structured output
(``output_config.format``), and the 400 a forced tool gets with thinking on — each fixture in
``fixtures/anthropic/`` run two ways.

1. Our client (``services.inference.providers.anthropic.AnthropicProvider``, anthropic SDK underneath) against a
   loopback server answering the documented response: what it sent matches the documented request, what it
   parsed matches the documented body (or the error is the one our callers rely on).
2. The sandbox answers the documented request with the documented status and a body valid against the same
   fixture's schema.
"""

from __future__ import annotations

import json

import pytest
from contract_kit import assert_matches_fixture, fixtures_of, load_fixture, send_to_sandbox
from contract_kit_llm import provider_at, user_request

from services.inference import pricing
from shared.errors import InvalidArgument

pytestmark = pytest.mark.integration

CASES = {"messages_web_search", "messages_structured_output", "messages_400_forced_tool_with_thinking"}


def test_every_anthropic_fixture_is_covered_here() -> None:
    assert {fx.name for fx in fixtures_of("anthropic")} == CASES


# --- way 1: our client against the documented answers ---------------------------------------------------------


async def test_client_sends_the_documented_web_search_request_and_parses_the_answer(documented_server) -> None:
    fx = load_fixture("anthropic", "messages_web_search")
    documented_server.serve(fx)
    body = fx.request["json"]
    provider = provider_at("anthropic", documented_server.url, web_search_max_uses=body["tools"][0]["max_uses"])
    try:
        r = await provider.complete(user_request(fx, web_search=True, location="US", max_output_tokens=2048))
    finally:
        await provider.aclose()
    sent = documented_server.received[0]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["anthropic-version"]  # the SDK's own version, not the docs' (see disagreements)
    key = "sk-ant-contract-test"  # docs: x-api-key; SDK 2.x: Bearer (see disagreements)
    assert sent.headers.get("x-api-key") == key or sent.headers.get("authorization") == f"Bearer {key}"
    assert sent.json() == body
    doc = fx.body
    texts = [b["text"] for b in doc["content"] if b["type"] == "text"]
    assert r.text == "".join(texts)
    assert [(c.url, c.title) for c in r.citations] == [("https://en.wikipedia.org/wiki/Claude_Shannon",
                                                        "Claude Shannon - Wikipedia")]
    assert r.search_queries == ["claude shannon birth date"]
    assert r.links_attached == []  # the docs' one search result is cited: nothing retrieved-but-not-cited
    assert r.web_search_calls == doc["usage"]["server_tool_use"]["web_search_requests"] == 1
    assert (r.input_tokens, r.output_tokens) == (6039, 931) and r.finish_reason == "end_turn"
    s = provider._settings
    assert r.cost_usd == pricing.token_cost_usd(s, body["model"], 6039, 931) + pricing.web_search_cost_usd(
        s, 1, body["model"])


async def test_client_asks_for_structured_output_not_a_forced_tool(documented_server) -> None:
    fx = load_fixture("anthropic", "messages_structured_output")
    documented_server.serve(fx)
    body = fx.request["json"]
    provider = provider_at("anthropic", documented_server.url)
    schema = body["output_config"]["format"]["schema"]
    try:
        r = await provider.complete(user_request(fx, json_schema=schema, max_output_tokens=1024))
    finally:
        await provider.aclose()
    sent = documented_server.received[0].json()
    assert sent == body  # output_config, no tools / tool_choice, max_tokens = 1024 + thinking headroom
    assert "tool_choice" not in sent and "tools" not in sent
    assert json.loads(r.json_text) == {"tier": "HOT", "score": 88}  # the thinking block is not the answer
    assert r.output_tokens == fx.body["usage"]["output_tokens"]


async def test_client_maps_the_documented_400(documented_server) -> None:
    fx = load_fixture("anthropic", "messages_400_forced_tool_with_thinking")
    documented_server.serve(fx)
    provider = provider_at("anthropic", documented_server.url)
    try:
        with pytest.raises(InvalidArgument) as ei:
            await provider.complete(user_request(fx, max_output_tokens=256))
    finally:
        await provider.aclose()
    assert ei.value.reason == "PROVIDER_BAD_REQUEST"
    assert fx.body["error"]["message"] in ei.value.message
    assert ei.value.metadata["provider_error_code"] == "invalid_request_error"
    assert len(documented_server.received) == 1  # a 400 is not retried


# --- way 2: the sandbox answers the documented requests in the documented shape --------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
async def test_sandbox_answers_in_the_documented_shape(name: str, sandbox_http, sandbox_base) -> None:
    fx = load_fixture("anthropic", name)
    body = assert_matches_fixture(await send_to_sandbox(sandbox_http, sandbox_base("anthropic"), fx), fx)
    if fx.status != 200:
        return
    assert body["type"] == "message" and body["model"]  # required by the SDK's Message type (see disagreements)
    kinds = [b["type"] for b in body["content"]]
    if name == "messages_web_search":
        assert {"server_tool_use", "web_search_tool_result", "text"} <= set(kinds)
        cited = [c for b in body["content"] if b["type"] == "text" for c in b.get("citations") or []]
        assert cited and {c["type"] for c in cited} == {"web_search_result_location"}
    else:
        assert kinds[0] == "thinking"  # claude-sonnet-5 thinks by default
        texts = [b["text"] for b in body["content"] if b["type"] == "text"]
        answer = json.loads("".join(texts))
        assert set(answer) >= set(fx.request["json"]["output_config"]["format"]["schema"]["required"])
