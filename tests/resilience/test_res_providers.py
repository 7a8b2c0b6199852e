"""Provider faults through the real inference and search services (gRPC on loopback) against a private sandbox:
retries hide transient faults, Retry-After is honoured, the deadline covers every attempt, an open circuit fails
fast with RetryInfo, the adaptive limit is visible, rich error details, and a cancelled call reaches the sandbox
within 100 ms."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import structlog.testing
from res_testkit import cancel_lag, endpoint, fails, poll_until

from services.inference.server import build as inference_build
from services.search.server import build as search_build
from shared.config import Settings
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable
from shared.grpc_server import serving
from shared.resilience import CIRCUIT_OPEN, CONCURRENCY_LIMIT
from vantage.inference.v1 import inference_pb2 as ipb
from vantage.inference.v1 import inference_pb2_grpc as ipb_grpc
from vantage.search.v1 import search_pb2 as spb
from vantage.search.v1 import search_pb2_grpc as spb_grpc

pytestmark = pytest.mark.integration

CHAT = "openai.chat_completions"


def req(content: str = "Company: Lumen Robotics\nClassify its GPU demand.", **kw: Any) -> ipb.CompleteRequest:
    """A chat request that always reaches the provider (no_cache: the response cache must not hide faults)."""
    return ipb.CompleteRequest(model="gpt-4.1", messages=[ipb.Message(role="user", content=content)], no_cache=True,
                               **kw)


@pytest.fixture
async def inference_for(res_settings: Settings) -> AsyncIterator[Any]:
    """``await inference_for(**settings_overrides)`` → an InferenceService stub on a fresh server."""
    import contextlib

    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> ipb_grpc.InferenceServiceStub:
            s = res_settings.model_copy(update=overrides)
            srv = await stack.enter_async_context(serving("inference", inference_build, s))
            ch = await stack.enter_async_context(grpc.aio.insecure_channel(srv.address))
            return ipb_grpc.InferenceServiceStub(ch)

        yield make


@pytest.fixture
async def search_stub(res_settings: Settings) -> AsyncIterator[spb_grpc.SearchServiceStub]:
    async with serving("search", search_build, res_settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        yield spb_grpc.SearchServiceStub(ch)


# --- retries ---------------------------------------------------------------------------------------------------


async def test_transient_llm_faults_are_retried_to_success(inference_for: Any, knobs: Any,
                                                           sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for()
    # 30 % of calls fail (seeded, sequential: the same sequence every run); 4 attempts hide them all.
    await knobs({"endpoints": {CHAT: {"rate_429": 0.1, "rate_500": 0.05, "rate_503": 0.05, "rate_malformed": 0.03,
                                      "rate_truncated": 0.03, "rate_reset": 0.04, "retry_after_s": 0.01}}})
    with structlog.testing.capture_logs() as logs:
        for _ in range(20):
            r = await stub.Complete(req(), timeout=30)
            assert r.text
    faults = (await endpoint(sandbox_admin, CHAT))["faults"]
    assert sum(faults.values()) >= 3, faults  # the seeded sequence does inject faults …
    retried = [e for e in logs if e.get("event") == "provider_retry"]
    assert len(retried) == sum(faults.values())  # … and every one of them was retried


async def test_transient_search_faults_are_retried_to_success(search_stub: spb_grpc.SearchServiceStub, knobs: Any,
                                                              sandbox_admin: httpx.AsyncClient) -> None:
    await knobs({"endpoints": {"tavily": {"rate_429": 0.2, "rate_500": 0.1, "rate_malformed": 0.05,
                                          "rate_reset": 0.05, "retry_after_s": 0.01}}})
    for i in range(15):
        r = await search_stub.Search(spb.SearchRequest(query=f"gpu cluster {i}", no_cache=True), timeout=30)
        assert r.returned_count > 0 and r.credits > 0
    ep = await endpoint(sandbox_admin, "tavily.search")
    assert sum(ep["faults"].values()) >= 4, ep
    assert ep["status"].get("200", 0) >= 15


async def test_retry_after_is_honoured_and_carried_in_retry_info(inference_for: Any, knobs: Any,
                                                                 sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for(provider_max_attempts=3)
    await knobs({"endpoints": {CHAT: {"rate_429": 1.0, "retry_after_s": 0.3}}})
    t0 = time.monotonic()
    code, err, _ = await fails(stub.Complete(req(), timeout=30))
    elapsed = time.monotonic() - t0
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and isinstance(err, ResourceExhausted)
    assert err.retry_after == pytest.approx(0.3, abs=0.01)  # RetryInfo: the provider's retry-after-ms
    assert err.provider == "openai" and err.reason == "PROVIDER_RATE_LIMITED"  # ErrorInfo
    assert (await endpoint(sandbox_admin, CHAT))["calls"] == 3
    assert elapsed >= 2 * 0.3  # two waits of at least Retry-After between the three attempts


async def test_a_retry_after_beyond_the_deadline_is_handed_back_at_once(inference_for: Any, knobs: Any,
                                                                        sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for()
    await knobs({"endpoints": {CHAT: {"rate_429": 1.0, "retry_after_s": 30}}})
    t0 = time.monotonic()
    code, err, _ = await fails(stub.Complete(req(), timeout=5))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.retry_after == pytest.approx(30)
    assert time.monotonic() - t0 < 1.0
    assert (await endpoint(sandbox_admin, CHAT))["calls"] == 1


async def test_the_rpc_deadline_covers_every_attempt(inference_for: Any, knobs: Any,
                                                     sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for(provider_max_attempts=1000, retry_initial_seconds=0.05, retry_max_seconds=0.1,
                               circuit_failure_threshold=0)
    await knobs({"endpoints": {CHAT: {"rate_500": 1.0}}})
    t0 = time.monotonic()
    code, _, _ = await fails(stub.Complete(req(), timeout=1.0))
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - t0 < 1.5
    assert 3 <= (await endpoint(sandbox_admin, CHAT))["calls"] < 100


async def test_a_hang_is_cut_at_the_attempt_timeout_and_retried(inference_for: Any, knobs: Any,
                                                               sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for(provider_timeout_seconds=0.3)
    # With seed 11 the first attempt hangs and the second answers (draws 0.x < 0.5, then ≥ 0.5).
    await knobs({"seed": 11, "endpoints": {CHAT: {"rate_hang": 0.5}}})
    r = await stub.Complete(req(), timeout=10)
    assert r.text
    ep = await endpoint(sandbox_admin, CHAT)
    assert ep["faults"].get("hang", 0) >= 1 and ep["cancelled"] >= 1  # the hung attempt was abandoned, not awaited


async def test_oversize_is_invalid_argument_with_bad_request_and_not_retried(inference_for: Any, knobs: Any,
                                                                            sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for()
    await knobs({"endpoints": {CHAT: {"rate_oversize": 1.0}}})
    code, err, _ = await fails(stub.Complete(req(), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(err, InvalidArgument)
    assert err.reason == "CONTEXT_TOO_LONG" and err.provider == "openai"
    assert [f for f, _ in err.violations] == ["messages"]  # BadRequest field violation
    assert (await endpoint(sandbox_admin, CHAT))["calls"] == 1


# --- circuit breaker -------------------------------------------------------------------------------------------


async def test_a_dead_provider_trips_the_circuit_and_fails_fast(inference_for: Any, knobs: Any,
                                                                sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for(circuit_failure_threshold=3, circuit_cooldown_seconds=1.0, provider_max_attempts=1)
    await knobs({"endpoints": {CHAT: {"rate_500": 1.0}}})
    for _ in range(3):
        code, err, _ = await fails(stub.Complete(req(), timeout=10))
        assert code == grpc.StatusCode.UNAVAILABLE and err.reason == "PROVIDER_UNAVAILABLE"
    calls = (await endpoint(sandbox_admin, CHAT))["calls"]
    t0 = time.monotonic()
    code, err, _ = await fails(stub.Complete(req(), timeout=10))
    assert time.monotonic() - t0 < 0.1  # fails fast …
    assert code == grpc.StatusCode.UNAVAILABLE and isinstance(err, Unavailable)
    assert err.reason == CIRCUIT_OPEN and err.provider == "openai"
    assert err.retry_after is not None and 0 < err.retry_after <= 1.0  # … with the remaining cool-down
    assert (await endpoint(sandbox_admin, CHAT))["calls"] == calls  # … without calling the provider
    info = {p.provider: p for p in (await stub.ListModels(ipb.ListModelsRequest(), timeout=5)).providers}
    assert info["openai"].circuit_state == "open"

    # After the cool-down one probe goes through; the provider is back, so the circuit closes.
    await knobs({"endpoints": {CHAT: {"rate_500": 0.0}}})

    async def recovered() -> bool:
        try:
            await stub.Complete(req(), timeout=10)
            return True
        except grpc.aio.AioRpcError:
            return False

    await poll_until(recovered, within=5, interval=0.1)
    info = {p.provider: p for p in (await stub.ListModels(ipb.ListModelsRequest(), timeout=5)).providers}
    assert info["openai"].circuit_state == "closed"


async def test_search_circuit_breaker(res_settings: Settings, knobs: Any) -> None:
    s = res_settings.model_copy(update={"circuit_failure_threshold": 2, "circuit_cooldown_seconds": 5.0,
                                        "provider_max_attempts": 1})
    await knobs({"endpoints": {"tavily": {"rate_503": 1.0}}})
    async with serving("search", search_build, s) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = spb_grpc.SearchServiceStub(ch)
        for i in range(2):
            code, err, _ = await fails(stub.Search(spb.SearchRequest(query=f"q{i}"), timeout=10))
            assert code == grpc.StatusCode.UNAVAILABLE and err.reason != CIRCUIT_OPEN
        code, err, _ = await fails(stub.Search(spb.SearchRequest(query="q3"), timeout=10))
        assert code == grpc.StatusCode.UNAVAILABLE and err.reason == CIRCUIT_OPEN and err.provider == "tavily"
        assert err.retry_after is not None and 4 < err.retry_after <= 5


# --- adaptive concurrency ----------------------------------------------------------------------------------------


async def test_the_adaptive_limit_drops_on_429s_and_is_visible(inference_for: Any, knobs: Any) -> None:
    stub = await inference_for(openai_concurrency=20, provider_max_attempts=1)
    info = {p.provider: p for p in (await stub.ListModels(ipb.ListModelsRequest(), timeout=5)).providers}
    assert info["openai"].current_limit == info["openai"].max_limit == 20
    assert info["openai"].circuit_state == "closed"
    await knobs({"endpoints": {CHAT: {"rate_429": 1.0, "retry_after_s": 0}}})
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await fails(stub.Complete(req(), timeout=10))
    info = {p.provider: p for p in (await stub.ListModels(ipb.ListModelsRequest(), timeout=5)).providers}
    assert info["openai"].current_limit == 14 and info["openai"].max_limit == 20  # 20 → 18 → 16 → 14
    assert CONCURRENCY_LIMIT.labels("openai")._value.get() == 14  # the Prometheus gauge
    drops = [e for e in logs if e.get("event") == "concurrency_limit"]
    assert [e["limit"] for e in drops] == [18, 16, 14] and all(e["cause"] == "overload" for e in drops)
    calls = [e for e in logs if e.get("event") == "provider_call"]
    assert [e["concurrency_limit"] for e in calls] == [20, 18, 16]  # each call's line: the limit it ran under


# --- cancellation ---------------------------------------------------------------------------------------------------


async def test_a_cancelled_complete_cancels_the_provider_request_within_100ms(
    inference_for: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    stub = await inference_for()
    lags = []
    for _ in range(5):
        call = stub.Complete(req(), timeout=60, metadata=(("x-sandbox-fault", "hang"),))
        lags.append(await cancel_lag(sandbox_admin, CHAT, call))
    print(f"\nComplete cancel → sandbox sees the disconnect: {', '.join(f'{x * 1000:.1f}' for x in lags)} ms")
    assert max(lags) < 0.1, lags


async def test_a_cancelled_search_cancels_the_tavily_request_within_100ms(
    res_settings: Settings, sandbox_admin: httpx.AsyncClient
) -> None:
    s = res_settings.model_copy(update={"tavily_extra_headers": {"X-Sandbox-Fault": "hang"}})
    async with serving("search", search_build, s) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = spb_grpc.SearchServiceStub(ch)
        lags = []
        for i in range(3):
            call = stub.Search(spb.SearchRequest(query=f"hang {i}"), timeout=60)
            lags.append(await cancel_lag(sandbox_admin, "tavily.search", call))
    print(f"\nSearch cancel → sandbox sees the disconnect: {', '.join(f'{x * 1000:.1f}' for x in lags)} ms")
    assert max(lags) < 0.1, lags


async def test_schema_request_retries_a_malformed_answer(inference_for: Any, knobs: Any,
                                                         sandbox_admin: httpx.AsyncClient) -> None:
    stub = await inference_for()
    await knobs({"seed": 2, "endpoints": {CHAT: {"rate_malformed": 0.5}}})  # never 4 malformed in a row
    schema = {"type": "object", "properties": {"tier": {"type": "string"}}, "required": ["tier"]}
    for _ in range(4):
        r = await stub.Complete(req(json_schema=json.dumps(schema)), timeout=30)
        assert json.loads(r.json)
    st = (await sandbox_admin.get("/_sandbox/stats")).json()
    assert st["endpoints"][CHAT]["faults"].get("malformed", 0) >= 1
    # What the sandbox billed for the corrupted answers is reported apart: billed, never readable.
    assert st["billing_unread"]["openai"]["requests"] == st["endpoints"][CHAT]["faults"]["malformed"]
