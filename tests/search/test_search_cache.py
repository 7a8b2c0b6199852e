"""Unit tests of the TTL/LRU cache and single-flight coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from services.search.cache import CachedFlight, Origin, TTLCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expiry() -> None:
    clock = FakeClock()
    c: TTLCache[str, int] = TTLCache(10, 5.0, clock=clock)
    c.put("a", 1)
    clock.now += 4.9
    assert c.get("a") == 1
    clock.now += 0.2
    assert c.get("a") is None
    assert len(c) == 0
    assert c.stats.expirations == 1


def test_lru_eviction() -> None:
    c: TTLCache[str, int] = TTLCache(2, 60.0)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now most recently used
    c.put("c", 3)
    assert c.get("b") is None
    assert (c.get("a"), c.get("c")) == (1, 3)
    assert c.stats.evictions == 1


def test_disabled_cache_stores_nothing() -> None:
    for c in (TTLCache[str, int](0, 60.0), TTLCache[str, int](10, 0.0)):
        c.put("a", 1)
        assert c.get("a") is None


async def poll(cond: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait until ``cond()`` holds, polling, for at most ``within_s`` seconds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_concurrent_identical_requests_fetch_once() -> None:
    flight: CachedFlight[str, int] = CachedFlight(TTLCache(10, 60.0))
    release = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    tasks = [asyncio.create_task(flight.get("k", fetch)) for _ in range(10)]
    await poll(lambda: flight.cache.stats.misses == 10)  # every caller looked up and is now waiting
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert [v for v, _ in results] == [42] * 10
    origins = [o for _, o in results]
    assert origins.count(Origin.FETCHED) == 1
    assert origins.count(Origin.COALESCED) == 9
    assert await flight.get("k", fetch) == (42, Origin.HIT)
    assert calls == 1 and flight.in_flight == 0


async def test_refresh_bypasses_lookup_but_stores() -> None:
    flight: CachedFlight[str, int] = CachedFlight(TTLCache(10, 60.0))
    n = 0

    async def fetch() -> int:
        nonlocal n
        n += 1
        return n

    assert await flight.get("k", fetch) == (1, Origin.FETCHED)
    assert await flight.get("k", fetch, refresh=True) == (2, Origin.FETCHED)
    assert await flight.get("k", fetch) == (2, Origin.HIT)


async def test_errors_are_shared_not_cached() -> None:
    flight: CachedFlight[str, int] = CachedFlight(TTLCache(10, 60.0))
    release = asyncio.Event()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise RuntimeError("boom")

    tasks = [asyncio.create_task(flight.get("k", failing)) for _ in range(3)]
    await poll(lambda: flight.cache.stats.misses == 3)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1

    async def ok() -> int:
        return 7

    assert await flight.get("k", ok) == (7, Origin.FETCHED)


async def test_follower_survives_cancelled_leader() -> None:
    flight: CachedFlight[str, int] = CachedFlight(TTLCache(10, 60.0))
    started = asyncio.Event()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(3600)
        return 0

    async def fast() -> int:
        nonlocal calls
        calls += 1
        return 5

    leader = asyncio.create_task(flight.get("k", slow))
    await started.wait()
    follower = asyncio.create_task(flight.get("k", fast))
    await poll(lambda: flight.cache.stats.misses == 2)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await follower == (5, Origin.FETCHED)
    assert calls == 2


async def test_cancelled_follower_does_not_cancel_leader() -> None:
    flight: CachedFlight[str, int] = CachedFlight(TTLCache(10, 60.0))
    release = asyncio.Event()

    async def fetch() -> int:
        await release.wait()
        return 1

    leader = asyncio.create_task(flight.get("k", fetch))
    await poll(lambda: flight.in_flight == 1)
    follower = asyncio.create_task(flight.get("k", fetch))
    await poll(lambda: flight.cache.stats.misses == 2)
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    release.set()
    assert await leader == (1, Origin.FETCHED)


def test_weight_bound_evicts_lru_and_refuses_oversized_values() -> None:
    c: TTLCache[str, str] = TTLCache(100, 60.0, max_weight=10, weigh=len)
    c.put("a", "aaaa")
    c.put("b", "bbbb")
    assert c.get("a") == "aaaa"  # b is now least recently used
    c.put("c", "cccc")
    assert c.get("b") is None and c.weight == 8
    c.put("a", "a")  # replacing an entry releases its weight
    assert c.weight == 5
    c.put("huge", "x" * 11)
    assert c.get("huge") is None and c.weight == 5
