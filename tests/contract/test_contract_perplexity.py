"""Perplexity Agent API contract (tests/contract/README.md): the fixture in ``fixtures/perplexity/`` run two ways.

1. Our client (``services.inference.providers.perplexity.PerplexityProvider``: the openai SDK's
   ``responses.create`` at ``{root}/v1``) against a loopback server answering the documented response: it sends
   the documented request (preset, forced ``web_search`` tool with the location, input) and parses text, the
   ``search_results`` citations, searches, tokens and the reported cost.
2. The sandbox answers the documented request — at the SDK's ``/v1/responses`` and at the canonical ``/v1/agent``
   — with the documented status and a body valid against the same fixture's schema.
"""

from __future__ import annotations

import re

import pytest
from contract_kit import assert_matches_fixture, fixtures_of, load_fixture, send_to_sandbox
from contract_kit_llm import provider_at, user_request

pytestmark = pytest.mark.integration


def test_every_perplexity_fixture_is_covered_here() -> None:
    assert {fx.name for fx in fixtures_of("perplexity")} == {"agent_web_search"}


async def test_client_sends_the_documented_request_and_parses_the_answer(documented_server) -> None:
    fx = load_fixture("perplexity", "agent_web_search")
    documented_server.serve(fx)
    provider = provider_at("perplexity", documented_server.url)
    try:
        r = await provider.complete(user_request(fx, model="sonar", location="GB", max_output_tokens=2048))
    finally:
        await provider.aclose()
    sent = documented_server.received[0]
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    assert sent.json() == fx.request["json"]
    doc = fx.body
    results = doc["output"][0]["results"]
    assert r.text == doc["output"][1]["content"][0]["text"]
    assert [(c.url, c.title) for c in r.citations] == [(x["url"], x["title"]) for x in results]
    assert r.search_queries == doc["output"][0]["queries"]
    usage = doc["usage"]
    assert r.web_search_calls == usage["tool_calls_details"]["web_search"]["invocation"]
    assert (r.input_tokens, r.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert r.cost_usd == usage["cost"]["total_cost"] and r.model == doc["model"]


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/agent"])
async def test_sandbox_answers_in_the_documented_shape(path: str, sandbox_http, sandbox_base) -> None:
    fx = load_fixture("perplexity", "agent_web_search")
    fx = type(fx)(**{**fx.__dict__, "request": {**fx.request, "path": path}})
    body = assert_matches_fixture(await send_to_sandbox(sandbox_http, sandbox_base("perplexity"), fx), fx)
    items = [o for o in body["output"] if o["type"] == "search_results"]
    assert items, "the forced web_search tool must produce search_results"
    ids = {x["id"] for item in items for x in item["results"]}
    text = "".join(p["text"] for o in body["output"] if o["type"] == "message" for p in o["content"])
    assert {int(n) for n in re.findall(r"\[(\d+)\]", text)} <= ids
    assert body["usage"]["tool_calls_details"]["web_search"]["invocation"] == len(items)
