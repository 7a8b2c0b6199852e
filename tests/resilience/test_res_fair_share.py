"""Fair share of a provider's budget between callers (issue 11, item 8): one client cannot take the whole Tavily
budget of the search service — a second client's calls overtake the first one's queued surplus — while a caller
alone still uses every slot. Through :class:`shared.resilience.ProviderGuard` directly, and through the real search
service on loopback (two channels = two callers) against a private sandbox whose Tavily endpoint is slow."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from services.search.server import build as search_build
from shared.config import Settings
from shared.grpc_server import serving
from shared.resilience import ProviderGuard, current_caller
from vantage.search.v1 import search_pb2 as spb
from vantage.search.v1 import search_pb2_grpc as spb_grpc


async def settle() -> None:
    """Let every runnable task run until it blocks (a few event-loop turns; nothing here waits on time)."""
    for _ in range(20):
        await asyncio.sleep(0)


def guard(limit: int) -> ProviderGuard:
    return ProviderGuard.from_settings(Settings(circuit_failure_threshold=0), "fair_test", concurrency=limit)


async def test_a_caller_alone_uses_every_slot_and_a_newcomer_overtakes_its_queued_surplus() -> None:
    g = guard(4)
    release = asyncio.Event()
    order: list[str] = []

    async def call(caller: str, tag: str) -> None:
        current_caller.set(caller)
        async with g.attempt():
            order.append(tag)
            await release.wait()

    greedy = [asyncio.create_task(call("A", f"A{i}")) for i in range(12)]
    await settle()
    assert g.limiter.in_flight == 4
    assert g.fair is not None and g.fair.inside("A") >= 4  # alone, A takes every slot
    newcomer = [asyncio.create_task(call("B", f"B{i}")) for i in range(2)]
    await settle()
    release.set()
    await asyncio.gather(*greedy, *newcomer)
    # B's two calls start right after A's first four, ahead of A's eight queued ones.
    assert order[:4] == ["A0", "A1", "A2", "A3"]
    assert set(order[4:6]) == {"B0", "B1"}, order
    assert g.fair.waits > 0 and g.fair.inside("A") == 0 and g.fair.inside("B") == 0


async def test_fair_share_off_keeps_the_queue_order() -> None:
    g = ProviderGuard.from_settings(Settings(circuit_failure_threshold=0, provider_fair_share=False), "fair_off",
                                    concurrency=2)
    release = asyncio.Event()
    order: list[str] = []

    async def call(caller: str, tag: str) -> None:
        current_caller.set(caller)
        async with g.attempt():
            order.append(tag)
            await release.wait()

    tasks = [asyncio.create_task(call("A", f"A{i}")) for i in range(4)]
    await settle()
    assert g.limiter.in_flight == 2
    tasks.append(asyncio.create_task(call("B", "B0")))
    await settle()
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["A0", "A1", "A2", "A3", "B0"]


@pytest.mark.integration
async def test_one_client_cannot_take_the_whole_tavily_budget_of_the_search_service(
    res_settings: Settings, knobs: Any
) -> None:
    await knobs({"endpoints": {"tavily.search": {"latency_s": 0.1}}})
    settings = res_settings.model_copy(update={"tavily_concurrency": 4, "search_cache_entries": 0})
    done: list[str] = []
    async with (
        serving("search", search_build, settings) as srv,
        # Two clients = two connections (channels of one process would share one TCP connection: grpc's global
        # subchannel pool), so the server sees two peers.
        grpc.aio.insecure_channel(srv.address, options=[("grpc.use_local_subchannel_pool", 1)]) as greedy_ch,
        grpc.aio.insecure_channel(srv.address, options=[("grpc.use_local_subchannel_pool", 1)]) as polite_ch,
    ):
        greedy = spb_grpc.SearchServiceStub(greedy_ch)
        polite = spb_grpc.SearchServiceStub(polite_ch)

        async def one(stub: spb_grpc.SearchServiceStub, tag: str) -> None:
            await stub.Search(spb.SearchRequest(query=f"GPU cloud {tag}"), timeout=60)
            done.append(tag)

        first = asyncio.Event()

        async def flooding(i: int) -> None:
            await one(greedy, f"A{i}")
            first.set()

        flood = [asyncio.create_task(flooding(i)) for i in range(40)]
        await first.wait()  # the flood is under way: A holds every slot and 30-odd calls wait
        await asyncio.gather(*(one(polite, f"B{i}") for i in range(4)))
        a_done_when_b_finished = sum(1 for t in done if t.startswith("A"))
        await asyncio.gather(*flood)
    print(f"\nA's calls done when B's 4 were answered: {a_done_when_b_finished} of 40")
    # FIFO would answer B after A's whole queue (≥ 36 of A's 40); its fair share answers B within a few rounds.
    assert a_done_when_b_finished <= 20, done
