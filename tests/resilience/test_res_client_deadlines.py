"""Deadlines are the client's, failures are the provider's (issue 11, item 6): calls that end because their own short
deadline passed answer DEADLINE_EXCEEDED and never count against the provider's circuit breaker or adaptive (AIMD)
concurrency limit — through the real inference and search services on loopback and a private sandbox whose
provider endpoints are slower than the deadline.

The failure before: 300 ``Complete(model="chatgpt")`` calls with a 20 ms deadline halved the ``brightdata_chatgpt``
limit and opened its circuit for everyone, and the calls answered UNAVAILABLE (the forwarded deadline — the time left
minus 50 ms — made the provider request time out at once, and that timeout was taken for the provider's).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc
import pytest

from services.inference.server import build as inference_build
from services.search.server import build as search_build
from shared.config import Settings
from shared.grpc_server import serving
from shared.resilience import CircuitState
from vantage.inference.v1 import inference_pb2 as ipb
from vantage.inference.v1 import inference_pb2_grpc as ipb_grpc
from vantage.search.v1 import search_pb2 as spb
from vantage.search.v1 import search_pb2_grpc as spb_grpc

pytestmark = pytest.mark.integration

CALLS = 300
DEADLINE = 0.02


async def burst(call: Any, n: int = CALLS, concurrency: int = 30) -> Counter[str]:
    """``n`` calls of ``call(i)`` (each with the short deadline), ``concurrency`` at a time; codes counted."""
    codes: Counter[str] = Counter()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            try:
                await call(i)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as e:
                codes[e.code().name] += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return codes


def provider_state(models: ipb.ListModelsResponse, name: str) -> tuple[int, int, str]:
    p = next(p for p in models.providers if p.provider == name)
    return p.current_limit, p.max_limit, p.circuit_state


@pytest.mark.parametrize(("model", "provider", "endpoint"), [
    ("chatgpt", "brightdata_chatgpt", "brightdata.trigger"),
    ("gpt-4.1", "openai", "openai.chat_completions"),
])
async def test_short_client_deadlines_leave_the_provider_breaker_closed_and_its_limit_unchanged(
    res_settings: Settings, knobs: Any, model: str, provider: str, endpoint: str
) -> None:
    await knobs({"endpoints": {endpoint: {"latency_s": 0.5}}})
    settings = res_settings.model_copy(update={"circuit_failure_threshold": 5, "circuit_cooldown_seconds": 30.0})
    async with serving("inference", inference_build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = ipb_grpc.InferenceServiceStub(ch)
        before = provider_state(await stub.ListModels(ipb.ListModelsRequest(), timeout=10), provider)

        def call(i: int) -> Any:
            return stub.Complete(ipb.CompleteRequest(
                model=model, location="US", no_cache=True,
                messages=[ipb.Message(role="user", content=f"Which GPU clouds are best for training? #{i}")],
            ), timeout=DEADLINE)

        codes = await burst(call)
        after = provider_state(await stub.ListModels(ipb.ListModelsRequest(), timeout=10), provider)
    print(f"\n{CALLS} Complete({model}) calls with a {DEADLINE * 1000:.0f} ms deadline: {dict(codes)}; "
          f"{provider} (limit, max, circuit) before {before}, after {after}")
    assert codes == {"DEADLINE_EXCEEDED": CALLS}
    assert before[2] == CircuitState.CLOSED.name.lower() and after == before


async def test_short_client_deadlines_on_search_leave_the_tavily_breaker_closed(
    res_settings: Settings, knobs: Any
) -> None:
    from shared import resilience

    await knobs({"endpoints": {"tavily.search": {"latency_s": 0.5}}})
    settings = res_settings.model_copy(update={"circuit_failure_threshold": 5, "circuit_cooldown_seconds": 30.0})
    async with serving("search", search_build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = spb_grpc.SearchServiceStub(ch)
        codes = await burst(lambda i: stub.Search(spb.SearchRequest(query=f"GPU cloud providers {i}"), timeout=DEADLINE))
        state = resilience.CIRCUIT_STATE.labels("tavily")._value.get()
        limit = resilience.CONCURRENCY_LIMIT.labels("tavily")._value.get()
        budget = resilience.CONCURRENCY_MAX.labels("tavily")._value.get()
    print(f"\n{CALLS} Search calls with a {DEADLINE * 1000:.0f} ms deadline: {dict(codes)}; tavily circuit {state}, "
          f"limit {limit} of {budget}")
    assert codes == {"DEADLINE_EXCEEDED": CALLS}
    assert state == CircuitState.CLOSED and limit == budget


async def test_a_provider_timeout_with_the_deadline_spent_is_the_callers_and_one_before_it_is_the_providers() -> None:
    from shared.errors import DeadlineExceeded, Unavailable
    from shared.grpc_client import Deadline
    from shared.resilience import ProviderGuard

    guard = ProviderGuard.from_settings(Settings(circuit_failure_threshold=2), "deadline_unit", concurrency=10)

    async def timed_out(deadline: Deadline) -> None:
        async with guard.attempt(deadline):
            raise Unavailable("did not answer in time", reason="PROVIDER_TIMEOUT", provider="deadline_unit")

    spent = Deadline(0.0)
    for _ in range(5):
        with pytest.raises(DeadlineExceeded):
            await timed_out(spent)
    assert guard.limit == 10 and guard.breaker.state is CircuitState.CLOSED and guard.breaker.failures == 0
    for _ in range(2):  # the same timeout with time left on the deadline: the provider's fault
        with pytest.raises(Unavailable):
            await timed_out(Deadline(30.0))
    assert guard.limit < 10 and guard.breaker.state is CircuitState.OPEN
