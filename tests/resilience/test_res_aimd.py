"""The adaptive limiter against a fake API that answers 429 above a hidden concurrency C* (reference/performance.md
§7 goal 8): steady-state goodput ≥ 85 % of C*/L, 429s ≤ 5 % of calls, and convergence after C* changes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from shared.errors import ResourceExhausted
from shared.resilience import AIMDLimiter

L = 0.02  # seconds per successful call (latency scaled down)


@dataclass
class FakeAPI:
    """Serves at most ``cstar`` calls at once; the rest get an immediate 429."""

    cstar: int
    in_flight: int = 0
    ok: int = 0
    rejected: int = 0
    peak: int = 0
    limits: list[tuple[float, int]] = field(default_factory=list)

    async def call(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.in_flight > self.cstar:
                self.rejected += 1
                raise ResourceExhausted("429 (fake)")
            await asyncio.sleep(L)
            self.ok += 1
        finally:
            self.in_flight -= 1


async def drive(lim: AIMDLimiter, api: FakeAPI, seconds: float, workers: int = 60) -> None:
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            try:
                async with lim.slot():
                    await api.call()
            except ResourceExhausted:
                await asyncio.sleep(0)  # a rejected caller comes straight back (worst case for the API)

    async def sample() -> None:
        while time.monotonic() < stop:
            api.limits.append((time.monotonic(), lim.limit))
            await asyncio.sleep(0.01)

    await asyncio.gather(sample(), *(worker() for _ in range(workers)))


def window(api: FakeAPI, since: float) -> list[int]:
    return [lim for t, lim in api.limits if t >= since]


async def measure(lim: AIMDLimiter, api: FakeAPI, warmup: float, seconds: float) -> tuple[float, float]:
    await drive(lim, api, warmup)
    ok0, rej0 = api.ok, api.rejected
    t0 = time.monotonic()
    await drive(lim, api, seconds)
    ok, rej = api.ok - ok0, api.rejected - rej0
    goodput = ok / (time.monotonic() - t0) / (api.cstar / L)
    return goodput, rej / max(1, ok + rej)


async def test_aimd_goodput_and_429_rate_at_steady_state() -> None:
    # The bound C*/L as this event loop delivers it (timer overshoot included): exactly C* calls in flight.
    ideal, _ = await measure(AIMDLimiter("aimd-ideal", 20, adaptive=False), FakeAPI(cstar=20), 0.3, 1.5)
    lim = AIMDLimiter("aimd-steady", 50)
    api = FakeAPI(cstar=20)
    goodput, rate_429 = await measure(lim, api, warmup=1.0, seconds=2.0)
    print(f"\nAIMD steady state: goodput {goodput / ideal:.1%} of C* in flight ({goodput:.1%} of C*/L), "
          f"429 rate {rate_429:.2%}, limit now {lim.limit}")
    assert goodput / ideal >= 0.85
    assert rate_429 <= 0.05
    assert lim.limit <= 50


async def test_aimd_converges_after_the_provider_capacity_changes() -> None:
    lim = AIMDLimiter("aimd-change", 50)
    api = FakeAPI(cstar=20)
    await drive(lim, api, 1.0)
    api.cstar = 8  # the provider tightens its limit
    t_change = time.monotonic()
    await drive(lim, api, 1.5)
    settled = window(api, t_change + 0.5)
    assert settled and max(settled) <= 12 and min(settled) >= 5, settled[:20]
    api.cstar = 30  # and loosens it again: the limit grows back (never above the budget)
    t_change = time.monotonic()
    await drive(lim, api, 3.0)
    grown = window(api, t_change + 2.5)
    assert grown and min(grown) >= 20, grown[:20]


async def test_netflix_rule_verbatim_grows_per_success_and_overshoots() -> None:
    """per_window=False is AIMDLimit as published (+1 per sample): same goodput, many more 429s — why the default
    grows by one per window."""
    lim = AIMDLimiter("aimd-netflix", 50, per_window=False)
    api = FakeAPI(cstar=20)
    goodput, rate_429 = await measure(lim, api, warmup=1.0, seconds=1.5)
    print(f"\nNetflix +1/sample: goodput {goodput:.1%} of C*/L, 429 rate {rate_429:.2%}")
    assert goodput >= 0.6  # still works (loosely bounded: this run's point is the 429 rate, and CPU load moves it)
    assert rate_429 > 0.05


@pytest.mark.parametrize("per_window", [True, False])
async def test_a_burst_of_drops_from_one_window_cuts_once(per_window: bool) -> None:
    lim = AIMDLimiter(f"aimd-burst-{per_window}", 40, per_window=per_window)
    gate = asyncio.Event()

    async def rejected() -> None:
        with pytest.raises(ResourceExhausted):
            async with lim.slot():
                await gate.wait()
                raise ResourceExhausted("429")

    tasks = [asyncio.create_task(rejected()) for _ in range(30)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(*tasks)
    assert lim.limit == 36  # one cut (⌊40·0.9⌋), not 0.9³⁰
