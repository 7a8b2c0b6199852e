"""Scheduled sweeps and ``vantage history`` (issue 14 item 5), on SQLite and PostgreSQL.

The acceptance test: two real :class:`Worker` objects (each with its own Store, as two processes would have) on one
database, a schedule due every 2 seconds, for 10 seconds: 5 or 6 sweeps are started, never two for one period, and
they are executed against the sandbox through the in-process services. The rest drives the :class:`Scheduler` and
the store directly (no burst after an outage, pause / resume, a lost candidate), and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.orchestrator.app.history import SweepData, build_history, load_sweeps
from services.orchestrator.app.jobs.evaluation import create_eval_run
from services.orchestrator.app.measurement import FIGURES, Answer
from services.orchestrator.app.schedules import Scheduler, due_period, format_every, next_due, parse_every
from services.orchestrator.app.worker import Worker
from services.orchestrator.clients import Clients
from services.orchestrator.store import open_store
from services.orchestrator.store.repo import utcnow
from services.orchestrator.store.schedule_repo import ScheduleStore, schedule_input
from shared.errors import InvalidArgument
from shared.grpc_client import Channels
from tests.evaluation.eval_testkit import rows, scalar, wait_for

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What are the best GPU cloud providers for training large language models?"


# --- durations and periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2), ("10m", 600), ("6h", 21600), ("7d", 604800),
                                               (" 2W ", 1209600), ("366d", 366 * 86400)])
def test_parse_every(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "-2s", "1.5h", "2 s", "2sec", "0s", "367d", "1y", "9999999999s"])
def test_parse_every_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_every(text, field="--every")
    assert e.value.message.startswith("--every: ") and "\n" not in e.value.message


def test_periods() -> None:
    anchor = utcnow()
    assert due_period(anchor - timedelta(seconds=1), anchor, 2) is None
    assert due_period(anchor, anchor, 2) == 0
    assert due_period(anchor + timedelta(seconds=1.999), anchor, 2) == 0
    assert due_period(anchor + timedelta(seconds=2), anchor, 2) == 1
    assert due_period(anchor + timedelta(days=70), anchor, 7 * 86400) == 10
    assert next_due(anchor + timedelta(seconds=3), anchor, 2) == anchor + timedelta(seconds=4)
    assert next_due(anchor - timedelta(seconds=3), anchor, 2) == anchor
    assert [format_every(s) for s in (2, 90, 600, 21600, 86400 * 7, 86400 * 3)] == ["2s", "90s", "10m", "6h",
                                                                                    "1w", "3d"]


# --- two workers, one schedule every 2 s, 10 s ----------------------------------------------------------------


async def test_two_workers_start_each_period_exactly_once(eval_env) -> None:  # type: ignore[no-untyped-def]
    settings, store, _orch = eval_env
    settings = settings.model_copy(update={"worker_poll_seconds": 0.5})
    sched = await ScheduleStore(store).add(
        name="gpu weekly", org_name="Together AI", org_domain="together.ai", questions=[QUESTION],
        models=["gpt-4.1"], locations=["US"], samples=1, every_seconds=2)
    stores = [await open_store(settings.database_url) for _ in range(2)]
    channels = [Channels(settings) for _ in range(2)]
    workers = [Worker(st, Clients(ch, settings), settings) for st, ch in zip(stores, channels, strict=True)]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(w.run()) for w in workers]
            try:
                # The schedule is due for 10 s from its anchor: then it is paused (no more starts).
                end = sched.anchor_at + timedelta(seconds=10)
                await wait_for(lambda: _after(end), 30, "10 s of the schedule")
                await ScheduleStore(store).set_paused(sched.id, True)
                # Every started sweep is executed by the workers (each like a --detach-ed run).
                await wait_for(lambda: _all_completed(store, sched.id), 120, "the sweeps to complete")
            finally:
                for w in workers:
                    w.request_stop()
        assert [t.result() for t in tasks] == [0, 0]
    finally:
        for st in stores:
            await st.close()
        for ch in channels:
            await ch.close()

    sweeps = await ScheduleStore(store).sweeps(sched.id)
    periods = [s.period for s in sweeps]
    assert periods == list(range(len(periods))) and len(periods) in (5, 6), periods
    started = [s for w in workers for s in w.scheduler.started]  # type: ignore[union-attr]
    assert sorted(s.period for s in started) == periods  # each period started by exactly one worker
    # Every period's run says which schedule and period it belongs to; no candidate run is left over.
    runs = await rows(store, "SELECT id, options, detached, status FROM runs WHERE input_path = :p",
                      p=schedule_input(sched.id))
    assert len(runs) == len(periods)
    by_run = {s.run_id: s.period for s in sweeps}
    for run_id, options, detached, status in runs:
        opts = json.loads(options) if isinstance(options, str) else options
        assert opts["schedule_id"] == sched.id and opts["schedule_period"] == by_run[run_id]
        assert bool(detached) and status == "completed"
    # History: one point per sweep, oldest first, with intervals and a verdict per figure between neighbours.
    doc = build_history("Together AI", await load_sweeps(store, "together ai", "together.ai"), resamples=200)
    assert [s["period"] for s in doc["sweeps"]] == periods
    assert all(s["schedule_id"] == sched.id and s["answers"] == 1 and s["samples"] == 1 for s in doc["sweeps"])
    assert len(doc["verdicts"]) == (len(periods) - 1) * len(FIGURES)
    assert {v["verdict"] for v in doc["verdicts"]} <= {"insufficient_data"}  # one question per sweep
    r = _cli(settings.database_url, "history", "--org", "Together AI", "--output", "json")
    assert r.returncode == 0, r.stderr
    assert [s["run_id"] for s in json.loads(r.stdout)["sweeps"]] == [s["run_id"] for s in doc["sweeps"]]
    r = _cli(settings.database_url, "history", "--org", "Together AI")
    assert r.returncode == 0 and f"{len(periods)} sweeps" in r.stdout, r.stderr


async def _after(t) -> bool:  # type: ignore[no-untyped-def]
    return utcnow() >= t


async def _all_completed(store, schedule_id: str) -> bool:  # type: ignore[no-untyped-def]
    n = await scalar(store, "SELECT count(*) FROM runs WHERE input_path = :p AND status <> 'completed'",
                     p=schedule_input(schedule_id))
    return n == 0


# --- the scheduler alone ----------------------------------------------------------------------------------------


async def test_no_burst_after_an_outage_and_pause_resume(eval_env) -> None:  # type: ignore[no-untyped-def]
    _settings, store, orch = eval_env
    repo = ScheduleStore(store)
    now = utcnow()
    # Down for 7 periods and a bit: one catch-up sweep (the latest period), never the 7 missed ones.
    sched = await repo.add(name="", org_name="Together AI", org_domain="together.ai", questions=[QUESTION, "Q2?"],
                           models=["gpt-4.1"], locations=["US", "GB"], samples=None, every_seconds=3600,
                           anchor_at=now - timedelta(hours=7, minutes=1))
    a, b = Scheduler(orch), Scheduler(orch)
    wait = await a.tick(now)
    assert [(s.period, s.schedule_id) for s in a.started] == [(7, sched.id)]
    assert math.isclose(wait, min(1.0, orch.settings.worker_poll_seconds))
    await b.tick(now + timedelta(minutes=30))  # same period: nothing
    assert b.started == [] and [s.period for s in await repo.sweeps(sched.id)] == [7]
    run = await store.get_run(a.started[0].run_id)
    assert run is not None and run.detached and run.options["schedule_period"] == 7
    assert run.name == "Together AI visibility #7" and run.options["locations"] == ["US", "GB"]
    assert await scalar(store, "SELECT count(*) FROM question_runs WHERE run_id = :r", r=run.id) >= 4

    # Paused through periods 8 and 9: nothing; resumed in period 10: period 10 only.
    assert await repo.set_paused(sched.id, True)
    await b.tick(now + timedelta(hours=1, minutes=1))
    await b.tick(now + timedelta(hours=2, minutes=1))
    assert b.started == []
    assert await repo.set_paused(sched.id, False)
    await b.tick(now + timedelta(hours=3, minutes=1))
    assert [s.period for s in b.started] == [10]
    listed = {r.id: r for r in await repo.list_schedules()}[sched.id]
    assert (listed.sweeps, listed.last_period, listed.last_run_id) == (2, 10, b.started[0].run_id)

    # A schedule not yet due starts nothing, and the next tick is planned at its anchor (within the 1 s cap).
    later = await repo.add(name="later", org_name="Together AI", org_domain="", questions=[QUESTION],
                           models=["gpt-4.1"], locations=[""], samples=1, every_seconds=60,
                           anchor_at=utcnow() + timedelta(seconds=0.3))
    c = Scheduler(orch)
    assert await c.tick() <= 0.3 and c.started == []
    assert await repo.remove(later.id) and not await repo.remove(later.id)

    # A schedule whose sweep is refused (here a location that is not ISO 3166-1): no run, the reason on the schedule.
    bad = await repo.add(name="bad", org_name="Together AI", org_domain="", questions=[QUESTION], models=["gpt-4.1"],
                         locations=["XX"], samples=1, every_seconds=60)
    await c.tick()
    row = {r.id: r for r in await repo.list_schedules()}[bad.id]
    assert c.started == [] and row.sweeps == 0 and "ISO 3166-1" in (row.last_error or ""), row.last_error


async def test_a_lost_claim_leaves_no_run_and_orphans_are_discarded(eval_env) -> None:  # type: ignore[no-untyped-def]
    _settings, store, orch = eval_env
    repo = ScheduleStore(store)
    sched = await repo.add(name="x", org_name="Together AI", org_domain="together.ai", questions=[QUESTION],
                           models=["gpt-4.1"], locations=["US"], samples=1, every_seconds=3600)

    async def candidate() -> str:
        run, _ = await create_eval_run(orch, org_name="Together AI", org_domain="together.ai", questions=[QUESTION],
                                       models=["gpt-4.1"], locations=["US"], samples=1,
                                       input_path=schedule_input(sched.id))
        return run.id

    first, second = await candidate(), await candidate()
    assert await repo.claim(sched.id, 0, first)
    assert not await repo.claim(sched.id, 0, second)  # the period is taken: nothing changed
    assert not (await store.get_run(second)).detached  # type: ignore[union-attr]
    assert await repo.discard_candidate(second) and await store.get_run(second) is None
    assert not await repo.discard_candidate(first)  # a claimed sweep is never discarded
    # A creator that died between creating and claiming: its candidate goes before its heartbeat looks abandoned.
    orphan = await candidate()
    assert await repo.discard_orphans(heartbeat_before=utcnow() - timedelta(seconds=30)) == 0
    assert await repo.discard_orphans(heartbeat_before=utcnow() + timedelta(seconds=1)) == 1
    assert await store.get_run(orphan) is None and await store.get_run(first) is not None
    assert not await repo.claim(sched.id, 1, orphan)  # a vanished candidate cannot be claimed …
    assert [s.period for s in await repo.sweeps(sched.id)] == [0]  # … and its claim was rolled back


# --- history (pure) ---------------------------------------------------------------------------------------------


def _answers(p_named: float, questions: int = 120, samples: int = 3) -> list[Answer]:
    out = []
    for q in range(questions):
        for s in range(samples):
            named = (q * samples + s) % 100 < p_named * 100
            out.append(Answer(question_id=f"q{q}", model="gpt-4.1", location="US", sample=s, mentioned=named,
                              rank=1 + (q % 3) if named else None, org_mentions=int(named), competitor_mentions=2))
    return out


def test_history_document() -> None:
    t0 = utcnow()
    sweeps = [
        SweepData("b", "later", t0 + timedelta(days=7), "s1", 1, 3, _answers(0.3)),
        SweepData("a", "first", t0, "s1", 0, 3, _answers(0.9)),
        SweepData("c", "by hand", t0 + timedelta(days=14), None, None, 3, _answers(0.3)),
    ]
    doc = build_history("Together AI", sweeps, resamples=300, seed=1)
    assert list(doc) == ["org", "sweeps", "verdicts"] and doc["org"] == "Together AI"
    assert [s["run_id"] for s in doc["sweeps"]] == ["a", "b", "c"]
    first = doc["sweeps"][0]
    assert set(first) == {"run_id", "name", "started_at", "schedule_id", "period", "samples", "answers", "figures"}
    assert first["started_at"] == t0.isoformat() and first["answers"] == 360 and first["period"] == 0
    assert set(first["figures"]) == set(FIGURES)
    vis = first["figures"]["visibility_rate"]
    assert set(vis) == {"value", "ci_low", "ci_high", "n"} and vis["ci_low"] <= vis["value"] <= vis["ci_high"]
    assert doc["sweeps"][2]["schedule_id"] is None and doc["sweeps"][2]["period"] is None
    verdicts = {(v["from_run"], v["to_run"], v["figure"]): v for v in doc["verdicts"]}
    assert len(verdicts) == 2 * len(FIGURES)
    down = verdicts[("a", "b", "visibility_rate")]
    assert set(down) == {"from_run", "to_run", "figure", "delta", "verdict"} and set(down["delta"]) == {
        "value", "ci_low", "ci_high"}
    assert down["verdict"] == "moved_down" and down["delta"]["value"] < 0
    assert verdicts[("b", "c", "visibility_rate")]["verdict"] == "within_noise"
    json.dumps(doc)  # the document is JSON as it is
    assert build_history("X", []) == {"org": "X", "sweeps": [], "verdicts": []}


# --- the CLI ------------------------------------------------------------------------------------------------------


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VANTAGE_DATABASE_URL": db_url, "VANTAGE_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "services.orchestrator.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _questions(tmp_path: Path) -> Path:
    qfile = tmp_path / "q.txt"
    qfile.write_text(f"# weekly\n{QUESTION}\nWhich platforms offer serverless inference?\n", encoding="utf-8")
    return qfile


def _add_args(qfile: Path) -> tuple[str, ...]:
    return ("schedule", "add", "--org", "Together AI", "--domain", "together.ai", "--questions", str(qfile),
            "--models", "gpt-4.1,chatgpt", "--locations", "US,GB")


def test_schedule_cli_refuses_bad_input(tmp_path: Path, sqlite_url: str) -> None:
    """Checked before the database is opened: one backend is enough."""
    base = _add_args(_questions(tmp_path))
    for bad, needle in ((("--every", "7x"), "--every: '7x' is not a duration"),
                        (("--every", "0s"), "between 1s and 366d"),
                        (("--every", "7d", "--samples", "0"), "--samples"),
                        (("--every", "7d", "--locations", "UK"), "ISO 3166-1")):
        r = _cli(sqlite_url, *base, *bad)
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_schedule_cli(tmp_path: Path, db_url: str) -> None:
    r = _cli(db_url, *_add_args(_questions(tmp_path)), "--every", "7d", "--samples", "2", "--name", "weekly",
             "--output", "json")
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    assert (added["every"], added["every_seconds"], added["questions"], added["samples"], added["status"]) == (
        "1w", 604800, 2, 2, "active")
    sid = added["id"]
    assert _cli(db_url, "schedule", "pause", sid[:8]).returncode == 0
    r = _cli(db_url, "schedule", "list")
    assert r.returncode == 0 and "paused" in r.stdout and "weekly" in r.stdout, r.stderr
    assert _cli(db_url, "schedule", "resume", sid).returncode == 0
    r = _cli(db_url, "schedule", "list", "--output", "json")
    assert r.returncode == 0, r.stderr
    (listed,) = json.loads(r.stdout)
    assert listed["id"] == sid and listed["models"] == ["gpt-4.1", "chatgpt"] and listed["locations"] == ["US", "GB"]
    assert listed["sweeps"] == 0 and listed["next_due_at"] and listed["status"] == "active"
    r = _cli(db_url, "schedule", "remove", "ffffffff")
    assert r.returncode == 2 and "not found" in r.stderr
    assert _cli(db_url, "schedule", "remove", sid).returncode == 0
    r = _cli(db_url, "history", "--org", "Together AI", "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"org": "Together AI", "sweeps": [], "verdicts": []}
