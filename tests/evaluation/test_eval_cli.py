"""``vantage evaluate`` / ``resume`` / ``report`` / ``export`` as the user runs them: real processes (sandbox, search,
inference, extraction on free ports; the CLI as a subprocess). The acceptance scenario of the AI-visibility issue:
the CLI is SIGKILLed while its Bright Data snapshots are in flight, ``vantage resume`` completes the run, and the
sandbox's trigger counter shows that nothing was triggered again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.procs import Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHATGPT_DATASET = "gd_m7aof0k82r803d5bjm"
PERPLEXITY_DATASET = "gd_m7dhdot1vw9a7gc1n"
QUESTIONS = (
    "What are the best GPU cloud providers for training large language models?\n"
    "Which platforms offer serverless inference for open-source models like Llama and DeepSeek?\n"
    "# a comment\n\n"
    "What is the cheapest way to fine-tune Llama 3 on my own data?\n"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own whose Bright Data snapshots take 3 s (so that a kill lands while they run)."""
    logs = tmp_path_factory.mktemp("eval-stack")
    st = start_stack(
        ("sandbox", "search", "inference", "extraction"),
        env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'services.db'}",
             "VANTAGE_SANDBOX_BRIGHTDATA_DURATION_S": "3", "VANTAGE_BATCH_LINGER_SECONDS": "0.3",
             "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.2"},
        log_dir=logs,
    )
    yield st
    st.stop(grace=5)


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "services.orchestrator.cli", *args]

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True)


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env = {**base, **stack.env(), "VANTAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'vantage.db'}",
           "VANTAGE_RETRY_INITIAL_SECONDS": "0.01", "VANTAGE_RETRY_MAX_SECONDS": "0.05"}
    (tmp_path / "questions.txt").write_text(QUESTIONS)
    return Cli(env, tmp_path)


def triggers(stack: Stack) -> tuple[int, int]:
    bd = httpx.get(f"http://{stack.children['sandbox'].address}/_sandbox/stats").json()["brightdata"]["triggers"]
    return int(bd.get(CHATGPT_DATASET, 0)), int(bd.get(PERPLEXITY_DATASET, 0))


def db_rows(path: Path, sql: str) -> list[tuple]:
    if not path.exists():
        return []
    con = sqlite3.connect(path, timeout=5)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        con.close()


def test_sigkill_with_snapshots_in_flight_then_resume_triggers_nothing_new(cli: Cli, stack: Stack) -> None:
    db = cli.cwd / "vantage.db"
    before = triggers(stack)
    proc = cli.popen("evaluate", "--samples", "1", "--org", "Together AI", "--domain", "together.ai", "--questions", "questions.txt",
                     "--models", "chatgpt,perplexity,gpt-4.1", "--locations", "US")
    try:
        end = time.monotonic() + 60
        while len(db_rows(db, "SELECT snapshot_id FROM provider_batches")) < 2:
            assert proc.poll() is None, "the CLI ended before its snapshots were recorded"
            assert time.monotonic() < end, "no snapshots recorded within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the orchestrator dies with both snapshots in flight
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    after_kill = triggers(stack)
    assert (after_kill[0] - before[0], after_kill[1] - before[1]) == (1, 1)
    assert {r[0] for r in db_rows(db, "SELECT status FROM provider_batches")} == {"submitted"}
    (run_id,) = [r[0] for r in db_rows(db, "SELECT id FROM runs")]

    r = cli.run("resume", run_id, "--output", "json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["summary"]["processed"] == 9 and report["summary"]["evaluations"] == 9
    assert report["snapshots"]["triggered"] == 2 and report["snapshots"]["max_questions_per_snapshot"] == 3
    assert triggers(stack) == after_kill  # re-polled, never triggered again
    assert {r[0] for r in db_rows(db, "SELECT status FROM provider_batches")} == {"ready"}
    assert db_rows(db, "SELECT count(*), count(DISTINCT item_id) FROM org_evals") == [(9, 9)]
    assert db_rows(db, "SELECT count(*) FROM cost_ledger WHERE unit_type = 'records'") == [(6,)]

    # The report and the exports of the finished run.
    r = cli.run("report", run_id[:8])
    assert r.returncode == 0, r.stderr
    assert "9 processed, 9 evaluations," in r.stdout and "total cost" in r.stdout
    assert "Bright Data snapshots: 2 triggered (chatgpt 1, perplexity 1), at most 3 questions per snapshot" in r.stdout
    assert "AI visibility of Together AI (together.ai)" in r.stdout and "Share of voice" in r.stdout
    r = cli.run("export", run_id, "--format", "csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("seq,question_seq,question,model,location,status") and len(lines) == 10
    r = cli.run("export", run_id, "--format", "json")
    data = json.loads(r.stdout)
    assert data["run"]["kind"] == "org_eval" and len(data["question_runs"]) == 9
    assert data["report"]["summary"]["cost_usd"] == pytest.approx(data["run"]["cost_usd"])


def test_evaluate_usage_errors(cli: Cli) -> None:
    r = cli.run("evaluate", "--org", "Together AI", "--questions", "missing.txt")
    assert r.returncode == 2 and "missing.txt: no such file" in r.stderr
    r = cli.run("evaluate", "--org", "Together AI", "--questions", "questions.txt", "--models", "llama-unknown")
    assert r.returncode == 2 and "llama-unknown" in r.stderr and "Traceback" not in r.stderr
    r = cli.run("evaluate", "--org", "Together AI", "--questions", "questions.txt", "--locations", "USA")
    assert r.returncode == 2 and "ISO 3166-1" in r.stderr
    assert not db_rows(cli.cwd / "vantage.db", "SELECT id FROM runs")  # nothing was created
