"""API providers with web search and locations, through the service against the sandbox: OpenAI Responses
(url_citation), Anthropic Messages (web_search_result_location), Perplexity Agent API (search_results items)."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import jsonschema
import pytest

from services.inference import pricing
from services.inference.providers import ChatMessage, CompletionRequest
from services.inference.providers.anthropic import AnthropicProvider
from services.inference.providers.perplexity import PerplexityProvider, agent_answer, agent_model
from shared.config import Settings
from shared.errors import InvalidArgument, Unavailable, from_rpc_error
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

QUESTION = "What are the best GPU cloud providers for training large models?"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["tier", "score"],
    "additionalProperties": False,
}
CLASSIFY = "Classify Lumen Robotics. Sources: [1] https://lumenrobotics.ai/blog — trains on 4,000 H100s."


def _req(model: str, content: str = QUESTION, **kw: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, messages=[pb.Message(role="user", content=content)], **kw)


async def _billing(admin: httpx.AsyncClient, provider: str) -> dict[str, int]:
    return (await admin.get("/_sandbox/stats")).json()["billing"].get(provider, {})


async def test_openai_responses_web_search(stub: pb_grpc.InferenceServiceStub, settings: Settings,
                                           sandbox_admin: httpx.AsyncClient) -> None:
    before = await _billing(sandbox_admin, "openai")
    r = await stub.Complete(_req("gpt-4.1", web_search=True, location="GB"), timeout=30)
    after = await _billing(sandbox_admin, "openai")
    assert r.provider == "openai" and r.text
    assert r.citations and all(c.url.startswith("https://") and c.title for c in r.citations)
    assert len({c.url for c in r.citations}) == len(r.citations)
    assert r.search_queries
    assert r.web_search_calls == after.get("web_search_calls", 0) - before.get("web_search_calls", 0) >= 1
    in_p, out_p = settings.token_prices("gpt-4.1")
    assert r.cost_usd == (r.usage.input_tokens * in_p / 1e6 + r.usage.output_tokens * out_p / 1e6
                          + pricing.web_search_cost_usd(settings, r.web_search_calls, "gpt-4.1"))


async def test_openai_without_web_search_uses_chat_completions(stub: pb_grpc.InferenceServiceStub,
                                                               sandbox_admin: httpx.AsyncClient) -> None:
    before = await _billing(sandbox_admin, "openai")
    r = await stub.Complete(_req("gpt-4.1"), timeout=30)
    after = await _billing(sandbox_admin, "openai")
    assert not r.citations and r.web_search_calls == 0
    assert after.get("web_search_calls", 0) == before.get("web_search_calls", 0)


async def test_openai_responses_json_schema(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.Complete(_req("gpt-4.1", CLASSIFY, web_search=True, json_schema=json.dumps(SCHEMA)), timeout=30)
    jsonschema.validate(json.loads(r.json), SCHEMA)


async def test_anthropic_web_search(stub: pb_grpc.InferenceServiceStub, settings: Settings,
                                    sandbox_admin: httpx.AsyncClient) -> None:
    before = await _billing(sandbox_admin, "anthropic")
    r = await stub.Complete(_req("claude-sonnet-5", web_search=True, location="US"), timeout=30)
    after = await _billing(sandbox_admin, "anthropic")
    assert r.provider == "anthropic" and r.text and r.finish_reason == "end_turn"
    assert r.citations and all(c.url.startswith("https://") for c in r.citations)
    assert r.search_queries
    assert r.web_search_calls == after["web_search_requests"] - before.get("web_search_requests", 0) == 1
    assert r.usage.input_tokens == after["input_tokens"] - before.get("input_tokens", 0)
    in_p, out_p = settings.token_prices("claude-sonnet-5")
    assert r.cost_usd == (r.usage.input_tokens * in_p / 1e6 + r.usage.output_tokens * out_p / 1e6
                          + pricing.web_search_cost_usd(settings, r.web_search_calls, "claude-sonnet-5"))


async def test_anthropic_plain_and_schema(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.Complete(_req("claude-haiku-4-5", max_output_tokens=2000), timeout=30)
    assert r.text and not r.citations and r.web_search_calls == 0
    r = await stub.Complete(_req("claude-sonnet-5", CLASSIFY, json_schema=json.dumps(SCHEMA),
                                 schema_name="classification"), timeout=30)
    jsonschema.validate(json.loads(r.json), SCHEMA)


async def test_anthropic_refuses_schema_with_web_search(stub: pb_grpc.InferenceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Complete(_req("claude-sonnet-5", web_search=True, json_schema=json.dumps(SCHEMA)), timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_perplexity_agent_api(stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient) -> None:
    """sonar-pro goes to the Agent API as preset "low", search forced: grounded, cited, billed per search, and
    nothing reaches the retired /chat/completions."""
    before = (await sandbox_admin.get("/_sandbox/stats")).json()
    r = await stub.Complete(_req("sonar-pro", location="DE"), timeout=30)
    after = (await sandbox_admin.get("/_sandbox/stats")).json()
    assert r.provider == "perplexity" and r.model == "perplexity/sonar" and r.text
    assert r.citations and all(c.url.startswith("https://") and c.title for c in r.citations)
    assert len({c.url for c in r.citations}) == len(r.citations)
    assert r.search_queries and r.web_search_calls >= 1
    billed = after["billing"]["perplexity"]
    was = before["billing"].get("perplexity", {})
    assert r.web_search_calls == billed["web_search_requests"] - was.get("web_search_requests", 0)
    assert r.usage.input_tokens == billed["input_tokens"] - was.get("input_tokens", 0)
    # The reported total: tokens at the served model's price plus $5 / 1K searches (sandbox perplexity_api).
    tokens = r.usage.input_tokens * 0.25 / 1e6 + r.usage.output_tokens * 2.5 / 1e6
    assert abs(r.cost_usd - (tokens + r.web_search_calls * 0.005)) < 1e-6
    def calls(stats: dict[str, Any], endpoint: str) -> int:
        return int(stats["endpoints"].get(endpoint, {}).get("calls", 0))

    assert calls(after, "perplexity.chat_completions") == calls(before, "perplexity.chat_completions")
    assert calls(after, "perplexity.agent") == calls(before, "perplexity.agent") + 1


async def test_perplexity_preset_and_model_id_forms(stub: pb_grpc.InferenceServiceStub) -> None:
    for model in ("pplx:fast", "perplexity/sonar"):
        r = await stub.Complete(_req(model), timeout=30)
        assert r.provider == "perplexity" and r.citations, model
    r = await stub.Complete(_req("sonar", CLASSIFY, json_schema=json.dumps(SCHEMA)), timeout=30)
    jsonschema.validate(json.loads(r.json), SCHEMA)
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Complete(_req("pplx:turbo"), timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "preset" in (ei.value.details() or "")


@pytest.mark.parametrize(("model", "fault", "code", "reason"), [
    ("claude-sonnet-5", "429", grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
    ("claude-sonnet-5", "500", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    ("claude-sonnet-5", "oversize", grpc.StatusCode.INVALID_ARGUMENT, "CONTEXT_TOO_LONG"),
    ("sonar", "429", grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
    ("sonar", "oversize", grpc.StatusCode.INVALID_ARGUMENT, "CONTEXT_TOO_LONG"),
    ("gpt-4.1", "503", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
])
async def test_provider_faults(stub: pb_grpc.InferenceServiceStub, model: str, fault: str,
                               code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.Complete(_req(model, web_search=True), timeout=30, metadata=(("x-sandbox-fault", fault),))
    assert ei.value.code() == code
    err = from_rpc_error(ei.value)
    assert err.reason == reason
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert getattr(err, "retry_after", None)


# --- pure parts -------------------------------------------------------------------------------------------------


def test_anthropic_request_shape() -> None:
    provider = AnthropicProvider(Settings(web_search_max_uses=3), None, None)  # type: ignore[arg-type]
    req = CompletionRequest(model="claude-sonnet-5", location="GB", web_search=True,
                            messages=[ChatMessage("system", "be brief"), ChatMessage("user", "hi")])
    kw = provider.request_kwargs(req)
    assert kw["system"] == "be brief"
    assert kw["messages"] == [{"role": "user", "content": "hi"}]
    assert kw["tools"] == [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3,
                            "user_location": {"type": "approximate", "country": "GB"}}]


def test_anthropic_paused_turns_are_summed() -> None:
    provider = AnthropicProvider(Settings(), None, None)  # type: ignore[arg-type]
    req = CompletionRequest(model="claude-sonnet-5", web_search=True, messages=[ChatMessage("user", "q")])

    def resp(stop: str, text: str, url: str, searches: int) -> dict[str, Any]:
        return {
            "model": "claude-sonnet-4-20250514",
            "stop_reason": stop,
            "content": [
                {"type": "server_tool_use", "name": "web_search", "input": {"query": f"q-{url}"}},
                {"type": "text", "text": text, "citations": [
                    {"type": "web_search_result_location", "url": url, "title": url.upper()}]},
            ],
            "usage": {"input_tokens": 100, "output_tokens": 10, "server_tool_use": {"web_search_requests": searches}},
        }

    r = provider._result(req, [resp("pause_turn", "a", "https://a.com", 2), resp("end_turn", "b", "https://b.com", 1)])
    assert r.text == "ab" and r.finish_reason == "end_turn"
    assert [c.url for c in r.citations] == ["https://a.com", "https://b.com"]
    assert r.search_queries == ["q-https://a.com", "q-https://b.com"]
    assert (r.input_tokens, r.output_tokens, r.web_search_calls) == (200, 20, 3)
    assert r.model == "claude-sonnet-4-20250514"


def test_perplexity_citations_cited_first_then_every_search_results_item() -> None:
    resp = {"output": [
        {"type": "search_results", "queries": ["q1"], "results": [{"id": 1, "url": "https://a.com", "title": "A"},
                                                                   {"id": 3, "url": "https://c.com", "title": "C"}]},
        {"type": "search_results", "queries": ["q2"], "results": [{"id": 2, "url": "https://b.com", "title": "B"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "B is good [2]. A too [1][2]."}]},
    ]}
    text, citations, queries, items = agent_answer(resp)
    assert text == "B is good [2]. A too [1][2]." and queries == ["q1", "q2"] and items == 2
    assert [(c.url, c.title) for c in citations] == [
        ("https://b.com", "B"), ("https://a.com", "A"), ("https://c.com", "C")]


def test_perplexity_request_forces_web_search_and_maps_models() -> None:
    provider = PerplexityProvider(Settings(), None, None)  # type: ignore[arg-type]
    req = CompletionRequest(model="sonar", location="GB", messages=[ChatMessage("system", "s"), ChatMessage("user", "q")])
    kw = provider.request_kwargs(req)
    assert kw["tools"] == [{"type": "web_search", "user_location": {"country": "GB"}}]
    assert kw["tool_choice"] == {"type": "web_search"} and kw["instructions"] == "s"
    assert kw["extra_body"] == {"preset": "fast"} and "model" not in kw
    assert agent_model("pplx:wide-research") == {"preset": "wide-research"}
    assert agent_model("perplexity/sonar") == {"model": "perplexity/sonar"}
    assert agent_model("sonar-deep-research") == {"preset": "high"}
    with pytest.raises(InvalidArgument):
        agent_model("sonar-huge")


def test_perplexity_response_that_did_not_complete_is_never_an_answer() -> None:
    provider = PerplexityProvider(Settings(), None, None)  # type: ignore[arg-type]
    req = CompletionRequest(model="sonar", messages=[ChatMessage("user", "q")])
    failed = {"status": "failed", "error": {"message": "search backend down", "code": "internal"}, "output": []}
    with pytest.raises(Unavailable) as ei:
        provider.result(req, failed)
    assert ei.value.reason == "PROVIDER_RESPONSE_FAILED" and "search backend down" in ei.value.message
    done = {"status": "completed", "model": "perplexity/sonar", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "x"}]}],
        "usage": {"input_tokens": 10, "output_tokens": 2, "cost": {"total_cost": 0.0125}}}
    r = provider.result(req, done)
    assert (r.text, r.cost_usd, r.web_search_calls, r.citations) == ("x", 0.0125, 0, [])
