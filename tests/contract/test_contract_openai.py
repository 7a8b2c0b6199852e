"""OpenAI contract (tests/contract/README.md): Chat Completions with ``response_format`` json_schema, Responses with
the ``web_search`` tool, and an ``incomplete`` Responses answer — each fixture in ``fixtures/openai/`` run two ways.

1. Our client (``services.inference.providers.openai.OpenAIProvider``, openai SDK underneath) against a loopback
   server answering the documented response: what it sent matches the documented request, what it parsed matches
   the documented body (or it fails the documented way).
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

CASES = {"chat_completions_json_schema", "responses_web_search", "responses_incomplete"}


def test_every_openai_fixture_is_covered_here() -> None:
    assert {fx.name for fx in fixtures_of("openai")} == CASES


# --- way 1: our client against the documented answers ---------------------------------------------------------


async def test_client_sends_the_documented_json_schema_request_and_parses_the_answer(documented_server) -> None:
    fx = load_fixture("openai", "chat_completions_json_schema")
    documented_server.serve(fx, prefix="/v1")
    provider = provider_at("openai", documented_server.url + "/v1")
    body = fx.request["json"]
    rf = body["response_format"]["json_schema"]
    try:
        r = await provider.complete(user_request(fx, json_schema=rf["schema"], schema_name=rf["name"],
                                                 max_output_tokens=body["max_completion_tokens"]))
    finally:
        await provider.aclose()
    sent = documented_server.received[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"].startswith("Bearer ")
    assert sent.json() == body
    doc = fx.body
    assert r.json_text == json.dumps(json.loads(doc["choices"][0]["message"]["content"]), separators=(",", ":"))
    assert (r.input_tokens, r.output_tokens) == (doc["usage"]["prompt_tokens"], doc["usage"]["completion_tokens"])
    assert r.finish_reason == "stop" and r.model == doc["model"]


async def test_client_parses_the_documented_web_search_answer(documented_server) -> None:
    fx = load_fixture("openai", "responses_web_search")
    documented_server.serve(fx, prefix="/v1")
    provider = provider_at("openai", documented_server.url + "/v1")
    body = fx.request["json"]
    try:
        r = await provider.complete(user_request(fx, web_search=True, location="GB",
                                                 max_output_tokens=body["max_output_tokens"]))
    finally:
        await provider.aclose()
    sent = documented_server.received[0]
    assert sent.path == "/v1/responses" and sent.json() == body
    doc = fx.body
    part = doc["output"][1]["content"][0]
    assert r.text == part["text"]
    assert [(c.url, c.title) for c in r.citations] == [(a["url"], a["title"]) for a in part["annotations"]]
    assert r.search_queries == [doc["output"][0]["action"]["query"]]
    # Retrieved, not cited: the action's sources minus the url_citation URLs (utm_source aside).
    assert [c.url for c in r.links_attached] == ["https://lambda.ai/blog/gpu-cloud-comparison"]
    assert r.web_search_calls == doc["tool_usage"]["web_search"]["num_requests"] == 1
    usage = doc["usage"]
    assert (r.input_tokens, r.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    s = provider._settings
    assert r.cost_usd == pricing.token_cost_usd(s, "gpt-4.1", usage["input_tokens"], usage["output_tokens"]) + \
        pricing.web_search_cost_usd(s, 1, "gpt-4.1")


async def test_client_retries_an_incomplete_answer_once_then_fails_with_its_reason(documented_server) -> None:
    fx = load_fixture("openai", "responses_incomplete")
    documented_server.serve(fx, prefix="/v1")
    provider = provider_at("openai", documented_server.url + "/v1")
    try:
        with pytest.raises(InvalidArgument) as ei:
            await provider.complete(user_request(fx, web_search=True, max_output_tokens=300))
    finally:
        await provider.aclose()
    assert ei.value.reason == "MAX_OUTPUT_TOKENS" and "max_output_tokens" in ei.value.message
    assert ei.value.metadata["provider_error_code"] == "max_output_tokens"
    budgets = [r.json()["max_output_tokens"] for r in documented_server.received]
    assert budgets[0] == 300 and len(budgets) == 2 and budgets[1] > 300


# --- way 2: the sandbox answers the documented requests in the documented shape --------------------------------


@pytest.mark.parametrize("name", ["chat_completions_json_schema", "responses_web_search"])
async def test_sandbox_answers_in_the_documented_shape(name: str, sandbox_http, sandbox_base) -> None:
    fx = load_fixture("openai", name)
    body = assert_matches_fixture(await send_to_sandbox(sandbox_http, sandbox_base("openai"), fx), fx)
    if name == "responses_web_search":
        kinds = [item["type"] for item in body["output"]]
        assert "web_search_call" in kinds and kinds[-1] == "message"
        assert body["output"][-1]["content"][0]["annotations"], "a web-search answer carries url_citation annotations"
    else:
        schema = fx.request["json"]["response_format"]["json_schema"]["schema"]
        answer = json.loads(body["choices"][0]["message"]["content"])
        assert set(answer) == set(schema["required"])


async def test_sandbox_answers_incomplete_in_the_documented_shape(sandbox_http, sandbox_base, sandbox_knobs) -> None:
    fx = load_fixture("openai", "responses_incomplete")
    await sandbox_knobs({"openai_incomplete_times": 1})
    body = assert_matches_fixture(await send_to_sandbox(sandbox_http, sandbox_base("openai"), fx), fx)
    assert body["usage"]["output_tokens"] == fx.request["json"]["max_output_tokens"]
