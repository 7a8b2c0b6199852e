"""Multi-replica run with kills (issue 17 item 4, small size): 2 search, 2 inference and 1 extraction replica as
processes, 2 ``vantage worker`` processes on one PostgreSQL, every client dialling ``ipv4:`` targets (round_robin).
A research run is queued; at a quarter of it an evaluation (chatgpt via Bright Data) is queued on the same workers;
once a third of the research is done *and* one of the evaluation's snapshots is in flight (a ``provider_batches``
row still ``submitted``, not every question answered), one inference replica and one worker are SIGKILLed, then
restarted. Checked: the research completes with every company classified exactly once; the evaluation completes
with every question answered exactly once (one answered row and one Bright Data ledger row per question), 0
duplicate snapshots (the snapshots the sandbox was asked to trigger = the evaluation's recorded batches = the
snapshots the answers came from) and the ledger's Bright Data records = the records the sandbox billed; both
replicas of each replicated service served ≥ 30 % of its calls before the kill (each replica's own Prometheus
counters); the sandbox saw one search and one LLM call per company plus at most the calls in flight at the kills.

The ledger's Tavily credits equal the sandbox's billing exactly: a search row the SIGKILLed worker left without an
outcome (its call answered, still running, waiting for a slot, or never made) is settled by the reaper from the
search replicas' records of keyed calls (shared/call_records.py) — no search replica is killed, so every such row is
known: completed at the credits recorded, or dropped when the call never reached Tavily; none is left at an
estimate.

Knobs: ``VANTAGE_SCALE_COMPANIES`` (default 120; ``make chaos`` runs 1,000), ``VANTAGE_SCALE_QUESTIONS`` (default
40, 400 from 1,000 companies: issue 17 item 4), ``VANTAGE_SCALE_SNAPSHOT_SECONDS`` (the sandbox's trigger-to-ready
time per snapshot, default 3 s, so the evaluation is still in flight at the kill)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from shared.procs import Child, start_child, stop_child

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("VANTAGE_SCALE_COMPANIES", "120"))
Q = int(os.environ.get("VANTAGE_SCALE_QUESTIONS", "400" if N >= 1000 else "40"))
SNAPSHOT_S = os.environ.get("VANTAGE_SCALE_SNAPSHOT_SECONDS", "3")
CHATGPT_DATASET = "gd_m7aof0k82r803d5bjm"
LATENCIES = {"tavily.search": {"latency_s": 0.02}, "openai.chat_completions": {"latency_s": 0.1, "latency_cv": 0.5}}
OFFSET = {"search": 1, "inference": 2, "extraction": 3}
IN_FLIGHT = 16
#: Deadline (s) for the runs to finish, and the test's own timeout (the project's 300 s is for the small size).
RUN_TIMEOUT_S = 240 if N <= 200 else 3000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not within {timeout:.0f} s: {what}")


def handled(metrics_port: int, service: str) -> int:
    """RPCs of ``service`` (not Health) this replica completed, from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and f'grpc_service="{service}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class Replica:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.env, self.log_dir = name, env, log_dir
        self.metrics_base = free_port() - OFFSET[name]
        self.port = 0
        self.child: Child | None = None

    def start(self) -> None:
        env = {**self.env, "VANTAGE_METRICS_PORT": str(self.metrics_base)}
        self.child = start_child(self.name, port=self.port, env=env, log_dir=self.log_dir)
        self.port = self.child.port

    @property
    def metrics_port(self) -> int:
        return self.metrics_base + OFFSET[self.name]

    def kill(self) -> None:
        assert self.child is not None
        os.kill(self.child.proc.pid, signal.SIGKILL)
        self.child.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.child is not None and self.child.alive():
            stop_child(self.child, grace=3)


