"""One retry layer under one deadline (issue 12 item 4): provider retries live in the service's guard, the hop to a
service retries only through gRPC's own retry policy and throttling (the channel's service config, gRFC A6), and the
two do not multiply.

The first half runs the real search service against the private sandbox, reached through the real channel factory
(:class:`shared.grpc_client.Channels`: retry policy on, 3 attempts): a Tavily that always answers 500 costs exactly
the configured provider attempts at the sandbox — the service's UNAVAILABLE carries ``grpc-retry-pushback-ms: -1``,
so gRPC does not send the call again — and a deadline shorter than the attempts ends the call with the service's own
answer (its ErrorInfo) before the caller gives up. The second half shows what gRPC retries, with a bare handler under
the real method names (what a restarting server answers: UNAVAILABLE without pushback): idempotent methods are
retried to success, others are not, and retry throttling stops retries when most attempts fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from res_testkit import bare_server, endpoint, fails, poll_until

from services.extraction.server import build as extraction_build
from services.inference.server import build as inference_build
from services.orchestrator.app.inputs import rows_from_pairs
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.store import open_store
from services.search.server import build as search_build
from shared.config import Settings
from shared.errors import DeadlineExceeded, Unavailable
from shared.grpc_client import IDEMPOTENT_METHODS, Channels, retry_service_config
from shared.grpc_server import RETRY_PUSHBACK_KEY, serving
from vantage.extraction.v1 import extraction_pb2
from vantage.inference.v1 import inference_pb2
from vantage.inference.v1 import inference_pb2_grpc as ipb_grpc
from vantage.search.v1 import search_pb2 as spb
from vantage.search.v1 import search_pb2_grpc as spb_grpc

pytestmark = pytest.mark.integration

TAVILY = "tavily.search"


@pytest.fixture
async def search_over_channel(res_settings: Settings) -> AsyncIterator[Any]:
    """``await make(**overrides)`` → a SearchService stub on a fresh search server, over a :class:`Channels`
    channel (the service config the orchestrator's hops use)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> spb_grpc.SearchServiceStub:
            s = res_settings.model_copy(update={"retry_attempts": 3, **overrides})
            srv = await stack.enter_async_context(serving("search", search_build, s))
            channels = Channels(s)
            stack.push_async_callback(channels.close)
            return spb_grpc.SearchServiceStub(channels.get(srv.address))

        yield make


# --- the service over the channel ---------------------------------------------------------------------------------


async def test_a_provider_that_always_answers_500_costs_the_configured_attempts_in_total(
    search_over_channel: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    stub = await search_over_channel(provider_max_attempts=3, circuit_failure_threshold=0)
    await knobs({"endpoints": {"tavily": {"rate_500": 1.0}}})
    code, err, raw = await fails(stub.Search(spb.SearchRequest(query="gpu cluster", no_cache=True), timeout=30))
    assert code == grpc.StatusCode.UNAVAILABLE and isinstance(err, Unavailable)
    assert err.provider == "tavily"  # the service's answer (its ErrorInfo), not the channel's
    assert (RETRY_PUSHBACK_KEY, "-1") in tuple(raw.trailing_metadata() or ())
    # 3 provider attempts in the service × 1 attempt at the hop (gRPC's policy would allow 3): 3, not 9.
    assert (await endpoint(sandbox_admin, TAVILY))["calls"] == 3


async def test_a_paid_completion_that_always_gets_500_costs_the_configured_attempts_in_total(
    res_settings: Settings, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    # Complete is in the channel's retry policy (idempotent through the response cache and its idempotency key), so
    # without the service's pushback every one of its provider attempts would be paid 3 times over.
    s = res_settings.model_copy(update={"retry_attempts": 3, "provider_max_attempts": 2,
                                        "circuit_failure_threshold": 0})
    await knobs({"endpoints": {"openai.chat_completions": {"rate_500": 1.0}}})
    channels = Channels(s)
    try:
        async with serving("inference", inference_build, s) as srv:
            stub = ipb_grpc.InferenceServiceStub(channels.get(srv.address))
            request = inference_pb2.CompleteRequest(
                model="gpt-4.1", messages=[inference_pb2.Message(role="user", content="Classify Lumen Robotics.")],
                no_cache=True,
            )
            code, err, _ = await fails(stub.Complete(request, timeout=30))
    finally:
        await channels.close()
    assert code == grpc.StatusCode.UNAVAILABLE and err.provider == "openai"
    assert (await endpoint(sandbox_admin, "openai.chat_completions"))["calls"] == 2


async def test_a_deadline_shorter_than_the_attempts_ends_the_call_with_the_services_answer(
    search_over_channel: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    # Each attempt takes 0.3 s at the sandbox; 10 attempts would take 3 s; the caller allows 1 s.
    stub = await search_over_channel(provider_max_attempts=10, circuit_failure_threshold=0,
                                     retry_initial_seconds=0.01, retry_max_seconds=0.02)
    await knobs({"endpoints": {"tavily": {"rate_500": 1.0, "latency_s": 0.3}}})
    code, err, _ = await fails(stub.Search(spb.SearchRequest(query="gpu cluster", no_cache=True), timeout=1.0))
    # The service answered (ErrorInfo names the provider) — so before the caller's deadline, which would end the
    # call with a bare DEADLINE_EXCEEDED of the client's own: either the provider's last 500, or the attempt that
    # the deadline cut (DEADLINE_EXCEEDED, reason DEADLINE: the caller's deadline, not counted as a failure).
    assert err.provider == "tavily", (code, err.message)
    assert isinstance(err, Unavailable | DeadlineExceeded)
    if isinstance(err, DeadlineExceeded):
        assert err.reason == "DEADLINE"

    async def settled() -> dict[str, Any] | None:
        ep = await endpoint(sandbox_admin, TAVILY)
        return ep if ep.get("in_flight", 0) == 0 else None

    ep = await poll_until(settled)  # an attempt cut by the deadline is abandoned, not left running
    assert 2 <= ep["calls"] <= 10  # retried, but never past the configured attempts, and never again at the hop
    assert ep["calls"] < 10  # … and the deadline, not the attempt count, ended it


# --- what gRPC retries at the hop ----------------------------------------------------------------------------------


@dataclass
class Restarting:
    """A bare handler that answers UNAVAILABLE ``failures`` times (as a server going away does), then OK;
    ``pushback`` adds ``grpc-retry-pushback-ms: -1`` to its failures."""

    failures: int = 0
    pushback: bool = False
    calls: int = 0

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            if self.pushback:
                context.set_trailing_metadata(((RETRY_PUSHBACK_KEY, "-1"),))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return b""


@pytest.fixture
async def restarting() -> AsyncIterator[tuple[Restarting, str]]:
    state = Restarting()
    handlers = {
        "vantage.search.v1.SearchService": {"Search": state.handle},
        "vantage.inference.v1.InferenceService": {"Complete": state.handle, "CompleteBatch": state.handle},
    }
    async with bare_server(handlers) as address:
        yield state, address


async def _call(channels: Channels, target: str, method: str) -> grpc.StatusCode:
    call = channels.get(target).unary_unary(method)
    try:
        await call(b"", timeout=10)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


SEARCH = "/vantage.search.v1.SearchService/Search"


async def test_an_idempotent_method_is_retried_by_grpc_to_success(
    restarting: tuple[Restarting, str], res_settings: Settings
) -> None:
    state, target = restarting
    state.failures = 2
    channels = Channels(res_settings.model_copy(update={"retry_attempts": 3}))
    try:
        assert await _call(channels, target, SEARCH) == grpc.StatusCode.OK
    finally:
        await channels.close()
    assert state.calls == 3


async def test_pushback_and_non_idempotent_methods_are_not_retried(
    restarting: tuple[Restarting, str], res_settings: Settings
) -> None:
    state, target = restarting
    channels = Channels(res_settings.model_copy(update={"retry_attempts": 3}))
    try:
        state.failures, state.pushback, state.calls = 1, True, 0
        assert await _call(channels, target, SEARCH) == grpc.StatusCode.UNAVAILABLE
        assert state.calls == 1
        state.failures, state.pushback, state.calls = 1, False, 0
        assert await _call(channels, target, "/vantage.inference.v1.InferenceService/CompleteBatch") == (
            grpc.StatusCode.UNAVAILABLE
        )
        assert state.calls == 1  # a new Bright Data snapshot per call: never sent twice by the channel
    finally:
        await channels.close()


async def test_retry_throttling_stops_retries_when_most_attempts_fail(
    restarting: tuple[Restarting, str], res_settings: Settings
) -> None:
    state, target = restarting
    state.failures = 10**9
    channels = Channels(res_settings.model_copy(update={
        "retry_attempts": 3, "retry_initial_seconds": 0.001, "retry_max_seconds": 0.002,
        "retry_throttle_max_tokens": 10, "retry_throttle_token_ratio": 0.1,
    }))
    try:
        counts = []
        for _ in range(10):
            before = state.calls
            assert await _call(channels, target, SEARCH) == grpc.StatusCode.UNAVAILABLE
            counts.append(state.calls - before)
    finally:
        await channels.close()
    # gRFC A6: 10 tokens, −1 per failed attempt; no retry once the count is at or below 5. The first call makes its
    # 3 attempts (10 → 7), the second retries once (→ 5), every later call makes one attempt.
    assert counts[0] == 3
    assert counts[-5:] == [1] * 5
    assert sum(counts) < 3 * len(counts)


def test_the_retry_policy_names_real_methods_and_follows_the_settings() -> None:
    services = {
        d.full_name: d
        for pb in (spb, inference_pb2, extraction_pb2)
        for d in pb.DESCRIPTOR.services_by_name.values()
    }
    for svc, methods in IDEMPOTENT_METHODS.items():
        assert svc in services, svc
        assert set(methods) <= set(services[svc].methods_by_name), (svc, methods)
    config = retry_service_config(Settings(retry_attempts=9, retry_initial_seconds=0.25, retry_max_seconds=4))
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["maxAttempts"] == 5  # gRFC A6 caps attempts at 5
    assert (policy["initialBackoff"], policy["maxBackoff"]) == ("0.250s", "4.000s")
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}
    assert retry_service_config(Settings(retry_attempts=1)) == {}  # one attempt: no policy (A6 needs ≥ 2)


# --- a whole research run: the orchestrator does not multiply the service's attempts ------------------------------


async def test_a_research_item_against_a_provider_that_always_answers_500_costs_the_configured_attempts(
    res_settings: Settings, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    # The orchestrator allows 3 attempts per stage, the search service's guard 2 provider attempts per call: a
    # Tavily that always answers 500 is called 2 times per item in total (the service's UNAVAILABLE carries
    # pushback, so neither gRPC nor the orchestrator's loop resends it), and the item fails within its stage deadline.
    s = res_settings.model_copy(update={"retry_attempts": 3, "provider_max_attempts": 2,
                                        "circuit_failure_threshold": 0, "rpc_timeout_seconds": 20.0})
    await knobs({"endpoints": {"tavily": {"rate_500": 1.0}}})
    async with (
        serving("search", search_build, s) as srch,
        serving("inference", inference_build, s) as inf,
        serving("extraction", extraction_build, s) as ext,
    ):
        live = s.model_copy(update={"search_addr": srch.address, "inference_addr": inf.address,
                                    "extraction_addr": ext.address})
        store = await open_store(live.database_url)
        channels = Channels(live)
        try:
            orch = Orchestrator(store, Clients(channels, live), live)
            companies = [("Cohere", "cohere.com"), ("Mistral AI", "mistral.ai"), ("Lumen Robotics", "")]
            run, _ = await create_research_run(orch, rows_from_pairs(companies), name="500s",
                                               options=ResearchOptions(model="gpt-4.1", no_cache=True))
            await orch.execute(run.id)
            items = await store.page_items(run.id)
        finally:
            await channels.close()
            await store.close()
    assert [it.status for it in items] == ["failed"] * 3
    assert all(it.error and it.error.startswith("search: UNAVAILABLE") for it in items), [it.error for it in items]
    assert (await endpoint(sandbox_admin, TAVILY))["calls"] == 2 * len(companies)
