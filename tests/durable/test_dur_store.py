"""Leases, fencing and the rescuer in the store, on SQLite and PostgreSQL: one Alembic head, heartbeats that renew
only known leases and report lost ones, the reaper (expired leases → pending, abandoned ledger rows, interrupted
runs), a back-dated lease reclaimed with the stale holder's write-back rejected, resume takeover that respects live
leases, find_work, cancel flags, repeated-call counts, the group commit, transient-error retries, the crash hook."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from services.orchestrator.app.inputs import rows_from_pairs
from services.orchestrator.store import ClassificationRecord, SearchRecord, Store, head_revision, open_store
from services.orchestrator.store.db import alembic_config, install_crash_hook
from services.orchestrator.store.repo import is_transient, make_owner, owner_is_dead_here

SEARCH = SearchRecord(20, 5, 15, 2, 0.016, ["https://a.example/1"], False)
CLS = ClassificationRecord("HOT", 90, "Frontier pre-training", "r", ["https://a.example/1"], "gpt-4.1", 1000, 50, 0.0024)


async def new_run(store: Store, names: str = "ABCDE", **kw) -> str:  # type: ignore[no-untyped-def]
    run = await store.create_run(kind="research", name="t", options={}, **kw)
    await store.add_items(run.id, rows_from_pairs([(n, "") for n in names]))
    return run.id


async def sql(store: Store, stmt: str, **params: object) -> list[tuple]:
    async with store.engine.begin() as conn:
        res = await conn.execute(text(stmt), params)
        return [tuple(r) for r in res] if res.returns_rows else []


def test_dur_the_migrations_have_one_head_after_0003() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    heads = scripts.get_heads()
    assert len(heads) == 1, f"several Alembic heads: {heads} — re-point down_revision so the chain is linear"
    chain = [s.revision for s in scripts.walk_revisions()]
    assert "0004_durable_runs" in chain and "0003_org_eval" in chain
    assert scripts.get_revision("0004_durable_runs").down_revision == "0003_org_eval"
    assert head_revision() == heads[0]


async def test_dur_heartbeat_renews_known_leases_and_reports_lost_ones(store: Store) -> None:
    run_id = await new_run(store)
    a, b, _c = await store.claim_items(run_id, "w1", 3, lease_seconds=30)
    # b was released (a forced resume) and reclaimed by w2; c was never known to w1's process (a lost claim answer).
    await sql(store, "UPDATE run_items SET status='pending', lease_owner=NULL WHERE id=:i", i=b.id)
    [b2] = await store.claim_items(run_id, "w2", 1, lease_seconds=30)
    assert (b2.id, b2.attempt) == (b.id, 2)
    hb = await store.heartbeat("w1", [run_id], {a.id: a.attempt, b.id: b.attempt}, lease_seconds=30)
    assert hb.held == {a.id} and hb.lost == {b.id}
    assert hb.runs[run_id].status == "pending" and not hb.runs[run_id].should_stop
    # Without item ids only the run heartbeat is renewed; a cancel request shows up.
    await store.request_cancel(run_id)
    hb = await store.heartbeat("w1", [run_id], None, lease_seconds=30)
    assert hb.held == set() and hb.runs[run_id].should_stop
    run = await store.get_run(run_id)
    assert run is not None and run.heartbeat_age() is not None and run.heartbeat_age() < 5


async def test_dur_back_dated_lease_is_reclaimed_and_the_stale_write_back_rejected(store: Store) -> None:
    run_id = await new_run(store, "AB")
    [held, other] = await store.claim_items(run_id, "stale", 2, lease_seconds=60)
    key = f"{run_id}:{held.id}:tavily:{held.attempt}"
    await store.ledger_begin(run_id=run_id, item_id=held.id, provider="tavily", kind="search", key=key,
                             unit_type="credits", attempt=held.attempt)
    # The holder stalls (GC pause, network partition): its lease is back-dated.
    await sql(store, "UPDATE run_items SET lease_expires_at = :t WHERE id = :i",
              t="2000-01-01 00:00:00" if store.dialect == "sqlite" else "2000-01-01T00:00:00+00:00", i=held.id)
    rep = await store.reap(stale_seconds=60)
    assert (rep.expired, rep.abandoned_calls) == (1, 1)
    [taken] = await store.claim_items(run_id, "fresh", 1, lease_seconds=60)
    assert (taken.id, taken.attempt) == (held.id, 2)
    # The stale holder wakes up: its lease is gone, its write-backs change nothing.
    hb = await store.heartbeat("stale", [run_id], {held.id: 1, other.id: 1}, lease_seconds=60)
    assert hb.lost == {held.id} and hb.held == {other.id}
    assert not await store.complete_item(held, SEARCH, CLS, truncated=False)
    assert not await store.fail_item(held, "late")
    # ...but the call it paid for is recorded (abandoned → completed) and counted as a repeat.
    await store.ledger_complete(key, units=2, usd=0.016)
    assert await store.complete_item(taken, SEARCH, CLS, truncated=False)
    items = {i.id: i for i in await store.page_items(run_id)}
    assert (items[held.id].status, items[held.id].attempts) == ("done", 2)
    rows = {r["idempotency_key"]: r for r in await store.ledger_rows(run_id)}
    assert rows[key]["status"] == "completed" and rows[key]["attempt"] == 1
    rep_calls = await store.repeated_calls(run_id)
    assert (rep_calls.completed, rep_calls.abandoned, rep_calls.total) == (1, 0, 1)
    events = [(e.type, e.item_id, e.message) for e in await store.events_after(run_id, 0)]
    assert ("PROGRESS", held.id, "lease of attempt 1 expired; back to pending") in events
    assert sum(1 for t, i, _ in events if t == "ITEM_DONE" and i == held.id) == 1


async def test_dur_reaper_flags_runs_nobody_executes(store: Store) -> None:
    run_id = await new_run(store, "A")
    assert await store.join_run(run_id, "w1", restart=True) == "pending"
    assert (await store.reap(stale_seconds=60)).interrupted == []
    await sql(store, "UPDATE runs SET heartbeat_at = :t WHERE id = :i",
              t="2000-01-01 00:00:00" if store.dialect == "sqlite" else "2000-01-01T00:00:00+00:00", i=run_id)
    assert (await store.reap(stale_seconds=60)).interrupted == [run_id]
    assert (await store.reap(stale_seconds=60)).interrupted == []  # once
    run = await store.get_run(run_id)
    assert run is not None and run.status == "running" and run.heartbeat_at is None and run.owner is None
    assert (await store.events_after(run_id, 0))[-1].message.startswith("interrupted:")


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


async def test_dur_resume_takeover_respects_live_leases(store: Store, dead_pid: int) -> None:
    run_id = await new_run(store, "ABCD")
    host = make_owner().rsplit(":", 2)[0]
    dead_owner = f"{host}:{dead_pid}:abcdef"
    [live] = await store.claim_items(run_id, make_owner(), 1, lease_seconds=60)  # this (live) process
    [dead] = await store.claim_items(run_id, dead_owner, 1, lease_seconds=60)  # a killed CLI of this host
    [remote] = await store.claim_items(run_id, "otherhost#1:123:abcdef", 1, lease_seconds=60)
    [expired] = await store.claim_items(run_id, "otherhost#1:124:abcdef", 1, lease_seconds=-1)
    assert owner_is_dead_here(dead_owner) and not owner_is_dead_here(make_owner())
    assert not owner_is_dead_here("otherhost#1:123:abcdef") and not owner_is_dead_here("w1")
    released, held = await store.takeover_items(run_id)
    assert (released, held) == (2, 2)  # the dead local owner and the expired lease; live leases kept
    status = {i.id: i.status for i in await store.page_items(run_id)}
    assert (status[live.id], status[remote.id], status[dead.id], status[expired.id]) == (
        "running", "running", "pending", "pending")
    assert await store.takeover_items(run_id, force=True) == (2, 0)


async def test_dur_find_work_queued_abandoned_and_idle_runs(store: Store) -> None:
    fresh = await new_run(store, "A")  # being ingested / executed by its creator: not for workers
    queued = await new_run(store, "A")
    await store.enqueue_run(queued)
    abandoned = await new_run(store, "A")
    await store.join_run(abandoned, "dead", restart=True)
    await sql(store, "UPDATE runs SET heartbeat_at = NULL WHERE id = :i", i=abandoned)
    cancelled = await new_run(store, "A")
    await store.enqueue_run(cancelled)
    await store.request_cancel(cancelled)
    assert await store.claim_items(cancelled, "w", 5, lease_seconds=60) == []  # no claims once cancel requested
    idle = await new_run(store, "A")
    [it] = await store.claim_items(idle, "w", 1, lease_seconds=60)
    assert await store.complete_item(it, SEARCH, CLS, truncated=False)
    await store.enqueue_run(idle)
    busy = await new_run(store, "A")  # queued, but its only item is leased by a live worker
    await store.enqueue_run(busy)
    await store.claim_items(busy, "w", 1, lease_seconds=60)
    found = await store.find_work(stale_seconds=30, limit=10)
    assert set(found) == {queued, abandoned, idle}
    assert fresh not in found and cancelled not in found and busy not in found
    assert await store.find_work(stale_seconds=30, limit=10, only=fresh) == [fresh]
    assert await store.find_work(stale_seconds=30, limit=10, exclude=[queued, idle]) == [abandoned]
    assert await store.find_work(stale_seconds=30, limit=1) == [found[0]]


async def test_dur_group_commit_batches_concurrent_completions(store: Store) -> None:
    names = [f"C{i}" for i in range(60)]
    run = await store.create_run(kind="research", name="t", options={})
    await store.add_items(run.id, rows_from_pairs([(n, "") for n in names]))
    items = await store.claim_items(run.id, "w", 60, lease_seconds=60)
    before = store.group_commit_stats
    statements = 0

    def count(*_a: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        results = await asyncio.gather(*(store.complete_item(i, SEARCH, CLS, truncated=(n % 2 == 0))
                                         for n, i in enumerate(items)))
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    batches, ops = (a - b for a, b in zip(store.group_commit_stats, before, strict=True))
    assert all(results) and ops == 60
    assert batches < 60 / 4, f"{batches} transactions for 60 completions"  # shared commits
    # Set-based: per batch two fenced UPDATEs (truncated or not), two multi-row INSERTs, one event append (UPDATE +
    # INSERT) — not five statements per item.
    assert statements <= batches * 8, f"{statements} statements in {batches} batches"
    assert sum(i.truncated for i in await store.page_items(run.id)) == 30
    # A stale attempt in a batch loses, the current one wins.
    extra = await new_run(store, "XY")
    x, y = await store.claim_items(extra, "w", 2, lease_seconds=60)
    await store.takeover_items(extra, force=True)
    x2, _y2 = await store.claim_items(extra, "w2", 2, lease_seconds=60)
    got = await asyncio.gather(store.complete_item(x, SEARCH, CLS, truncated=False),
                               store.complete_item(x2, SEARCH, CLS, truncated=False),
                               store.complete_item(y, SEARCH, CLS, truncated=False))
    assert got == [False, True, False]

    async def bad(conn):  # type: ignore[no-untyped-def]
        await conn.execute(text("SELECT * FROM no_such_table"))

    async def good(conn):  # type: ignore[no-untyped-def]
        return (await conn.execute(text("SELECT 41 + 1"))).scalar()

    # One failing operation of a batch fails alone.
    out = await asyncio.gather(store.write(bad), store.write(good), store.write(good), return_exceptions=True)
    assert isinstance(out[0], Exception) and out[1:] == [42, 42]
    assert (await store.run_totals(run.id)).counts["done"] == 60


async def test_dur_transient_postgres_errors_are_retried(any_pg: str) -> None:
    store = await open_store(any_pg)
    try:
        calls = 0

        async def flaky() -> str:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise OperationalError("COMMIT", {}, psycopg.OperationalError("server closed the connection"))
            return "ok"

        assert is_transient(OperationalError("x", {}, psycopg.OperationalError("gone")))
        assert not is_transient(ValueError("x"))
        assert await store._retry(flaky, "test") == "ok" and calls == 3
        # Every connection of the store killed under it: the next operations reconnect (pool_pre_ping / retry).
        run_id = await new_run(store, "AB")
        db = any_pg.rsplit("/", 1)[1]
        admin = any_pg.replace("postgresql+psycopg://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            n = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                             (db,)).fetchone()
        assert n is not None and n[0] >= 1
        items = await store.claim_items(run_id, "w", 2, lease_seconds=60)
        assert len(items) == 2 and all(await asyncio.gather(*(store.complete_item(i, SEARCH, CLS, truncated=False)
                                                               for i in items)))
    finally:
        await store.close()


def test_dur_crash_hook_is_inert_unless_set_and_freezes_inside_a_commit(tmp_path: Path, monkeypatch) -> None:
    from services.orchestrator.store.db import create_engine

    monkeypatch.delenv("VANTAGE_TEST_PAUSE_BEFORE_COMMIT", raising=False)
    assert install_crash_hook(create_engine(f"sqlite:///{tmp_path / 'x.db'}")) is False
    db = tmp_path / "hook.db"
    marker = tmp_path / "marker.json"
    script = textwrap.dedent(f"""
        import asyncio
        from services.orchestrator.app.inputs import rows_from_pairs
        from services.orchestrator.store import ClassificationRecord, SearchRecord, open_store
        S = SearchRecord(1, 1, 0, 1, 0.008, [], False)
        C = ClassificationRecord("HOT", 90, "c", "r", [], "m", 1, 1, 0.0)
        async def main():
            st = await open_store("sqlite:///{db}")
            run = await st.create_run(kind="research", name="t", options={{}})
            await st.add_items(run.id, rows_from_pairs([("A", ""), ("B", "")]))
            a, b = await st.claim_items(run.id, "w", 2, lease_seconds=60)
            print(run.id, flush=True)
            await st.complete_item(a, S, C, truncated=False)   # completion commit 1
            await st.complete_item(b, S, C, truncated=False)   # completion commit 2: frozen before COMMIT
            print("not reached", flush=True)
        asyncio.run(main())
    """)
    env = {**os.environ, "VANTAGE_TEST_PAUSE_BEFORE_COMMIT": f"2:{marker}"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the hook never fired"
            time.sleep(0.02)
        assert json.loads(marker.read_text()) == {"pid": proc.pid, "completions": 1}
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "not reached" not in out

    async def check() -> list[str]:
        st = await open_store(f"sqlite:///{db}")
        try:
            run_id = out.split()[0]
            return [i.status for i in await st.page_items(run_id)]
        finally:
            await st.close()

    assert asyncio.run(check()) == ["done", "running"]  # the frozen commit never happened