@pytest.mark.timeout(RUN_TIMEOUT_S + 240)
def test_replicas_and_workers_killed_mid_run_lose_and_repeat_nothing(pg_url: str, tmp_path: Path) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    sandbox = start_child("sandbox", env={**base_env, "VANTAGE_LOG_LEVEL": "WARNING",
                                          "VANTAGE_SANDBOX_ENDPOINTS": json.dumps(LATENCIES),
                                          "VANTAGE_SANDBOX_BRIGHTDATA_DURATION_S": SNAPSHOT_S}, log_dir=tmp_path)
    replicas: list[Replica] = []
    workers: list[subprocess.Popen[bytes]] = []
    try:
        svc_env = {**base_env, "VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_SANDBOX_URL": f"http://{sandbox.address}",
                   "VANTAGE_DATABASE_URL": pg_url, "VANTAGE_GRACE_SECONDS": "1"}
        # The search replicas record their keyed calls in the orchestrator's database (the reaper reads them).
        search_env = {**svc_env, "VANTAGE_SEARCH_DATABASE_URL": pg_url}
        search = [Replica("search", search_env, tmp_path / "s0"), Replica("search", search_env, tmp_path / "s1")]
        inference = [Replica("inference", svc_env, tmp_path / "i0"), Replica("inference", svc_env, tmp_path / "i1")]
        replicas += [*search, *inference]
        for r in replicas:
            r.start()
        inference_target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in inference)
        search_target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in search)
        extraction = Replica("extraction", {**svc_env, "VANTAGE_INFERENCE_ADDR": inference_target}, tmp_path / "e0")
        extraction.start()
        replicas.append(extraction)

        env = {**base_env, "VANTAGE_DATABASE_URL": pg_url, "VANTAGE_SANDBOX_URL": f"http://{sandbox.address}",
               "VANTAGE_SEARCH_ADDR": search_target, "VANTAGE_INFERENCE_ADDR": inference_target,
               "VANTAGE_EXTRACTION_ADDR": f"127.0.0.1:{extraction.port}",
               "VANTAGE_SEARCH_CONCURRENCY": "8", "VANTAGE_INFERENCE_CONCURRENCY": "8",
               "VANTAGE_EXTRACTION_CONCURRENCY": "8", "VANTAGE_MAX_ITEMS_IN_FLIGHT": str(IN_FLIGHT),
               "VANTAGE_CLAIM_BATCH_SIZE": "8", "VANTAGE_LEASE_SECONDS": "4", "VANTAGE_CONTROL_POLL_SECONDS": "0.5",
               "VANTAGE_WORKER_POLL_SECONDS": "0.5", "VANTAGE_GRACE_SECONDS": "2",
               "VANTAGE_RETRY_INITIAL_SECONDS": "0.01", "VANTAGE_RETRY_MAX_SECONDS": "0.05",
               "VANTAGE_LOG_LEVEL": "WARNING"}
        csv = tmp_path / "companies.csv"
        csv.write_text("company,domain\n" + "".join(f"Scaleco {i:04d} Labs,scaleco{i:04d}.example\n" for i in range(N)))
        cli = [sys.executable, "-m", "services.orchestrator.cli"]
        q = subprocess.run([*cli, "research", "--detach", "--no-cache", "--quiet", str(csv)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert q.returncode == 0, q.stderr
        run_id = q.stdout.strip().splitlines()[-1]

        def worker(i: int) -> subprocess.Popen[bytes]:
            with open(tmp_path / f"worker-{i}.log", "wb") as fh:
                # Not --once: a worker that finds the queue empty before the evaluation is queued must stay.
                return subprocess.Popen([*cli, "worker"], cwd=tmp_path, env=env, stdout=fh,
                                        stderr=subprocess.STDOUT, start_new_session=True)

        workers += [worker(0), worker(1)]
        sync = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)

        def done() -> int:
            with psycopg.connect(sync, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM run_items WHERE run_id = %s AND status = 'done'",
                                   (run_id,)).fetchone()
            return int(row[0]) if row else 0

        def in_flight() -> tuple[int, int]:
            """(questions answered, snapshots still ``submitted``) of the evaluation."""
            with psycopg.connect(sync, autocommit=True) as conn:
                answered = conn.execute("SELECT count(*) FROM question_runs WHERE run_id = %s AND status = "
                                        "'answered'", (eval_id,)).fetchone()
                pending = conn.execute("SELECT count(*) FROM provider_batches WHERE run_id = %s AND status = "
                                       "'submitted'", (eval_id,)).fetchone()
            return (int(answered[0]) if answered else 0), (int(pending[0]) if pending else 0)

        wait_for(lambda: done() >= N // 4, RUN_TIMEOUT_S, f"a quarter of {N} items done")
        questions = tmp_path / "questions.txt"
        questions.write_text("".join(f"best GPU cloud for a {i}-person research lab?\n" for i in range(Q)))
        e = subprocess.run([*cli, "evaluate", "--samples", "1", "--detach", "--org", "Together AI", "--domain", "together.ai",
                            "--questions", str(questions), "--models", "chatgpt"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert e.returncode == 0, e.stderr
        eval_id = e.stdout.strip().splitlines()[-1]
        # The kill lands while the evaluation's snapshots are in flight (triggered, not yet downloaded and stored).
        def kill_point() -> bool:
            if done() < N // 3:
                return False
            answered_now, submitted = in_flight()
            return answered_now < Q and submitted > 0

        wait_for(kill_point, RUN_TIMEOUT_S, f"a third of {N} items done with evaluation snapshots in flight")
        at_kill = in_flight()
        before = {name: [handled(r.metrics_port, svc) for r in group] for name, svc, group in (
            ("search", "vantage.search.v1.SearchService", search),
            ("inference", "vantage.inference.v1.InferenceService", inference))}
        inference[1].kill()
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=30)
        inference[1].start()  # same port: the channels reconnect to it
        workers.append(worker(2))

        def finished() -> bool:
            with psycopg.connect(sync, autocommit=True) as conn:
                rows = conn.execute("SELECT count(*) FROM runs WHERE id IN (%s, %s) AND status IN "
                                    "('completed', 'failed', 'cancelled')", (run_id, eval_id)).fetchone()
            return bool(rows and rows[0] == 2)

        wait_for(finished, RUN_TIMEOUT_S, "the research and the evaluation finished")

        def settled() -> bool:
            with psycopg.connect(sync, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM cost_ledger WHERE run_id = %s AND unsettled_since IS NOT "
                                   "NULL", (run_id,)).fetchone()
            return bool(row and row[0] == 0)

        # The killed worker's search rows are settled by the reapers (of the live workers) from the search records.
        wait_for(settled, 120, "the killed worker's search rows settled from the search records")
        for w in workers[1:]:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=60) for w in workers[1:]]
        # 0 = stopped by its handler; -SIGTERM = the signal came before the worker had installed it (still starting)
        assert all(c in (0, -signal.SIGTERM) for c in codes), codes

        with psycopg.connect(sync, autocommit=True) as conn:
            status = conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()
            eval_status = conn.execute("SELECT status FROM runs WHERE id = %s", (eval_id,)).fetchone()
            answered, snapshots = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'answered'), count(DISTINCT snapshot_id) FROM question_runs "
                "WHERE run_id = %s", (eval_id,)).fetchone() or (0, 0)
            led = conn.execute(
                "SELECT coalesce(sum(units), 0), coalesce(sum(units) FILTER (WHERE status = 'completed'), 0), "
                "count(*) FILTER (WHERE status <> 'completed'), "
                "count(*) FILTER (WHERE status <> 'completed' AND NOT cost_estimated) "
                "FROM cost_ledger WHERE run_id = %s AND kind = 'search'", (run_id,)).fetchone() or (0, 0, 0, 0)
            once = conn.execute("SELECT count(*), count(DISTINCT question_id) FROM question_runs WHERE run_id = %s",
                                (eval_id,)).fetchone()
            batches = conn.execute("SELECT count(*) FROM provider_batches WHERE run_id = %s", (eval_id,)).fetchone()
            bd_led = conn.execute("SELECT count(*), count(DISTINCT item_id), coalesce(sum(units), 0) FROM cost_ledger "
                                  "WHERE run_id = %s AND kind = 'scrape' AND status = 'completed'",
                                  (eval_id,)).fetchone() or (0, 0, 0)
            cls = conn.execute("SELECT count(*), count(DISTINCT c.item_id) FROM classifications c JOIN run_items i "
                               "ON i.id = c.item_id WHERE i.run_id = %s", (run_id,)).fetchone()
            # The search replicas' records of the run's keyed calls, by outcome, and the repeated attempts' rows.
            records = dict(conn.execute("SELECT state, count(*) FROM search_call_records WHERE idempotency_key LIKE "
                                        "%s GROUP BY state", (run_id + ":%",)).fetchall())
            retaken = conn.execute("SELECT count(*) FROM run_items WHERE run_id = %s AND attempts > 1",
                                   (run_id,)).fetchone()
            repeats = conn.execute(
                "SELECT count(*), coalesce(sum(l.units), 0) FROM cost_ledger l JOIN run_items i ON i.id = l.item_id "
                "WHERE l.run_id = %s AND l.kind = 'search' AND l.attempt < i.attempts", (run_id,)).fetchone()
        sandbox_stats = httpx.get(f"http://{sandbox.address}/_sandbox/stats", timeout=10).json()
        calls = {k: int(v["calls"]) for k, v in sandbox_stats["endpoints"].items()}
        billed = int(sandbox_stats["billing"].get("tavily", {}).get("credits", 0))
        unread = int(sandbox_stats.get("billing_unread", {}).get("tavily", {}).get("credits", 0))
        cut = int(sandbox_stats["endpoints"].get("tavily.search", {}).get("cancelled", 0))
        ledger_credits, ledger_completed, unknown_rows, unpriced_rows = (int(x) for x in led)
        triggers = int(sandbox_stats["brightdata"]["triggers"].get(CHATGPT_DATASET, 0))
        bd_billed = int(sandbox_stats["billing"].get("brightdata", {}).get("records", 0))
        shares = {k: [round(c / max(1, sum(v)), 2) for c in v] for k, v in before.items()}
        print(f"\nscale chaos ({N} companies; 2 search, 2 inference, 1 extraction, 2 workers; 1 inference replica and "
              f"1 worker SIGKILLed at {N // 3}+ done): status {status}; classifications {cls}; calls before the kill "
              f"{before} (shares {shares}); sandbox calls search {calls.get('tavily.search')}, "
              f"LLM {calls.get('openai.chat_completions')}; Tavily credits: ledger {ledger_credits}, sandbox billed "
              f"{billed} ({unread} unread, {cut} searches cut before billing); ledger rows of unknown outcome "
              f"{unknown_rows} ({unpriced_rows} unpriced), completed credits {ledger_completed}; search records {records}; "
              f"items claimed again {retaken[0] if retaken else 0}, search rows of their superseded attempts kept "
              f"{repeats[0] if repeats else 0} ({repeats[1] if repeats else 0} credits; the others never reached "
              f"Tavily: dropped); evaluation ({Q} questions, chatgpt via Bright Data, {SNAPSHOT_S} s per snapshot): at the "
              f"kill {at_kill[0]} answered, {at_kill[1]} snapshots in flight; {eval_status}, {answered} answered "
              f"({once[0]} rows, {once[1]} questions) from {snapshots} snapshots, {batches[0] if batches else 0} "
              f"batches recorded, {triggers} snapshots paid; Bright Data records: ledger {bd_led[2]} "
              f"({bd_led[0]} rows, {bd_led[1]} questions), sandbox billed {bd_billed}")
        assert status == ("completed",)
        assert cls == (N, N)  # every company classified exactly once
        assert eval_status == ("completed",) and answered == Q
        assert at_kill[0] < Q and at_kill[1] > 0  # the kill landed inside the evaluation
        assert once == (Q, Q)  # one row per question, each answered (above): exactly once
        # 0 duplicate snapshots: every paid snapshot is a recorded batch, and the one its questions' answers came from
        assert triggers == snapshots == (batches[0] if batches else 0)
        assert tuple(bd_led) == (Q, Q, Q) and bd_billed == Q  # one record billed per question, ledger = sandbox
        for name, counts in before.items():
            assert all(c >= 0.3 * sum(counts) for c in counts), (name, counts)
        for ep in ("tavily.search", "openai.chat_completions"):
            assert N <= calls.get(ep, 0) <= N + 2 * IN_FLIGHT, (ep, calls.get(ep))  # repeats ≤ in flight at the kills
        # Ledger = the sandbox's billing, exactly: every row completed at its billed credits (the killed worker's from
        # the search records), none left at an estimate, no search cut before Tavily billed it (a sent keyed call
        # finishes when its caller goes away).
        assert unknown_rows == 0 and unpriced_rows == 0 and cut == 0, (unknown_rows, unpriced_rows, cut)
        assert ledger_credits == ledger_completed == billed, (ledger_credits, ledger_completed, billed)
    finally:
        for w in workers:
            if w.poll() is None:
                os.kill(w.pid, signal.SIGKILL)
                w.wait(timeout=30)
        for r in replicas:
            r.stop()
        stop_child(sandbox, grace=3)
