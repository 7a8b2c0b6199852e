"""The shared Bright Data trigger-intent table (services/inference/trigger_intents.py) on a real SQLite file, seen
by two stores as two replicas see it: a snapshot held by one replica's intent is visible to the other, a snapshot
is claimed by one intent only, and the in-memory fallback keeps the same rules within one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from services.inference.trigger_intents import TriggerIntents, prompts_sha256

DATASET = "gd_m7aof0k82r803d5bjm"


async def test_two_replicas_see_each_others_snapshots_and_claim_exclusively(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'intents.db'}"
    ea, eb = create_async_engine(url), create_async_engine(url)
    try:
        a = await TriggerIntents.open(ea)
        b = await TriggerIntents.open(eb)
        assert a.shared and b.shared
        ia = await a.record(DATASET, ["p1", "p2"], 1000.0)
        ib = await b.record(DATASET, ["p1", "p2"], 1000.5)  # same prompts: either snapshot would do, not both
        await a.resolve(ia, "triggered", "s_aaa")
        assert await b.held(["s_aaa", "s_bbb"]) == {"s_aaa"}
        assert await b.claim(ib, "s_aaa") is False  # held by replica a's intent
        assert await b.claim(ib, "s_bbb") is True
        assert await a.held(["s_bbb"]) == {"s_bbb"}
        with pytest.raises(ValueError):
            await a.resolve(ia, "done")
    finally:
        await ea.dispose()
        await eb.dispose()


async def test_in_memory_store_has_the_same_rules():
    m = await TriggerIntents.open(None)
    assert not m.shared
    i1 = await m.record(DATASET, ["p"], 1.0)
    i2 = await m.record(DATASET, ["p"], 2.0)
    assert await m.claim(i1, "s_x") and not await m.claim(i2, "s_x")
    assert await m.held(["s_x", "s_y"]) == {"s_x"}
    assert await m.purge(now=10 * 86_400.0) == 2


def test_prompts_hash_is_order_sensitive_and_stable():
    assert prompts_sha256(["a", "b"]) == prompts_sha256(["a", "b"]) != prompts_sha256(["b", "a"])
    assert len(prompts_sha256([])) == 64
