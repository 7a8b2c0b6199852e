"""Records of keyed search calls (issue 17, shared/call_records.py): the decision that settles a ledger row of unknown
outcome, for each case it tells apart; and the search service on loopback against the sandbox, on SQLite and
PostgreSQL, recording a keyed call's credits (a cache hit at 0), letting a Tavily request already sent finish when
its caller goes away (billed once, recorded exactly), recording a call whose caller went away before it was sent as
``not_sent`` (never sent), refusing a malformed key, and marking the replica stopped on a clean stop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import select

from services.search.server import build
from shared import call_records as cr
from shared.call_records import Decision, Record, Replica, Verdict, decide
from shared.config import Settings
from shared.db import create_engine
from shared.grpc_server import serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

# --- the decision ------------------------------------------------------------------------------------------------

NOW = 1_000_000.0
BEGUN, DUE = NOW - 10, NOW - 5  # the row was written 10 s ago; its attempt was declared over 5 s ago


def rep(name: str = "s0", *, started: float = NOW - 100, seen: float = NOW - 0.5, watermark: float = NOW - 1,
        stopped: float | None = None) -> Replica:
    return Replica(name, started, seen, watermark, stopped)


def settle(replicas: list[Replica], records: list[Record] | None = None, *, now: float = NOW) -> Decision:
    return decide(begun_at=BEGUN, due_at=DUE, now=now, replicas=replicas, records=records or [],
                  estimate_units=2, estimate_usd=0.016)


def test_recorded_call_is_exact() -> None:
    d = settle([rep()], [Record(2, 0.016)])
    assert (d.verdict, d.units, d.usd) == (Verdict.EXACT, 2, 0.016)


def test_several_rpcs_of_one_key_add_up() -> None:
    # A transport retry that reached the other replica after the first had answered (both billed).
    d = settle([rep("s0"), rep("s1")], [Record(2, 0.016), Record(2, 0.016)])
    assert (d.verdict, d.units) == (Verdict.EXACT, 4)


def test_no_record_with_every_replica_past_the_row_is_never_sent() -> None:
    d = settle([rep("s0"), rep("s1")])
    assert (d.verdict, d.units, d.usd) == (Verdict.EXACT, 0, 0.0)


def test_cache_hit_or_not_sent_records_cost_nothing() -> None:
    assert settle([rep()], [Record(0, 0.0)]).units == 0


def test_a_live_replica_not_yet_past_the_row_makes_it_wait() -> None:
    # Its watermark is held back by a call still running (or it has not flushed since the row was abandoned).
    behind = rep("s1", watermark=DUE - 1)
    assert settle([rep("s0"), behind]).verdict is Verdict.WAIT
    # The slack for clocks: a watermark just past due_at is not enough.
    assert settle([rep(watermark=DUE + cr.CLOCK_SLACK_SECONDS / 2)]).verdict is Verdict.WAIT


def test_a_replica_that_died_before_recording_past_the_row_gives_the_upper_bound() -> None:
    # s1 was last seen after the row was written, its watermark before the row's due time.
    dead = rep("s1", seen=DUE, watermark=DUE - 1)
    # While it may still be alive (no heartbeat missed for long), the row waits...
    assert settle([rep("s0"), dead]).verdict is Verdict.WAIT
    # ...once it is dead, what was recorded elsewhere plus the row's known price for the call it may have taken.
    later = DUE + cr.DEAD_AFTER_SECONDS + 1
    d = settle([rep("s0", seen=later - 0.5, watermark=later - 1), dead], [Record(2, 0.016)], now=later)
    assert (d.verdict, d.units, d.usd) == (Verdict.UPPER_BOUND, 4, 0.032)
    assert settle([rep("s0", seen=later - 0.5, watermark=later - 1), dead], now=later).units == 2


def test_a_replica_that_died_after_recording_past_the_row_does_not_matter() -> None:
    dead_late = rep("s1", seen=DUE + cr.CLOCK_SLACK_SECONDS + 1, watermark=DUE + cr.CLOCK_SLACK_SECONDS + 1)
    later = DUE + cr.DEAD_AFTER_SECONDS + 10
    assert settle([rep("s0", seen=later, watermark=later), dead_late], now=later).verdict is Verdict.EXACT


def test_replicas_that_cannot_have_taken_the_call_are_ignored() -> None:
    gone_before = rep("old", seen=BEGUN - cr.CLOCK_SLACK_SECONDS - 1, watermark=BEGUN - 60)  # died before the row
    started_after = rep("new", started=DUE + cr.CLOCK_SLACK_SECONDS + 1, watermark=DUE - 100)  # started after due
    assert settle([rep("s0"), gone_before, started_after]).verdict is Verdict.EXACT


def test_a_cleanly_stopped_replica_recorded_everything() -> None:
    stopped = rep("s1", seen=NOW - 60, watermark=BEGUN, stopped=BEGUN + 1)
    assert settle([rep("s0"), stopped], [Record(2, 0.016)]).verdict is Verdict.EXACT


def test_no_replica_recording_at_all_gives_the_upper_bound() -> None:
    d = settle([])
    assert (d.verdict, d.units, d.usd) == (Verdict.UPPER_BOUND, 2, 0.016)


def test_a_request_cut_after_it_was_sent_gives_the_upper_bound() -> None:
    d = settle([rep()], [Record(0, 0.0, uncertain=1)])
    assert (d.verdict, d.units) == (Verdict.UPPER_BOUND, 2)


def test_waiting_ends_at_the_upper_bound() -> None:
    behind = rep(watermark=DUE - 1)
    late = NOW + cr.MAX_WAIT_SECONDS
    assert decide(begun_at=BEGUN, due_at=DUE, now=late, replicas=[rep(seen=late, watermark=DUE - 1)], records=[],
                  estimate_units=2, estimate_usd=0.016).verdict is Verdict.UPPER_BOUND
    assert settle([behind]).verdict is Verdict.WAIT


# --- the search service ------------------------------------------------------------------------------------------

@asynccontextmanager
async def search_stub(settings: Settings, servicers: list[Any] | None = None
                      ) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    """A stub on the search service served on loopback; its servicer appended to ``servicers`` (to poll its state)."""

    @asynccontextmanager
    async def builder(s: Settings) -> AsyncIterator[Any]:
        async with build(s) as mounts:
            if servicers is not None:
                servicers.append(mounts[0].servicer)
            yield mounts

    async with serving("search", builder, settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            yield search_pb2_grpc.SearchServiceStub(ch)


async def records_of(db_url: str, key: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            if not await cr.tables_exist(conn):
                return []
            rows = await conn.execute(select(cr.search_call_records).where(cr.search_call_records.c.idempotency_key == key))
            return [dict(r) for r in rows.mappings()]
    finally:
        await engine.dispose()


async def replicas_of(db_url: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(cr.search_replicas))).mappings()]
    finally:
        await engine.dispose()


async def poll(cond: Callable[[], Any], within_s: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = await cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.02)


async def tavily(sandbox_url: str) -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        s = (await http.get(f"{sandbox_url}/_sandbox/stats")).json()
    ep = s["endpoints"].get("tavily.search", {})
    return {"searches": int(s["billing"].get("tavily", {}).get("searches", 0)), "in_flight": int(ep.get("in_flight", 0)),
            "cancelled": int(ep.get("cancelled", 0))}


def key() -> str:
    return f"run-{uuid.uuid4().hex[:8]}:item:tavily:1"


@pytest.mark.integration
async def test_keyed_calls_are_recorded_with_their_credits(settings: Settings, db_url: str) -> None:
    s = settings.model_copy(update={"search_database_url": db_url})
    company = f"Recorded {uuid.uuid4().hex[:6]}"
    k1, k2 = key(), key()
    async with search_stub(s) as stub:
        t0 = time.time()
        fresh = await stub.SearchCompany(search_pb2.SearchCompanyRequest(company=company, idempotency_key=k1),
                                         timeout=30)
        hit = await stub.SearchCompany(search_pb2.SearchCompanyRequest(company=company, idempotency_key=k2),
                                       timeout=30)
        unkeyed = await stub.SearchCompany(search_pb2.SearchCompanyRequest(company=company), timeout=30)
        assert (fresh.credits, hit.credits, hit.cached, unkeyed.cached) == (2, 0, True, True)
        r1 = await poll(lambda: records_of(db_url, k1), what="k1's record")
        r2 = await poll(lambda: records_of(db_url, k2), what="k2's record")
        # The replica's watermark passes the calls once they are recorded (no call left running).
        reps = await poll(lambda: replicas_of(db_url), what="the replica row")

        async def past() -> bool:
            return any(r["watermark"] > t0 + 0.1 and r["stopped_at"] is None for r in await replicas_of(db_url))

        await poll(past, what="the watermark past the calls")
    assert [(r["state"], r["credits"], r["usd"], r["uncertain"]) for r in r1] == [("answered", 2, fresh.cost_usd, 0)]
    assert [(r["state"], r["credits"]) for r in r2] == [("answered", 0)]
    assert len(reps) == 1
    # A clean stop: every call it took is recorded.
    [after] = await replicas_of(db_url)
    assert after["stopped_at"] is not None and after["watermark"] >= t0


@pytest.mark.integration
async def test_a_sent_call_whose_caller_goes_away_finishes_and_is_recorded(
    settings: Settings, sqlite_url: str, sandbox_url: str, sandbox_knobs: Callable[[dict[str, Any]], Any],
) -> None:
    await sandbox_knobs({"endpoints": {"tavily.search": {"latency_s": 1.0}}})
    s = settings.model_copy(update={"search_database_url": sqlite_url})
    k = key()
    async with search_stub(s) as stub:
        before = await tavily(sandbox_url)
        call = stub.SearchCompany(search_pb2.SearchCompanyRequest(company=f"Gone {uuid.uuid4().hex[:6]}",
                                                                  no_cache=True, idempotency_key=k), timeout=60)
        task = asyncio.ensure_future(call)

        async def sent() -> bool:
            return (await tavily(sandbox_url))["in_flight"] > 0

        await poll(sent, what="the Tavily request in flight")
        call.cancel()  # the caller goes away (its worker killed): the RPC is cancelled
        with pytest.raises(asyncio.CancelledError):
            await task
        [rec] = await poll(lambda: records_of(sqlite_url, k), what="the record")
        after = await tavily(sandbox_url)
    # The request was not cut: Tavily billed it once and the record says so.
    assert (rec["state"], rec["credits"], rec["uncertain"]) == ("answered", 2, 0)
    assert after["searches"] - before["searches"] == 1 and after["cancelled"] == before["cancelled"]


@pytest.mark.integration
async def test_a_call_whose_caller_goes_away_before_it_is_sent_is_never_sent(
    settings: Settings, sqlite_url: str, sandbox_url: str, sandbox_knobs: Callable[[dict[str, Any]], Any],
) -> None:
    await sandbox_knobs({"endpoints": {"tavily.search": {"latency_s": 1.0}}})
    # One Tavily slot: the second call waits for it behind the first.
    s = settings.model_copy(update={"search_database_url": sqlite_url, "tavily_concurrency": 1, "provider_fair_share": False})
    k_first, k_waiting = key(), key()
    servicers: list[Any] = []
    async with search_stub(s, servicers) as stub:
        before = await tavily(sandbox_url)
        first = asyncio.ensure_future(stub.SearchCompany(search_pb2.SearchCompanyRequest(
            company=f"First {uuid.uuid4().hex[:6]}", no_cache=True, idempotency_key=k_first), timeout=60))

        async def sent() -> bool:
            return (await tavily(sandbox_url))["in_flight"] > 0

        await poll(sent, what="the first request in flight")
        waiting = stub.SearchCompany(search_pb2.SearchCompanyRequest(
            company=f"Waiting {uuid.uuid4().hex[:6]}", no_cache=True, idempotency_key=k_waiting), timeout=60)
        waiting_task = asyncio.ensure_future(waiting)

        async def both_running() -> bool:
            return bool(servicers[0].recorder.running == 2)

        await poll(both_running, what="the second call taken, waiting for the slot")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting_task
        [rec] = await poll(lambda: records_of(sqlite_url, k_waiting), what="the waiting call's record")
        assert (await first).credits == 2
        after = await tavily(sandbox_url)
    assert (rec["state"], rec["credits"], rec["uncertain"]) == ("not_sent", 0, 0)
    assert after["searches"] - before["searches"] == 1  # only the first reached Tavily


@pytest.mark.integration
async def test_a_malformed_key_is_refused(settings: Settings) -> None:
    async with search_stub(settings) as stub:
        for bad in ("x" * 256, "has space", "tab\tkey"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Search(search_pb2.SearchRequest(query="GPU clouds", idempotency_key=bad), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "idempotency_key" in (info.value.details() or "")


@pytest.mark.integration
async def test_without_a_database_url_nothing_is_recorded(settings: Settings, sqlite_url: str) -> None:
    s = settings.model_copy(update={"search_database_url": ""})
    k = key()
    async with search_stub(s) as stub:
        resp = await stub.Search(search_pb2.SearchRequest(query=f"GPU clouds {uuid.uuid4().hex[:6]}",
                                                          idempotency_key=k), timeout=30)
    assert resp.credits >= 1
    assert await records_of(sqlite_url, k) == []
