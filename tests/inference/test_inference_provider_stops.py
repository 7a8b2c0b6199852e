"""How the API providers end a turn, through the service against the sandbox (issue 18, items 2 and 3):

- OpenAI: an ``incomplete`` response (``incomplete_details.reason = max_output_tokens``; chat: ``finish_reason
  length``) is asked again once with a larger budget, then fails the call with that reason — never an answer.
- Anthropic: JSON schemas go through ``output_config`` (a forced tool is a 400 with thinking on, as the real API),
  ``max_tokens`` leaves room for thinking, ``pause_turn`` is continued once, ``max_tokens`` retried once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import jsonschema
import pytest

from services.inference import pricing
from shared.config import Settings
from shared.errors import from_rpc_error
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

Knobs = Callable[[dict[str, Any]], Awaitable[None]]
QUESTION = "What are the best GPU cloud providers for training large models?"
CLASSIFY = "Classify Lumen Robotics. Sources: [1] https://lumenrobotics.ai/blog — trains on 4,000 H100s."
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["tier", "score"],
    "additionalProperties": False,
}


def _req(model: str, content: str = QUESTION, **kw: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, messages=[pb.Message(role="user", content=content)], no_cache=True, **kw)


async def _billing(admin: httpx.AsyncClient, provider: str) -> dict[str, int]:
    return (await admin.get("/_sandbox/stats")).json()["billing"].get(provider, {})


async def _fails(call: Any) -> tuple[grpc.StatusCode, Any]:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code(), from_rpc_error(ei.value)


# --- OpenAI: reasoning headroom ---------------------------------------------------------------------------------


@pytest.mark.parametrize("web_search", [True, False], ids=["responses", "chat"])
async def test_openai_incomplete_is_retried_once_with_a_larger_budget(
    stub: pb_grpc.InferenceServiceStub, sandbox_knobs: Knobs, sandbox_admin: httpx.AsyncClient,
    settings: Settings, web_search: bool,
) -> None:
    await sandbox_knobs({"openai_incomplete_times": 1})
    before = await _billing(sandbox_admin, "openai")
    r = await stub.Complete(_req("gpt-5.4-mini", web_search=web_search, max_output_tokens=1024), timeout=30)
    after = await _billing(sandbox_admin, "openai")
    assert r.text and r.finish_reason == "stop"
    assert after["requests"] - before.get("requests", 0) == 2
    # Both calls were billed: the ledger figure covers the incomplete one too.
    billed_in = after["prompt_tokens"] - before.get("prompt_tokens", 0)
    billed_out = after["completion_tokens"] - before.get("completion_tokens", 0)
    assert (r.usage.input_tokens, r.usage.output_tokens) == (billed_in, billed_out)
    assert r.usage.output_tokens >= 1024  # the incomplete call spent its whole budget
    in_p, out_p = settings.token_prices("gpt-5.4-mini")
    assert r.cost_usd == pytest.approx(billed_in * in_p / 1e6 + billed_out * out_p / 1e6
                                       + pricing.web_search_cost_usd(settings, r.web_search_calls, "gpt-5.4-mini"))


@pytest.mark.parametrize("web_search", [True, False], ids=["responses", "chat"])
async def test_openai_incomplete_twice_fails_with_max_output_tokens(
    stub: pb_grpc.InferenceServiceStub, sandbox_knobs: Knobs, sandbox_admin: httpx.AsyncClient, web_search: bool,
) -> None:
    await sandbox_knobs({"openai_incomplete_times": 2})
    before = await _billing(sandbox_admin, "openai")
    code, err = await _fails(stub.Complete(_req("gpt-5.4-mini", web_search=web_search, max_output_tokens=1024),
                                           timeout=30))
    after = await _billing(sandbox_admin, "openai")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and err.reason == "MAX_OUTPUT_TOKENS"
    assert "max_output_tokens" in err.message and "1024" in err.message and "5120" in err.message
    assert after["requests"] - before.get("requests", 0) == 2  # one retry, not the retry policy's four attempts


async def test_openai_natural_incomplete_of_a_reasoning_model(stub: pb_grpc.InferenceServiceStub,
                                                              sandbox_admin: httpx.AsyncClient) -> None:
    """A cap that the sandbox's reasoning tokens exhaust: the retry's larger budget fits, and one answer comes back."""
    before = await _billing(sandbox_admin, "openai")
    r = await stub.Complete(_req("gpt-5.4-mini", web_search=True, max_output_tokens=40), timeout=30)
    after = await _billing(sandbox_admin, "openai")
    assert r.text and after["requests"] - before.get("requests", 0) == 2


# --- Anthropic: structured output, thinking headroom, stop reasons ----------------------------------------------


async def test_anthropic_schema_on_a_thinking_model_uses_output_config(stub: pb_grpc.InferenceServiceStub,
                                                                        sandbox_admin: httpx.AsyncClient) -> None:
    """claude-sonnet-5 thinks by default: a forced tool would be a 400; output_config answers, and the thinking
    headroom keeps a 300-token answer budget from being cut by the thinking block (800 tokens in the sandbox)."""
    before = await _billing(sandbox_admin, "anthropic")
    r = await stub.Complete(_req("claude-sonnet-5", CLASSIFY, json_schema=json.dumps(SCHEMA), max_output_tokens=300),
                            timeout=30)
    after = await _billing(sandbox_admin, "anthropic")
    jsonschema.validate(json.loads(r.json), SCHEMA)
    assert r.finish_reason == "end_turn" and after["requests"] - before.get("requests", 0) == 1
    assert r.usage.output_tokens > 800  # thinking tokens are output tokens, billed


async def test_anthropic_pause_turn_is_continued_once(stub: pb_grpc.InferenceServiceStub, sandbox_knobs: Knobs,
                                                      sandbox_admin: httpx.AsyncClient) -> None:
    await sandbox_knobs({"anthropic_pause_turns": 1})
    before = await _billing(sandbox_admin, "anthropic")
    r = await stub.Complete(_req("claude-haiku-4-5", web_search=True, location="US", max_output_tokens=2000),
                            timeout=30)
    after = await _billing(sandbox_admin, "anthropic")
    assert r.text and r.citations and r.finish_reason == "end_turn"
    assert after["requests"] - before.get("requests", 0) == 2
    assert r.web_search_calls == after["web_search_requests"] - before.get("web_search_requests", 0) == 2


async def test_anthropic_second_pause_fails_the_call(stub: pb_grpc.InferenceServiceStub, sandbox_knobs: Knobs) -> None:
    await sandbox_knobs({"anthropic_pause_turns": 2})
    code, err = await _fails(stub.Complete(_req("claude-haiku-4-5", web_search=True, max_output_tokens=2000),
                                           timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and err.reason == "PAUSE_TURN"
    assert "pause_turn" in err.message


async def test_anthropic_max_tokens_is_retried_once_then_fails(stub: pb_grpc.InferenceServiceStub,
                                                               sandbox_admin: httpx.AsyncClient) -> None:
    before = await _billing(sandbox_admin, "anthropic")
    code, err = await _fails(stub.Complete(_req("claude-haiku-4-5", max_output_tokens=8), timeout=30))
    after = await _billing(sandbox_admin, "anthropic")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and err.reason == "OUTPUT_TRUNCATED"
    assert "max_tokens" in err.message
    assert after["requests"] - before.get("requests", 0) == 2
