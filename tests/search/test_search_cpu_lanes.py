"""The Tavily backend's connections are split over several SDK clients ("lanes", issue 16 item 1): httpcore scans
every connection of a pool on each request, so ``tavily_concurrency`` connections in one pool cost CPU that several
small pools do not. Against the sandbox over real HTTP: concurrent calls spread over the lanes, no lane has more
calls in flight (or connections open) than its pool size, the total stays the budget, a quiet backend keeps to one
warm lane, failed and cut calls give their place back, and closing the backend closes every client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.search.core import SearchParams
from services.search.tavily import POOL_SIZE, TavilyBackend, pool_sizes
from shared.config import Settings
from shared.errors import VantageError


def test_pool_sizes_split_the_budget_into_pools_of_at_most_eight() -> None:
    assert pool_sizes(50) == [8, 7, 7, 7, 7, 7, 7]
    assert pool_sizes(8) == [8] and pool_sizes(1) == [1] and pool_sizes(0) == [1]
    assert pool_sizes(9) == [5, 4] and pool_sizes(16) == [8, 8] and pool_sizes(17) == [6, 6, 5]
    for n in range(1, 300):
        sizes = pool_sizes(n)
        assert sum(sizes) == n and max(sizes) <= POOL_SIZE and len(sizes) == -(-n // POOL_SIZE)
        assert max(sizes) - min(sizes) <= 1


def _params(tag: str) -> SearchParams:
    return SearchParams(f"Together AI GPU cloud {tag} {uuid.uuid4().hex[:8]}", 5, "basic", False)


def _open_connections(backend: TavilyBackend) -> list[int]:
    """Connections each lane's httpcore pool holds now (read-only look at httpx's transport)."""
    return [len(lane.http._transport._pool.connections) for lane in backend.lanes]  # type: ignore[attr-defined]


async def _sandbox_tavily(admin: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await admin.get("/_sandbox/stats")).json()["endpoints"].get("tavily.search", {}))


@pytest.mark.integration
async def test_concurrent_calls_spread_over_the_lanes_within_each_pool(
    settings: Settings, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Callable[[dict[str, Any]], Any],
) -> None:
    await sandbox_knobs({"endpoints": {"tavily.search": {"latency_s": 0.3}}})
    (await sandbox_admin.post("/_sandbox/reset")).raise_for_status()  # zero max_in_flight
    backend = TavilyBackend(settings.model_copy(update={"tavily_concurrency": 20, "tavily_rpm": 0}))
    try:
        assert [lane.size for lane in backend.lanes] == [7, 7, 6]
        seen: list[list[int]] = []

        async def sample() -> None:  # what each lane holds while the calls run
            while True:
                seen.append([lane.in_flight for lane in backend.lanes])
                await asyncio.sleep(0.01)

        sampler = asyncio.ensure_future(sample())
        try:
            pages = await asyncio.gather(*(backend.search(_params(str(i)), timeout_s=30) for i in range(40)))
        finally:
            sampler.cancel()
        assert all(p.hits for p in pages)
        opened = _open_connections(backend)
        sizes = [lane.size for lane in backend.lanes]
        assert all(lane.calls > 0 for lane in backend.lanes)  # every lane took calls
        assert sum(lane.calls for lane in backend.lanes) == 40
        assert all(lane.peak <= lane.size for lane in backend.lanes), [lane.peak for lane in backend.lanes]
        assert [lane.peak for lane in backend.lanes] == sizes  # 40 calls at once: every pool filled, none beyond
        assert all(s <= size for row in seen for s, size in zip(row, sizes, strict=True))
        assert max(sum(row) for row in seen) == 20
        assert all(n <= size for n, size in zip(opened, sizes, strict=True)) and sum(opened) <= 20
        assert all(lane.in_flight == 0 for lane in backend.lanes)
        # The total stays the budget: Tavily saw at most tavily_concurrency calls at once, and that many.
        assert (await _sandbox_tavily(sandbox_admin))["max_in_flight"] == 20
    finally:
        await backend.aclose()


@pytest.mark.integration
async def test_one_call_at_a_time_keeps_to_one_warm_lane(settings: Settings) -> None:
    backend = TavilyBackend(settings.model_copy(update={"tavily_concurrency": 50}))
    try:
        assert len(backend.lanes) == 7
        for i in range(5):
            await backend.search(_params(f"seq{i}"), timeout_s=30)
        assert [lane.calls for lane in backend.lanes] == [5, 0, 0, 0, 0, 0, 0]
        assert _open_connections(backend) == [1, 0, 0, 0, 0, 0, 0]  # one kept-alive connection, reused
    finally:
        await backend.aclose()


@pytest.mark.integration
async def test_failed_and_cut_calls_give_their_place_back(
    settings: Settings, sandbox_knobs: Callable[[dict[str, Any]], Any],
) -> None:
    backend = TavilyBackend(settings.model_copy(update={"tavily_concurrency": 16, "retry_attempts": 1,
                                                        "circuit_failure_threshold": 0}))
    try:
        await sandbox_knobs({"endpoints": {"tavily.search": {"latency_s": 2.0}}})
        results = await asyncio.gather(*(backend.search(_params(f"cut{i}"), timeout_s=0.3) for i in range(12)),
                                       return_exceptions=True)
        assert all(isinstance(r, VantageError) for r in results), results
        assert all(lane.in_flight == 0 for lane in backend.lanes)
        assert all(lane.peak <= lane.size for lane in backend.lanes)
        await sandbox_knobs({"endpoints": {"tavily.search": None}})
        pages = await asyncio.gather(*(backend.search(_params(f"after{i}"), timeout_s=30) for i in range(16)))
        assert all(p.hits for p in pages) and all(lane.in_flight == 0 for lane in backend.lanes)
    finally:
        await backend.aclose()


@pytest.mark.integration
async def test_closing_closes_every_client(settings: Settings) -> None:
    backend = TavilyBackend(settings.model_copy(update={"tavily_concurrency": 24}))
    await asyncio.gather(*(backend.search(_params(f"close{i}"), timeout_s=30) for i in range(24)))
    assert len(backend.lanes) == 3 and all(n > 0 for n in _open_connections(backend))
    await backend.aclose()
    assert all(lane.http.is_closed for lane in backend.lanes)
    assert _open_connections(backend) == [0, 0, 0]
    with pytest.raises(RuntimeError):  # httpx refuses a request on a closed client
        await backend.lanes[-1].sdk.search("after close")
