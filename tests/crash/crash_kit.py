"""Helpers of the crash suite: start ``vantage worker`` processes and CLI commands against the crash stack, SIGKILL
them, read the database with psycopg, count calls at the sandbox.

The workers get small budgets and a short lease so that a kill costs seconds, not minutes: search, inference and
extraction budgets 8 each, at most :data:`IN_FLIGHT` items in flight per worker, lease :data:`LEASE_S` seconds
(renewed every third), control tick 0.5 s, poll 0.5 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from shared.procs import Stack

ROOT = Path(__file__).resolve().parents[2]
#: Items a worker holds at most (admission bound): the in-flight budget of a kill is IN_FLIGHT × PAID_CALLS_PER_ITEM.
IN_FLIGHT = 16
#: Paid calls of one research item: one Tavily search, one LLM call.
PAID_CALLS_PER_ITEM = 2
#: Lease of a claimed item (s) in the crash suite.
LEASE_S = 4.0

SANDBOX_LATENCIES = {
    "tavily.search": {"latency_s": 0.02},
    "openai.chat_completions": {"latency_s": 0.1, "latency_cv": 0.5},
}
def sync_url(url: str) -> str:
    """A psycopg URL from the SQLAlchemy one the fixtures hand out."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class Db:
    """Synchronous, autocommit psycopg access to the test database."""

    url: str

    def rows(self, sql: str, *args: object) -> list[tuple]:
        with psycopg.connect(sync_url(self.url), autocommit=True) as conn:
            return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]

    def one(self, sql: str, *args: object) -> object:
        return self.rows(sql, *args)[0][0]


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log: Path
    hooked: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Harness:
    """Start workers and CLI commands against the crash stack and one database."""

    stack: Stack
    db_url: str
    dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    _n: int = 0

    @property
    def sandbox(self) -> str:
        return self.stack.env()["VANTAGE_SANDBOX_URL"]

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
        return {
            **base, **self.stack.env(),
            "VANTAGE_DATABASE_URL": self.db_url,
            "VANTAGE_SEARCH_CONCURRENCY": "8", "VANTAGE_INFERENCE_CONCURRENCY": "8",
            "VANTAGE_EXTRACTION_CONCURRENCY": "8", "VANTAGE_MAX_ITEMS_IN_FLIGHT": str(IN_FLIGHT),
            "VANTAGE_CLAIM_BATCH_SIZE": "8", "VANTAGE_LEASE_SECONDS": str(LEASE_S),
            "VANTAGE_CONTROL_POLL_SECONDS": "0.5", "VANTAGE_WORKER_POLL_SECONDS": "0.5",
            "VANTAGE_GRACE_SECONDS": "5", "VANTAGE_RETRY_INITIAL_SECONDS": "0.01",
            "VANTAGE_RETRY_MAX_SECONDS": "0.05", "VANTAGE_LOG_LEVEL": "INFO", "VANTAGE_LOG_FORMAT": "json",
            **self.extra_env, **extra,
        }

    def cli(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.orchestrator.cli", *args], cwd=self.dir, env=self.env(**extra),
            capture_output=True, text=True, timeout=timeout,
        )

    def start_worker(self, *args: str, **extra: str) -> WorkerProc:
        self._n += 1
        log = self.dir / f"worker-{self._n}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.orchestrator.cli", "worker", *args], cwd=self.dir,
                env=self.env(**extra), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return WorkerProc(proc, log, hooked="VANTAGE_TEST_PAUSE_BEFORE_COMMIT" in extra)

    @staticmethod
    def kill(w: WorkerProc) -> None:
        """SIGKILL and reap (a zombie would still look alive to a same-host liveness check)."""
        with_pid = w.proc.poll() is None
        if with_pid:
            os.kill(w.pid, signal.SIGKILL)
        w.proc.wait(timeout=30)

    @staticmethod
    def terminate(w: WorkerProc, timeout: float = 30) -> int:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
        return w.proc.wait(timeout=timeout)

    def research_detached(self, n: int, name: str = "companies.csv") -> str:
        """Write a CSV of ``n`` synthetic companies, queue it with ``vantage research --detach --no-cache`` (every
        call reaches the sandbox, so calls can be counted there) and return the run id."""
        csv = self.dir / name
        csv.write_text("company,domain\n" + "".join(f"Crashco {i:04d} Labs,crashco{i:04d}.example\n" for i in range(n)))
        r = self.cli("research", "--detach", "--no-cache", "--quiet", str(csv))
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    def sandbox_reset(self) -> None:
        httpx.post(f"{self.sandbox}/_sandbox/reset", timeout=10).raise_for_status()

    def sandbox_calls(self) -> dict[str, int]:
        eps = httpx.get(f"{self.sandbox}/_sandbox/stats", timeout=10).json()["endpoints"]
        return {k: int(v["calls"]) for k, v in eps.items()}


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` until it returns something truthy (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def log_tail(w: WorkerProc, n: int = 4000) -> str:
    return w.log.read_text(errors="replace")[-n:] if w.log.exists() else ""
