"""The Bright Data 429 window shared through the inference service's tables (services/inference/shared_budget.py), on
real SQLite and PostgreSQL: two budgets on one database behave as two replicas sharing one token — each 429 is one
row both see, each replica's calls in flight are held to its share (budget // replicas), a 429 of one pauses the
other, and a replica that leaves gives its share back. Bright Data blocks an IP at 25 429s in 5 minutes
(/work/shared/reference/providers-2026-12.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inference.providers.brightdata import RateLimitBudget
from services.inference.shared_budget import SharedBudgetStore, budget_key
from services.inference.store import CHAIN
from shared.db import create_engine


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    await CHAIN.ensure_schema(eng)
    yield eng
    await eng.dispose()


async def _grants(budget: RateLimitBudget) -> int:
    """How many calls ``budget`` would let go at once now: the decision of :meth:`RateLimitBudget.slot`, asked with
    1, 2, 3… calls in flight (the shared window read once, now)."""
    view = await budget.refresh_view()
    n = 0
    try:
        while n < 50 and budget._wait_s(time.monotonic(), view) == 0.0:
            budget._in_flight += 1
            n += 1
    finally:
        budget._in_flight -= n
    return n


async def test_two_budgets_on_one_database_share_the_window(engine: AsyncEngine) -> None:
    key = budget_key("token-of-both")
    a = RateLimitBudget("a", budget=10, window=60.0, backoff=0.05, key=key)
    b = RateLimitBudget("b", budget=10, window=60.0, backoff=0.05, key=key)
    other = RateLimitBudget("other", budget=10, window=60.0, key=budget_key("another token"))
    try:
        assert await a.share(engine) and await b.share(engine) and await other.share(engine)
        assert await _grants(a) == 5  # two replicas on this token: half the budget each
        assert await _grants(other) == 10  # another token's budget is apart
        async with a.slot():  # the decision as slot() makes it
            assert a.status()["in_flight"] == 1 and a.status()["replicas"] == 2

        # Three 429s received by b: one row each, seen by a, and a pauses with b.
        for _ in range(3):
            pause = b.record(429, 0.2)
            await b.publish(pause)
        view = await a.refresh_view()
        assert view is not None and view.hits == 3 and view.replicas == 2
        assert a._wait_s(time.monotonic(), view) > 0.0  # b's Retry-After pauses a too
        other_view = await other.refresh_view()
        assert other_view is not None and other_view.hits == 0

        # Once the pause is over, a may hold min(its share 5 - 0 own 429s, 10 - 3 shared 429s) = 5 calls, b only
        # 5 - 3 = 2 (its own 429s count against its share).
        end = time.monotonic() + 5
        while a._wait_s(time.monotonic(), view) != 0.0:  # poll with a deadline for the pause to pass
            assert time.monotonic() < end
            await asyncio.sleep(0.02)
        assert (await _grants(a), await _grants(b)) == (5, 2)

        # b leaves: a's share is the whole budget minus the window's 429s.
        await b.unshare()
        assert await _grants(a) == 7
    finally:
        for budget in (a, b, other):
            with contextlib.suppress(Exception):
                await budget.unshare()


async def test_store_counts_the_window_and_purges(engine: AsyncEngine) -> None:
    s1 = SharedBudgetStore(engine, "k", replica="r1", member_ttl_s=10)
    s2 = SharedBudgetStore(engine, "k", replica="r2", member_ttl_s=10)
    await s1.heartbeat(now=1000.0)
    await s2.heartbeat(now=995.0)
    await s1.add_429(900.0, 905.0)  # outside a 60 s window at 1000
    await s1.add_429(970.0, 972.0)
    await s2.add_429(990.0, 1030.0)
    v = await s1.view(60.0, now=1000.0)
    assert (v.hits, v.oldest_at, v.paused_until, v.replicas) == (2, 970.0, 1030.0, 2)
    assert (await s1.view(60.0, now=1008.0)).replicas == 1  # r2's heartbeat is older than 10 s
    assert await s1.purge(older_than=960.0) == 1
    await s2.leave()
    assert (await s1.view(60.0, now=1000.0)).replicas == 1


def test_the_budget_key_never_holds_the_token() -> None:
    key = budget_key("bd-secret-token")
    assert "secret" not in key and len(key) == 32 and key == budget_key("bd-secret-token") != budget_key("x")
    assert budget_key(None) == "no-token"
