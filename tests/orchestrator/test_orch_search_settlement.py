"""A killed attempt's search rows settled from the search service's records (issue 17), on SQLite and PostgreSQL,
with the orchestrator's store and a real search service (and its recorder) on the same database:

- a search that reached Tavily is completed at the credits recorded, one that never reached a search replica is
  dropped — but only once the replicas have recorded past the row: while a call is still running at a replica the
  rows wait, then settle exactly;
- a search replica that died with calls unrecorded leaves the row at its upper bound (its known price, flagged
  ``cost_estimated``);
- a call that ended in a deadline / cancel for a live attempt is marked by its write-back and settled the same way;
- without the search service's tables (it records nothing) the rows keep their upper bound, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import text

from services.orchestrator.app.inputs import rows_from_pairs
from services.orchestrator.store import Store
from services.orchestrator.store.repo import LedgerSettlement, ledger_call
from services.search.records import CallRecorder
from services.search.server import build
from services.search.store import CHAIN
from shared.config import Settings
from shared.db import create_engine
from shared.grpc_server import serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.integration

PAST = {"sqlite": "2000-01-01 00:00:00", "postgresql": "2000-01-01T00:00:00+00:00"}


async def sql(store: Store, stmt: str, **params: object) -> list[tuple]:
    async with store.engine.begin() as conn:
        res = await conn.execute(text(stmt), params)
        return [tuple(r) for r in res] if res.returns_rows else []


async def killed_run(store: Store, names: str) -> tuple[str, dict[str, str]]:
    """A run whose items were claimed by a worker that wrote each item's search row (2 credits, the known price)
    and then died: {company: search key}."""
    run = await store.create_run(kind="research", name="t", options={})
    await store.add_items(run.id, rows_from_pairs([(n, "") for n in names]))
    items = await store.claim_items(run.id, "doomed", len(names), lease_seconds=60)
    keys = {it.company: f"{run.id}:{it.id}:tavily:{it.attempt}" for it in items}
    await store.ledger_begin_many([
        ledger_call(run_id=run.id, item_id=it.id, provider="tavily", kind="search", key=keys[it.company],
                    unit_type="credits", attempt=it.attempt, estimate_units=2, estimate_usd=0.016)
        for it in items
    ])
    return run.id, keys


async def expire(store: Store, run_id: str) -> None:
    await sql(store, "UPDATE run_items SET lease_expires_at = :t WHERE run_id = :r", t=PAST[store.dialect], r=run_id)


async def rows(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    return {r["idempotency_key"]: r for r in await store.ledger_rows(run_id)}


async def settle_until(store: Store, run_id: str, within_s: float = 20.0) -> dict[str, dict[str, Any]]:
    """Reaper passes until no row of the run waits for the search records."""
    deadline = time.monotonic() + within_s
    while True:
        await store.reap(stale_seconds=60)
        current = await rows(store, run_id)
        if not any(r["unsettled_since"] is not None for r in current.values()):
            return current
        assert time.monotonic() < deadline, f"rows still unsettled: {current}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def search_on(settings: Settings, db_url: str) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    async with serving("search", build, settings.model_copy(update={"search_database_url": db_url})) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            yield search_pb2_grpc.SearchServiceStub(ch)


async def tavily_in_flight(sandbox_url: str) -> int:
    async with httpx.AsyncClient() as http:
        s = (await http.get(f"{sandbox_url}/_sandbox/stats")).json()
    return int(s["endpoints"].get("tavily.search", {}).get("in_flight", 0))


async def test_killed_attempts_searches_settle_exactly_once_the_replica_recorded_past_them(
    store: Store, db_url: str, settings: Settings, sandbox_url: str,
    sandbox_knobs: Callable[[dict[str, Any]], Any],
) -> None:
    await sandbox_knobs({"endpoints": {"tavily.search": {"latency_s": 1.5}}})
    run_id, keys = await killed_run(store, "ABC")
    tag = uuid.uuid4().hex[:6]
    async with search_on(settings, db_url) as stub:
        # A's search answered before the worker died (its write-back never came); B's was never sent (waiting for a
        # slot); C's is still running at the replica when the rows are abandoned.
        a = await stub.SearchCompany(search_pb2.SearchCompanyRequest(company=f"A {tag}", no_cache=True,
                                                                     idempotency_key=keys["A"]), timeout=30)
        c = asyncio.ensure_future(stub.SearchCompany(search_pb2.SearchCompanyRequest(
            company=f"C {tag}", no_cache=True, idempotency_key=keys["C"]), timeout=30))
        deadline = time.monotonic() + 10
        while not await tavily_in_flight(sandbox_url):
            assert time.monotonic() < deadline, "C's request never reached Tavily"
            await asyncio.sleep(0.02)
        await expire(store, run_id)
        rep = await store.reap(stale_seconds=60)
        assert (rep.expired, rep.abandoned_calls, rep.settled_calls) == (3, 3, 0)
        # C is running: the replica's watermark stays before it, so nothing can be settled yet.
        for _ in range(3):
            assert await store.settle_searches() == 0
        assert all(r["unsettled_since"] is not None and r["status"] == "abandoned"
                   for r in (await rows(store, run_id)).values())
        assert (await c).credits == 2
        settled = await settle_until(store, run_id)
    assert a.credits == 2
    assert set(settled) == {keys["A"], keys["C"]}  # B never reached a search replica: dropped
    for k in (keys["A"], keys["C"]):
        r = settled[k]
        assert (r["status"], r["units"], r["cost_estimated"]) == ("completed", 2, False)
        assert float(r["usd"]) == pytest.approx(0.016)


async def test_a_dead_replica_leaves_the_upper_bound(store: Store, db_url: str) -> None:
    engine = create_engine(db_url, pool_size=2)
    await CHAIN.ensure_schema(engine)
    live, dead = CallRecorder(engine, replica="live"), CallRecorder(engine, replica="dead")
    try:
        run_id, keys = await killed_run(store, "DE")
        for r in (live, dead):
            await r._register()
            r.start()
        dead.begin(keys["D"])  # taken by the dead replica, never finished
        assert await dead.flush()
        # SIGKILL: its flusher stops, nothing more is written. Time passes (rows shifted back by 30 s).
        assert dead._task is not None
        dead._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dead._task
        await sql(store, "UPDATE search_replicas SET started_at = started_at - 60, seen_at = seen_at - 30, "
                         "watermark = watermark - 30 WHERE replica = 'dead'")
        back = "created_at - interval '30 seconds'" if store.dialect == "postgresql" else \
            "datetime(created_at, '-30 seconds')"
        await sql(store, f"UPDATE cost_ledger SET created_at = {back} WHERE run_id = :r", r=run_id)
        await expire(store, run_id)
        settled = await settle_until(store, run_id)
    finally:
        await live.aclose()
        await engine.dispose()
    # Neither row can be known: the dead replica may have taken either call (both keep their price, flagged).
    assert {(r["status"], r["units"], r["cost_estimated"]) for r in settled.values()} == {("abandoned", 2, True)}
    assert set(settled) == {keys["D"], keys["E"]}


async def test_a_live_attempts_cancelled_search_is_settled_from_the_records(
    store: Store, db_url: str, settings: Settings,
) -> None:
    run_id, keys = await killed_run(store, "F")
    tag = uuid.uuid4().hex[:6]
    async with search_on(settings, db_url) as stub:
        await stub.SearchCompany(search_pb2.SearchCompanyRequest(company=f"F {tag}", no_cache=True,
                                                                 idempotency_key=keys["F"]), timeout=30)
        # The attempt saw a CANCELLED (or DEADLINE_EXCEEDED) for it: its write-back leaves the row pending, marked.
        await store.settle_ledger(LedgerSettlement(unknown=(keys["F"],)))
        assert (await rows(store, run_id))[keys["F"]]["unsettled_since"] is not None
        settled = await settle_until(store, run_id)
    assert (settled[keys["F"]]["status"], settled[keys["F"]]["units"]) == ("completed", 2)


async def test_without_the_search_records_the_rows_keep_their_upper_bound(store: Store) -> None:
    run_id, keys = await killed_run(store, "G")
    await expire(store, run_id)
    settled = await settle_until(store, run_id)
    r = settled[keys["G"]]
    assert (r["status"], r["units"], r["cost_estimated"]) == ("abandoned", 2, True)
