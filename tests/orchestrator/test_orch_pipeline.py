"""The streaming engine: budgets hold, admission bounds memory, no barrier, cooperative stop spares writers."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.orchestrator.app.jobs.base import describe
from services.orchestrator.app.pipeline import Admission, Budget, Inflight, stream_items
from shared.errors import InvalidArgument, ResourceExhausted


def claimer(n_items: int, log: list[int] | None = None):
    """``claim(n)`` over items 0..n_items-1, recording batch sizes."""
    state = {"next": 0}

    async def claim(n: int) -> list[int]:
        start = state["next"]
        stop = min(n_items, start + n)
        state["next"] = stop
        if log is not None:
            log.append(stop - start)
        return list(range(start, stop))

    return claim


async def test_admission_bounds_items_in_flight_and_claims_only_free_slots() -> None:
    in_flight = peak = 0
    batches: list[int] = []

    async def process(_: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1

    res = await stream_items(claimer(200, batches), process, max_in_flight=7, claim_batch=5)
    assert res.claimed == 200
    assert peak <= 7
    assert max(batches) <= 5


async def test_budget_holds_under_load() -> None:
    b = Budget("inference", 3)

    async def call(_: int) -> None:
        async with b.slot():
            await asyncio.sleep(0.002)

    await stream_items(claimer(50), call, max_in_flight=20, claim_batch=10)
    assert b.peak == 3
    assert (b.in_use, b.waiting) == (0, 0)
    with pytest.raises(ValueError):
        Budget("x", 0)


async def test_a_slow_item_does_not_hold_up_the_others() -> None:
    """Streaming, not batches: with 4 slots, one 0.5 s item and 40 × 10 ms items finish in ≈ 0.5 s, not 10 × 0.5 s."""
    done_at: dict[int, float] = {}
    t0 = time.monotonic()

    async def process(i: int) -> None:
        await asyncio.sleep(0.5 if i == 0 else 0.01)
        done_at[i] = time.monotonic() - t0

    await stream_items(claimer(41), process, max_in_flight=4, claim_batch=4)
    assert max(v for k, v in done_at.items() if k != 0) < 0.4  # the fast ones all finished before the slow one
    assert done_at[0] < 0.8


async def test_stop_cancels_waiting_items_but_lets_writers_finish() -> None:
    inflight = Inflight()
    written: list[int] = []
    cancelled: list[int] = []
    started = asyncio.Event()

    async def process(i: int) -> None:
        try:
            if i == 0:
                with inflight.critical():
                    started.set()
                    await asyncio.sleep(0.05)  # a "database write" in progress when stop comes
                    written.append(i)
            else:
                await asyncio.sleep(10)  # a slow "network call"
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def stopper() -> None:
        await started.wait()
        await asyncio.sleep(0.01)
        assert inflight.stop() == 3  # the three waiting ones; not the writer

    async with asyncio.TaskGroup() as tg:
        tg.create_task(stopper())
        res = await asyncio.wait_for(
            stream_items(claimer(100), process, max_in_flight=4, claim_batch=4, inflight=inflight), 5
        )
    assert res.stopped and res.claimed == 4
    assert written == [0]
    assert sorted(cancelled) == [1, 2, 3]


async def test_an_infrastructure_error_stops_the_stream() -> None:
    async def process(i: int) -> None:
        if i == 3:
            raise RuntimeError("database down")
        await asyncio.sleep(0.01)

    with pytest.raises(ExceptionGroup) as e:
        await stream_items(claimer(100), process, max_in_flight=5, claim_batch=5)
    assert e.group_contains(RuntimeError, match="database down")


async def test_admission_release_wakes_the_producer() -> None:
    a = Admission(2)
    assert await a.reserve(5) == 2
    waiter = asyncio.ensure_future(a.reserve(1))
    await asyncio.sleep(0)
    assert not waiter.done()
    a.release()
    assert await asyncio.wait_for(waiter, 1) == 1


def test_failure_reasons_are_one_line_with_stage_code_and_attempts() -> None:
    assert describe("inference", ResourceExhausted("rate limited by openai"), 3) == (
        "inference: RESOURCE_EXHAUSTED after 3 attempts: rate limited by openai"
    )
    assert describe("inference", InvalidArgument("too long", reason="CONTEXT_TOO_LONG")) == (
        "inference: INVALID_ARGUMENT: too long [CONTEXT_TOO_LONG]"
    )
    assert describe("search", ValueError("bad")) == "search: internal error: ValueError: bad"


async def test_budget_slots_show_in_the_prometheus_gauges() -> None:
    import asyncio

    from prometheus_client import REGISTRY

    from services.orchestrator.app.pipeline import Budget

    budget = Budget("gauge-test", 1)

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"budget": "gauge-test"})

    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with budget.slot():
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with budget.slot():
            pass

    async with asyncio.TaskGroup() as tg:
        tg.create_task(holder())
        await held.wait()
        tg.create_task(waiter())
        for _ in range(100):  # let the waiter reach the semaphore
            if budget.waiting:
                break
            await asyncio.sleep(0)
        assert (gauge("budget_in_use"), gauge("budget_waiting")) == (1.0, 1.0)
        release.set()
    assert (gauge("budget_in_use"), gauge("budget_waiting")) == (0.0, 0.0)
