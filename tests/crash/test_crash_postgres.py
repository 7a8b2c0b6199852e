"""Crash suite, part 3: PostgreSQL restarted under two running ``vantage worker`` processes — executing a research
run, and executing an evaluation (ORG_EVAL) run.

The workers run against a private PostgreSQL server (``pgcluster.PrivateCluster``: restarting the machine's shared
server would break every other test using it). Mid-run the server is restarted twice — ``pg_ctl restart -m fast``
(every session disconnected, open transactions rolled back) and ``-m immediate`` (a crash: recovery at start). The
workers must survive (the store retries transient errors with back-off; the pool re-connects with
``pool_pre_ping``) and finish the run: every item done once, nothing left running longer than a lease.

Without server binaries (or as root without a ``postgres`` user) the test falls back to terminating the workers'
connections on the shared server (``pg_terminate_backend``) and says so in its figures.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pgcluster
import psycopg
import pytest
from crash_kit import Db, Harness, log_tail, sync_url, wait_for

pytestmark = [pytest.mark.crash, pytest.mark.postgres]

N_ITEMS = 240


def _count(path: Path, event: str) -> int:
    return sum(1 for line in path.read_text(errors="replace").splitlines() if f'"{event}"' in line)


@pytest.fixture
def restartable_db(pg_url: str):  # type: ignore[no-untyped-def]
    """(SQLAlchemy URL, restart(mode) → seconds, description). A private server when possible."""
    reason = pgcluster.available()
    if reason is None:
        cluster = pgcluster.PrivateCluster()
        try:
            cluster.init()
            cluster.start()
            url = cluster.create_database(f"vantage_crash_{uuid.uuid4().hex[:8]}")
            yield url.replace("postgresql://", "postgresql+psycopg://", 1), cluster.restart, "private server restarted"
        finally:
            cluster.stop()
        return

    def terminate(_mode: str) -> float:
        t0 = time.monotonic()
        db = sync_url(pg_url).rsplit("/", 1)[1]
        with psycopg.connect(sync_url(pg_url).rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (db,))
        return time.monotonic() - t0

    yield pg_url, terminate, f"pg_terminate_backend on the shared server ({reason})"


def _execute_through_restarts(
    h: Harness, db: Db, restart: Callable[[str], float], run_id: str, n: int, what: str
) -> str:
    """Two ``vantage worker`` processes execute ``run_id`` (``n`` items); at 30 % and 60 % of the items done the server
    is restarted (``fast``, then ``immediate``). Waits for the run to complete and both workers to exit 0 on SIGTERM.
    Asserts that every item is done. Returns the figures: the outages (mode, items done before,
    seconds away), the wall time, the database retries and skipped heartbeats per worker, the items by status."""
    t0 = time.monotonic()
    workers = [h.start_worker(), h.start_worker()]

    def done() -> int:
        for w in workers:
            assert w.proc.poll() is None, f"worker {w.pid} died:\n{log_tail(w)}"
        try:
            return int(db.one("SELECT count(*) FROM run_items WHERE run_id = %s AND status = 'done'", run_id))  # type: ignore[call-overload]
        except psycopg.OperationalError:
            return 0  # the server is restarting

    outages = []
    for fraction, mode in ((0.3, "fast"), (0.6, "immediate")):
        wait_for(lambda f=fraction: done() >= n * f, 120, f"{fraction:.0%} of the {what}")
        before = done()
        outages.append((mode, before, restart(mode)))

    def completed() -> bool:
        done()
        try:
            return db.one("SELECT status FROM runs WHERE id = %s", run_id) == "completed"
        except psycopg.OperationalError:
            return False

    wait_for(completed, 180, "the run to complete", every=0.2)
    wall = time.monotonic() - t0
    codes = [h.terminate(w) for w in workers]
    assert codes == [0, 0], [log_tail(w) for w in workers]
    retries = [_count(w.log, "db_retry") for w in workers]
    failed_beats = [_count(w.log, "heartbeat_failed") for w in workers]
    counts = dict(db.rows("SELECT status, count(*) FROM run_items WHERE run_id = %s GROUP BY status", run_id))
    assert counts == {"done": n}, counts
    return (f"{json.dumps(outages)} (mode, items done before, seconds away); the workers stayed up and finished "
            f"{n} {what} in {wall:.1f} s; database retries per worker {retries}, skipped heartbeats {failed_beats}; "
            f"items {counts}")


def test_crash_postgres_restart_mid_run_workers_reconnect_and_finish(
    crash_stack, restartable_db, tmp_path: Path
) -> None:
    db_url, restart, how = restartable_db
    h = Harness(crash_stack, db_url, tmp_path)
    db = Db(db_url)
    h.sandbox_reset()
    run_id = h.research_detached(N_ITEMS)
    figures = _execute_through_restarts(h, db, restart, run_id, N_ITEMS, "items")

    cls = db.rows("SELECT count(*), count(DISTINCT c.item_id) FROM classifications c JOIN run_items i "
                  "ON i.id = c.item_id WHERE i.run_id = %s", run_id)[0]
    calls = h.sandbox_calls()
    print(f"\ncrash suite — PostgreSQL outage ({how}): {figures}; classifications {cls[0]} "
          f"({cls[1]} distinct); sandbox calls search {calls.get('tavily.search')}, LLM "
          f"{calls.get('openai.chat_completions')}")
    assert cls == (N_ITEMS, N_ITEMS)


#: Question runs of the evaluation case (one API model, one location: one item per question).
N_QUESTIONS = 160


def test_crash_postgres_restart_mid_evaluation_workers_reconnect_and_finish(
    crash_stack, restartable_db, tmp_path: Path
) -> None:
    """The same two restarts under an ORG_EVAL run (issue 12 item 2): an evaluation write — the question run's
    answer, its org evaluation, competitors and citations, one unit of work per item — survives a PostgreSQL restart
    exactly like a research write: the workers stay up, every item is done once, with one answered question run and
    one evaluation each."""
    db_url, restart, how = restartable_db
    h = Harness(crash_stack, db_url, tmp_path)
    db = Db(db_url)
    h.sandbox_reset()
    # The Responses API at the suite's LLM latency (crash_kit.SANDBOX_LATENCIES), so the restarts land mid-run.
    config = f"{h.sandbox}/_sandbox/config"
    had = "openai.responses" in httpx.get(config, timeout=10).json()["endpoints"]
    if not had:
        httpx.post(config, json={"endpoints": {"openai.responses": {"latency_s": 0.1, "latency_cv": 0.5}}},
                   timeout=10).raise_for_status()
    try:
        tag = uuid.uuid4().hex[:8]  # questions of their own: no answer of another test from the response cache
        questions = tmp_path / "questions.txt"
        questions.write_text("".join(f"best GPU cloud for a {i}-person lab ({tag})?\n" for i in range(N_QUESTIONS)))
        r = h.cli("evaluate", "--samples", "1", "--detach", "--no-cache", "--quiet", "--org", "Together AI", "--domain",
                  "together.ai", "--questions", str(questions), "--models", "gpt-4.1", "--locations", "US")
        assert r.returncode == 0, r.stderr
        run_id = r.stdout.strip().splitlines()[-1]
        figures = _execute_through_restarts(h, db, restart, run_id, N_QUESTIONS, "question runs")
    finally:
        if not had:
            httpx.post(config, json={"endpoints": {"openai.responses": None}}, timeout=10)

    answered = db.rows("SELECT count(*), count(DISTINCT item_id) FROM question_runs WHERE run_id = %s AND status = "
                       "'answered'", run_id)[0]
    evals = db.rows("SELECT count(*), count(DISTINCT item_id) FROM org_evals WHERE run_id = %s", run_id)[0]
    calls = h.sandbox_calls()
    print(f"\ncrash suite — PostgreSQL outage under an evaluation ({how}): {figures}; answered "
          f"{answered[0]} ({answered[1]} distinct), evaluations {evals[0]} ({evals[1]} distinct); sandbox calls "
          f"responses {calls.get('openai.responses')}")
    assert answered == (N_QUESTIONS, N_QUESTIONS)
    assert evals == (N_QUESTIONS, N_QUESTIONS)
