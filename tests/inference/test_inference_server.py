"""The inference service through a real gRPC server on a loopback port, against the provider sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
import structlog.testing
from inference_testkit import poll_until

from services.inference.router import DEFAULT_RULES
from services.inference.server import build
from shared.config import Settings
from shared.errors import (
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    from_rpc_error,
)
from shared.grpc_server import serving
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

CLASSIFICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "category": {"type": "string", "enum": Settings().categories},
        "rationale": {"type": "string"},
        "evidence_urls": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["tier", "score", "category", "rationale", "evidence_urls"],
    "additionalProperties": False,
}

PROMPT = (
    "Classify Lumen Robotics by its need for GPU compute.\n\nSources:\n"
    "[1] https://lumenrobotics.ai/blog/cluster — Lumen trains foundation models for robots on a 4,000-GPU H100 "
    "cluster and is raising a Series C to double it.\n"
)


def _req(model: str = "gpt-4.1", content: str = PROMPT, **kw: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, messages=[pb.Message(role="user", content=content)], **kw)


async def _fails(call: Any, **kw: Any) -> tuple[grpc.StatusCode, Any]:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code(), from_rpc_error(ei.value)


async def test_route(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.Route(pb.RouteRequest(model="chatgpt"), timeout=5)
    assert r.provider == "brightdata_chatgpt"
    assert r.supports_batching and r.max_batch_size == 20
    assert r.rule == "contains 'chatgpt'"
    assert r.provider_name == "Bright Data ChatGPT scraper"
    r = await stub.Route(pb.RouteRequest(model="gpt-4.1"), timeout=5)
    assert r.provider == "openai"
    assert not r.supports_batching and r.max_batch_size == 1
    r = await stub.Route(pb.RouteRequest(model="sonar-pro"), timeout=5)
    assert r.provider == "perplexity"


async def test_route_unknown_model(stub: pb_grpc.InferenceServiceStub) -> None:
    code, err = await _fails(stub.Route(pb.RouteRequest(model="llama-3-70b"), timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(err, InvalidArgument)
    assert err.violations[0][0] == "model"
    assert "llama-3-70b" in err.message and "contains 'chatgpt'" in err.message


async def test_list_models(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.ListModels(pb.ListModelsRequest(), timeout=5)
    assert [(x.match, x.pattern, x.provider) for x in r.rules] == [
        (x.match, x.pattern, x.provider) for x in DEFAULT_RULES
    ]
    providers = {p.provider: p for p in r.providers}
    assert set(providers) == {"openai", "anthropic", "brightdata_chatgpt", "brightdata_perplexity", "perplexity"}
    assert all(p.available for p in providers.values())  # every provider is built and has the sandbox
    assert providers["brightdata_chatgpt"].supports_batching
    assert providers["brightdata_chatgpt"].max_batch_size == 20


async def test_complete_classification_json_schema(
    stub: pb_grpc.InferenceServiceStub, settings: Settings
) -> None:
    r = await stub.Complete(
        _req(json_schema=json.dumps(CLASSIFICATION_SCHEMA), schema_name="classification"), timeout=30
    )
    answer = json.loads(r.json)
    jsonschema.validate(answer, CLASSIFICATION_SCHEMA)
    assert r.provider == "openai"
    assert r.model == "gpt-4.1"
    assert r.finish_reason == "stop"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    in_price, out_price = settings.token_prices("gpt-4.1")
    assert r.cost_usd == r.usage.input_tokens * in_price / 1e6 + r.usage.output_tokens * out_price / 1e6
    assert r.cost_usd > 0


async def test_complete_free_text(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.Complete(_req(model="gpt-4.1-mini"), timeout=30)
    assert r.text.strip()
    assert r.json == ""
    assert r.usage.input_tokens > 0
    assert r.finish_reason == "stop"


async def test_schema_answer_cut_at_max_output_tokens_is_asked_again_with_a_larger_budget(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient,
) -> None:
    """finish_reason length (the chat form of incomplete at max_output_tokens) is retried once with a larger budget
    (issue 18); the cut answer is never returned. test_inference_provider_stops.py has the failing case."""
    before = (await sandbox_admin.get("/_sandbox/stats")).json()["billing"]["openai"]["requests"]
    r = await stub.Complete(_req(json_schema=json.dumps(CLASSIFICATION_SCHEMA), max_output_tokens=5, no_cache=True),
                            timeout=30)
    after = (await sandbox_admin.get("/_sandbox/stats")).json()["billing"]["openai"]["requests"]
    jsonschema.validate(json.loads(r.json), CLASSIFICATION_SCHEMA)
    assert after - before == 2


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.CompleteRequest(model="gpt-4.1"), "messages"),
        (pb.CompleteRequest(model="gpt-4.1", messages=[pb.Message(role="robot", content="x")]), "messages[0].role"),
        (_req(json_schema="{oops"), "json_schema"),
        (_req(max_output_tokens=-5), "max_output_tokens"),
        (_req(model=""), "model"),
        (_req(model="mistral-large"), "model"),
    ],
)
async def test_complete_invalid_argument(
    stub: pb_grpc.InferenceServiceStub, request_: pb.CompleteRequest, field: str
) -> None:
    code, err = await _fails(stub.Complete(request_, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in err.violations]


async def test_unbuilt_provider_is_unimplemented(settings: Settings) -> None:
    # A process whose build lacks a provider (here: none but OpenAI) answers UNIMPLEMENTED for its models.
    from services.inference.core import Inference
    from services.inference.providers.openai import OpenAIProvider
    from services.inference.router import Router
    from services.inference.server import SERVICE_NAME, InferenceServicer
    from services.inference.streaming import StreamEngine
    from shared.grpc_server import Mount

    @contextlib.asynccontextmanager
    async def openai_only(s: Settings) -> AsyncIterator[list[Mount]]:
        core = Inference(s, Router(), {"openai": OpenAIProvider.from_settings(s)})
        engine = StreamEngine(core, linger=0.1, max_pending=10)
        try:
            yield [Mount(InferenceServicer(s, core, engine), pb_grpc.add_InferenceServiceServicer_to_server,
                         SERVICE_NAME)]
        finally:
            await core.aclose()

    async with serving("inference", openai_only, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        code, err = await _fails(stub.Complete(_req(model="claude-sonnet-5"), timeout=10))
        assert code == grpc.StatusCode.UNIMPLEMENTED
        assert "anthropic" in err.message and "not available yet" in err.message
        models = await stub.ListModels(pb.ListModelsRequest(), timeout=5)
        assert {p.provider: p.available for p in models.providers}["anthropic"] is False


async def test_oversize_prompt_is_context_too_long(stub: pb_grpc.InferenceServiceStub) -> None:
    # ~150k tokens at the sandbox's 4 characters per token: above its default 128k-token limit.
    huge = "GPU cluster expansion notes. " * 21_000
    code, err = await _fails(stub.Complete(_req(content=huge), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(err, InvalidArgument)
    assert err.reason == "CONTEXT_TOO_LONG"
    assert [f for f, _ in err.violations] == ["messages"]
    assert err.provider == "openai"


async def test_forced_oversize_fault(stub: pb_grpc.InferenceServiceStub) -> None:
    code, err = await _fails(stub.Complete(_req(), timeout=30, metadata=(("x-sandbox-fault", "oversize"),)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "CONTEXT_TOO_LONG"


async def test_forced_429_is_resource_exhausted_with_retry_info(stub: pb_grpc.InferenceServiceStub) -> None:
    code, err = await _fails(stub.Complete(_req(), timeout=30, metadata=(("x-sandbox-fault", "429"),)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(err, ResourceExhausted)
    assert err.retry_after is not None and err.retry_after > 0
    assert err.provider == "openai"


@pytest.mark.parametrize(("fault", "reason"), [("500", "PROVIDER_UNAVAILABLE"), ("503", "PROVIDER_UNAVAILABLE"),
                                               ("malformed", "malformed_response"), ("reset", "PROVIDER_CONNECTION")])
async def test_forced_transient_faults_are_unavailable(
    stub: pb_grpc.InferenceServiceStub, fault: str, reason: str
) -> None:
    code, err = await _fails(
        stub.Complete(_req(json_schema=json.dumps(CLASSIFICATION_SCHEMA)), timeout=30,
                      metadata=(("x-sandbox-fault", fault),))
    )
    assert code == grpc.StatusCode.UNAVAILABLE
    assert isinstance(err, Unavailable)
    assert err.reason == reason


async def _openai_stats(admin: httpx.AsyncClient) -> dict[str, Any]:
    r = await admin.get("/_sandbox/stats")
    r.raise_for_status()
    return r.json()["endpoints"].get("openai.chat_completions", {})


async def test_cancelling_the_rpc_cancels_the_provider_request(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = (await _openai_stats(sandbox_admin)).get("cancelled", 0)
    call = stub.Complete(_req(), timeout=60, metadata=(("x-sandbox-fault", "hang"),))

    async def hanging() -> bool:
        return (await _openai_stats(sandbox_admin)).get("in_flight", 0) > 0

    await poll_until(hanging)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    async def upstream_cancelled() -> bool:
        return (await _openai_stats(sandbox_admin)).get("cancelled", 0) > before

    await poll_until(upstream_cancelled)


async def test_deadline_is_forwarded_to_the_provider(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = (await _openai_stats(sandbox_admin)).get("cancelled", 0)
    code, _ = await _fails(stub.Complete(_req(), timeout=0.5, metadata=(("x-sandbox-fault", "hang"),)))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED

    async def upstream_cancelled() -> bool:
        return (await _openai_stats(sandbox_admin)).get("cancelled", 0) > before

    await poll_until(upstream_cancelled)


async def test_fault_header_is_ignored_without_a_sandbox(settings: Settings) -> None:
    # With an explicit base URL (a "real" OpenAI-compatible endpoint) and no sandbox_url, metadata is not forwarded.

    real_like = settings.model_copy(
        update={"sandbox_url": "", "openai_base_url": settings.base_url("openai"), "openai_api_key": None}
    )
    real_like = real_like.model_copy(update={"openai_api_key": __import__("pydantic").SecretStr("sk-test-key-123")})
    async with serving("inference", build, real_like) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        r = await pb_grpc.InferenceServiceStub(ch).Complete(
            _req(), timeout=30, metadata=(("x-sandbox-fault", "429"),)
        )
    assert r.text


async def test_one_log_line_per_provider_call_without_prompt_or_key(stub: pb_grpc.InferenceServiceStub) -> None:
    secret_marker = "Lumen trains foundation models"
    with structlog.testing.capture_logs() as logs:
        r = await stub.Complete(_req(), timeout=30)
    calls = [e for e in logs if e.get("event") == "provider_call"]
    assert len(calls) == 1
    line = calls[0]
    assert line["provider"] == "openai" and line["model"] == "gpt-4.1"
    assert line["input_tokens"] == r.usage.input_tokens and line["output_tokens"] == r.usage.output_tokens
    assert line["cost_usd"] == r.cost_usd and line["ms"] >= 0
    flat = json.dumps(logs, default=str)
    assert secret_marker not in flat and "sandbox-key" not in flat


async def test_provider_calls_feed_the_prometheus_metrics(stub: pb_grpc.InferenceServiceStub) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    calls, cost = sample("provider_calls_total", provider="openai", outcome="ok"), sample("cost_usd_total", provider="openai")
    r = await stub.Complete(_req(model="gpt-4.1-mini", content=PROMPT + " metrics"), timeout=30)
    assert sample("provider_calls_total", provider="openai", outcome="ok") == calls + 1
    assert sample("cost_usd_total", provider="openai") == pytest.approx(cost + r.cost_usd)
