"""Runs shared by several executors, through the REAL search, inference and extraction services (in-process) against
the sandbox: a cancel issued in one process stops a run executing in another; a resume respects the leases of a live
holder (and with ``force`` fences it out); an in-process :class:`Worker` takes over queued and abandoned runs; the
OrchestratorService's WatchRun follows a run a worker executes, CancelRun stops it there, ResumeRun(detach) hands it
back to the worker, and WatchRun ends on an interrupted run nobody takes over; ``vantage worker`` refuses an
out-of-date schema with one line."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from services.orchestrator.api.server import build
from services.orchestrator.app.inputs import rows_from_pairs
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.app.worker import Worker
from services.orchestrator.clients import Clients
from services.orchestrator.store import Store, head_revision, open_store
from shared.config import Settings
from shared.grpc_client import Channels
from shared.grpc_server import serving
from vantage.orchestrator.v1 import orchestrator_pb2 as pb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def env(services: Settings, db_url: str, knobs) -> AsyncIterator[tuple[Settings, Channels]]:  # type: ignore[no-untyped-def]
    """Services, a fresh database, a slow LLM (0.3 s) and small budgets so that runs last a moment."""
    knobs({"endpoints": {"openai.chat_completions": {"latency_s": 0.3}}})
    settings = services.model_copy(update={
        "database_url": db_url, "inference_concurrency": 2, "search_concurrency": 2, "extraction_concurrency": 2,
        "max_items_in_flight": 4, "claim_batch_size": 2,
    })
    channels = Channels(settings)
    yield settings, channels
    await channels.close()


async def new_run(orch: Orchestrator, n: int) -> str:
    run, _ = await create_research_run(orch,
        rows_from_pairs([(f"Durable {i} Inc", f"durable{i}.example") for i in range(n)]), name="dur",
        options=ResearchOptions(model=orch.settings.research_model, no_cache=True),
    )
    return run.id


async def until(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``await predicate()`` every 50 ms until true; fail after ``seconds`` naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        assert loop.time() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        await asyncio.sleep(0.05)


async def scalar(store: Store, sql: str, **params: object) -> object:
    async with store.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


@contextlib.asynccontextmanager
async def process(settings: Settings, channels: Channels) -> AsyncIterator[Orchestrator]:
    """An executor with its own engine and owner id: another "process" on the same database."""
    store = await open_store(settings.database_url)
    try:
        yield Orchestrator(store, Clients(channels, settings), settings)
    finally:
        await store.close()


async def test_dur_cancel_reaches_a_run_executing_elsewhere_and_resume_completes(env) -> None:  # type: ignore[no-untyped-def]
    settings, channels = env
    async with process(settings, channels) as a, process(settings, channels) as b:
        run_id = await new_run(a, 16)
        task = asyncio.create_task(a.execute(run_id))
        await until(lambda: _done_at_least(a.store, run_id, 2), 60, "two items done")
        cancelled = await b.cancel(run_id)  # B is not executing it: the flag reaches A through the database
        assert cancelled.status == "cancelled"
        await asyncio.wait_for(task, 10)  # A stopped by itself within a keeper tick
        assert not a.is_active(run_id) and (await a.get(run_id)).status == "cancelled"
        totals = await b.store.run_totals(run_id)
        assert totals.counts["running"] == 0 and 0 < totals.unfinished < 16
        _, todo = await b.prepare_resume(run_id)
        assert todo == totals.unfinished
        resumed = await b.execute(run_id)
        assert resumed.run.status == "completed" and resumed.totals.counts["done"] == 16
        assert await scalar(b.store, "SELECT count(DISTINCT item_id) FROM classifications") == 16
        assert await scalar(b.store, "SELECT count(*) FROM classifications") == 16


async def _done_at_least(store: Store, run_id: str, n: int) -> bool:
    return (await store.run_totals(run_id)).counts["done"] >= n


async def test_dur_resume_waits_for_a_live_holder_and_force_fences_it(env) -> None:  # type: ignore[no-untyped-def]
    settings, channels = env
    async with process(settings, channels) as a, process(settings, channels) as b:
        run_id = await new_run(a, 12)
        task = asyncio.create_task(a.execute(run_id))
        await until(lambda: _done_at_least(a.store, run_id, 1), 60, "an item done")
        _, todo = await b.prepare_resume(run_id)  # A is alive: its leases are respected
        running = await b.store.page_items(run_id, statuses=("running",))
        assert running and all(i.attempts == 1 for i in running)
        assert todo > 0
        # B executes the rest and waits for A's items: the run is complete when it returns, nothing done twice.
        summary = await b.execute(run_id)
        assert summary.run.status == "completed" and summary.totals.counts["done"] == 12
        await asyncio.wait_for(task, 30)
        assert await scalar(b.store, "SELECT max(attempts) FROM run_items") == 1
        assert await scalar(b.store, "SELECT count(*) FROM classifications") == 12

        # --force takes over a live holder's items: its write-backs are fenced, its keeper cancels them.
        run2 = await new_run(a, 12)
        task = asyncio.create_task(a.execute(run2))
        await until(lambda: _held(b.store, run2, a.owner), 60, "A to hold items")
        _, todo = await b.prepare_resume(run2, force=True)
        summary = await b.execute(run2)
        await asyncio.wait_for(task, 30)
        assert summary.run.status == "completed" and summary.totals.counts["done"] == 12
        retaken = await scalar(b.store, "SELECT count(*) FROM run_items WHERE run_id = :r AND attempts > 1", r=run2)
        assert retaken and int(retaken) >= 1  # type: ignore[call-overload]
        assert await scalar(b.store, "SELECT count(*) - count(DISTINCT c.item_id) FROM classifications c "
                                     "JOIN run_items i ON i.id = c.item_id WHERE i.run_id = :r", r=run2) == 0
        # The taken-over attempts' calls (if they had started any) are counted as repeats.
        rep = await b.store.repeated_calls(run2)
        assert rep.total == await scalar(
            b.store, "SELECT count(*) FROM cost_ledger l JOIN run_items i ON i.id = l.item_id "
                     "WHERE l.run_id = :r AND l.attempt < i.attempts", r=run2)


async def _held(store: Store, run_id: str, owner: str) -> bool:
    return bool(await scalar(store, "SELECT count(*) FROM run_items WHERE run_id = :r AND lease_owner = :o",
                             r=run_id, o=owner))


async def test_dur_worker_takes_over_queued_and_abandoned_runs(env) -> None:  # type: ignore[no-untyped-def]
    settings, channels = env
    async with process(settings, channels) as cli:
        queued = await new_run(cli, 5)
        await cli.store.enqueue_run(queued)
        # A CLI that died mid-run: running, its items leased with expired leases, its heartbeat long gone.
        crashed = await new_run(cli, 5)
        await cli.store.join_run(crashed, "otherhost#1:4242:dead00", restart=True)
        await cli.store.claim_items(crashed, "otherhost#1:4242:dead00", 3, lease_seconds=-1)
        async with cli.store.engine.begin() as conn:
            await conn.execute(text("UPDATE runs SET heartbeat_at = NULL WHERE id = :r"), {"r": crashed})
        # A run its creator is still executing (its heartbeat kept fresh, not queued): not a worker's business.
        foreground = await new_run(cli, 3)
        async with cli.store.engine.begin() as conn:
            await conn.execute(text("UPDATE runs SET heartbeat_at = :t WHERE id = :r"),
                               {"t": "2999-01-01 00:00:00" if cli.store.dialect == "sqlite" else "2999-01-01T00:00+00",
                                "r": foreground})
        store = await open_store(settings.database_url)
        try:
            worker = Worker(store, Clients(channels, settings), settings, once=True)
            assert await asyncio.wait_for(worker.run(), 90) == 0
            for run_id in (queued, crashed):
                run = await store.get_run(run_id)
                assert run is not None and run.status == "completed", run_id
            assert (await store.get_run(foreground)).status == "pending"  # type: ignore[union-attr]
            assert worker.stats.items == 10 and worker.stats.finished == 2
            retaken = await scalar(store, "SELECT count(*) FROM run_items WHERE run_id = :r AND attempts = 2",
                                   r=crashed)
            assert retaken == 3
        finally:
            await store.close()


@pytest.fixture
async def server(env) -> AsyncIterator[tuple[pb_grpc.OrchestratorServiceStub, Settings, Channels]]:  # type: ignore[no-untyped-def]
    settings, channels = env
    async with serving("orchestrator", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        yield pb_grpc.OrchestratorServiceStub(ch), settings, channels


@contextlib.asynccontextmanager
async def worker_task(settings: Settings, channels: Channels) -> AsyncIterator[Worker]:
    store = await open_store(settings.database_url)
    w = Worker(store, Clients(channels, settings), settings)
    task = asyncio.create_task(w.run())
    try:
        yield w
    finally:
        w.request_stop()
        await asyncio.wait_for(task, 30)
        await store.close()


def _companies(n: int) -> pb.ResearchInput:
    return pb.ResearchInput(companies=[pb.Company(company=f"Watched {i} Ltd", domain=f"w{i}.example")
                                       for i in range(n)])


async def test_dur_service_runs_executed_by_a_worker(server) -> None:  # type: ignore[no-untyped-def]
    stub, settings, channels = server
    run = await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, research=_companies(8), detach=True,
                                                 no_cache=True), timeout=30)
    assert run.status == pb.Run.PENDING
    async with worker_task(settings, channels) as w:
        # WatchRun follows the run the worker executes (another executor: the server only polls) until it ends.
        events = [e async for e in stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id), timeout=90)]
        types = [pb.RunEvent.Type.Name(e.type) for e in events]
        assert types[-1] == "RUN_FINISHED" and types.count("ITEM_DONE") == 8
        assert events[-1].run.status == pb.Run.COMPLETED and events[-1].run.cost_usd > 0
        # Resumable from a sequence number.
        tail = [e async for e in stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id,
                                                                  after_sequence=events[-3].sequence), timeout=30)]
        assert [e.sequence for e in tail] == [e.sequence for e in events[-2:]]

        # CancelRun stops a run executing in the worker; ResumeRun(detach) gives it back to the worker.
        run2 = await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, research=_companies(24), detach=True,
                                                      no_cache=True), timeout=30)
        await until(lambda: _worker_has(w, run2.run_id), 90, "the worker to execute the run")
        got = await stub.CancelRun(pb.CancelRunRequest(run_id=run2.run_id), timeout=30)
        assert got.status == pb.Run.CANCELLED and got.counts.running == 0 and got.counts.pending > 0
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.CancelRun(pb.CancelRunRequest(run_id=run2.run_id), timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        resumed = await stub.ResumeRun(pb.ResumeRunRequest(run_id=run2.run_id, detach=True), timeout=30)
        assert resumed.status == pb.Run.PENDING
        events = [e async for e in stub.WatchRun(pb.WatchRunRequest(run_id=run2.run_id), timeout=90)]
        assert pb.RunEvent.Type.Name(events[-1].type) == "RUN_FINISHED"
        final = await stub.GetRun(pb.GetRunRequest(run_id=run2.run_id), timeout=10)
        assert final.status == pb.Run.COMPLETED and final.counts.done == 24
        listed = await stub.ListRuns(pb.ListRunsRequest(status=pb.Run.COMPLETED, page_size=1), timeout=10)
        assert len(listed.runs) == 1 and listed.next_page_token


async def _worker_has(w: Worker, run_id: str) -> bool:
    return w.orch.is_active(run_id) and bool(
        (await w.store.run_totals(run_id)).counts["done"]
    )


async def test_dur_watch_ends_on_an_interrupted_run_nobody_takes_over(server) -> None:  # type: ignore[no-untyped-def]
    stub, settings, channels = server
    store = await open_store(settings.database_url)
    try:
        orch = Orchestrator(store, Clients(channels, settings), settings)
        run_id = await new_run(orch, 3)
        await store.join_run(run_id, "otherhost#1:99:dead01", restart=True)  # a CLI that then died
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE runs SET heartbeat_at = :t WHERE id = :r"),
                               {"t": "2000-01-01 00:00:00" if store.dialect == "sqlite" else "2000-01-01T00:00+00",
                                "r": run_id})
        events = [e async for e in stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=30)]
        assert any(e.message.startswith("interrupted:") for e in events)  # the server's reaper said so
        assert (await store.get_run(run_id)).status == "running"  # type: ignore[union-attr]
    finally:
        await store.close()


def test_dur_worker_refuses_an_out_of_date_schema(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('0003_org_eval')")
    con.execute("CREATE TABLE runs (id TEXT)")
    con.commit()
    con.close()
    env = {"PATH": "/usr/bin:/bin", "VANTAGE_DATABASE_URL": f"sqlite:///{db}"}
    p = subprocess.run([sys.executable, "-m", "services.orchestrator.cli", "worker", "--once"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: database schema is at 0003_org_eval, code needs {head_revision()}: run `vantage db "
                     "upgrade`"], p.stderr
