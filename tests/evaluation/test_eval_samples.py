"""Acceptance of issue 14 items 1 and 2 (sweeps and repeated samples) as the user runs them: real processes (sandbox,
search, inference, extraction on free loopback ports; ``vantage`` as a subprocess over its own SQLite database).

- ``vantage evaluate … --samples 3`` on the example questions answers 3 × the matrix: K identical prompts are K
  Bright Data records and K API calls (the sandbox's billing counters), each sample its own question run;
- a second sweep right after asks the providers again (the response cache is scoped to a sweep), while
  ``vantage resume`` of either sweep asks nothing; ``--reuse-answers`` and ``vantage reextract`` ask nothing either;
- the size confirmation: over 500 question runs ``--quiet`` without ``--yes`` refuses (exit 2, one line);
- two sweeps with the sandbox's ``answer_mention_probability`` test knob moving the org's true mention probability
  for one model (0.8 → 0.3): ``vantage diff`` says ``moved_down`` for that model's visibility and
  ``within_noise`` for the other model's, which did not change; with K = 1 and 3 questions ``insufficient_data``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.orchestrator.app.jobs.evaluation import read_questions
from shared.procs import Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_QUESTIONS = ROOT / "examples" / "questions.txt"
ORG = "Together AI"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("samples-stack")
    st = start_stack(
        ("sandbox", "search", "inference", "extraction"),
        env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'services.db'}",
             "VANTAGE_SANDBOX_BRIGHTDATA_DURATION_S": "0.3", "VANTAGE_BATCH_LINGER_SECONDS": "0.2",
             "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.1"},
        log_dir=logs,
    )
    yield st
    st.stop(grace=5)


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path
    sandbox: str

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.orchestrator.cli", *args], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def evaluate(self, *args: str) -> dict[str, Any]:
        r = self.run("evaluate", "--org", ORG, "--domain", "together.ai", "--output", "json", "--quiet", *args)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout)

    def billing(self) -> dict[str, int]:
        """Paid provider work so far, as the sandbox counts it: Bright Data records, OpenAI and Anthropic calls."""
        b = httpx.get(f"{self.sandbox}/_sandbox/stats").json()["billing"]
        return {"records": int(b.get("brightdata", {}).get("records", 0)),
                "openai": int(b.get("openai", {}).get("requests", 0)),
                "anthropic": int(b.get("anthropic", {}).get("requests", 0))}

    def knobs(self, patch: dict[str, Any]) -> None:
        httpx.post(f"{self.sandbox}/_sandbox/config", json=patch).raise_for_status()

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(self.cwd / "vantage.db", timeout=5)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env = {**base, **stack.env(), "VANTAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'vantage.db'}",
           "VANTAGE_RETRY_INITIAL_SECONDS": "0.01", "VANTAGE_RETRY_MAX_SECONDS": "0.05"}
    return Cli(env, tmp_path, f"http://{stack.children['sandbox'].address}")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def test_samples_sweeps_resume_reuse_and_reextract(cli: Cli) -> None:
    n_q = len(read_questions(EXAMPLE_QUESTIONS))
    matrix = ("--questions", str(EXAMPLE_QUESTIONS), "--models", "chatgpt,gpt-5.5", "--locations", "US")

    b0 = cli.billing()
    first = cli.evaluate(*matrix, "--samples", "3")
    b1 = cli.billing()
    # 3 × the matrix: each question asked 3 times of each model, each sample its own question run.
    assert first["summary"]["processed"] == first["summary"]["evaluations"] == n_q * 2 * 3
    # (OpenAI also answers the first sweep's run-level calls: the org's name variations, the competitor merge.)
    assert delta(b1, b0)["records"] == n_q * 3 and delta(b1, b0)["openai"] >= n_q * 3
    assert first["summary"]["cache_hits"] == 0
    rid = first["run_id"]
    assert cli.rows("SELECT sample, count(*) FROM question_runs WHERE run_id = ? GROUP BY sample ORDER BY sample",
                    rid) == [(0, n_q * 2), (1, n_q * 2), (2, n_q * 2)]
    assert cli.rows("SELECT count(DISTINCT key) FROM run_items WHERE run_id = ?", rid) == [(n_q * 6,)]
    versions = {r[0] for r in cli.rows("SELECT model_version FROM question_runs WHERE run_id = ? AND model = ?",
                                       rid, "gpt-5.5")}
    assert versions and all(versions)  # the model as the provider reported it
    assert cli.rows("SELECT count(*) FROM question_runs WHERE run_id = ? AND reused_from_run IS NOT NULL",
                    rid) == [(0,)]

    # A second sweep right after is a new measurement: the providers are asked again.
    second = cli.evaluate(*matrix, "--samples", "3")
    b2 = cli.billing()
    assert delta(b2, b1) == {"records": n_q * 3, "openai": n_q * 3, "anthropic": 0}
    assert second["summary"]["cache_hits"] == 0 and second["run_id"] != rid

    # Resuming either sweep asks nothing.
    for run_id in (rid, second["run_id"]):
        r = cli.run("resume", run_id, "--output", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["summary"]["processed"] == n_q * 6
    assert cli.billing() == b2

    # --reuse-answers: the first sweep's answers copied (same question, model, location, sample), read again: $0.
    reused = cli.evaluate(*matrix, "--samples", "3", "--reuse-answers", rid[:8])
    assert cli.billing() == b2
    assert reused["summary"]["processed"] == n_q * 6 and reused["summary"]["cache_hits"] == n_q * 6
    assert reused["summary"]["cost_usd"] == 0
    assert cli.rows("SELECT DISTINCT reused_from_run FROM question_runs WHERE run_id = ?",
                    reused["run_id"]) == [(rid,)]
    mentioned = "SELECT count(*), sum(mentioned) FROM org_evals WHERE run_id = ?"
    assert cli.rows(mentioned, reused["run_id"]) == cli.rows(mentioned, rid)  # the same answers, read the same way
    # Asking for more samples than the earlier sweep had: only the new samples are asked.
    more = cli.evaluate("--questions", str(EXAMPLE_QUESTIONS), "--models", "gpt-5.5", "--locations", "US",
                        "--samples", "4", "--reuse-answers", rid)
    b3 = cli.billing()
    assert delta(b3, b2) == {"records": 0, "openai": n_q, "anthropic": 0}
    assert more["summary"]["cache_hits"] == n_q * 3

    # vantage reextract: extraction again on the stored answers, no provider call; the results are replaced.
    before = cli.rows("SELECT count(*), sum(mentioned) FROM org_evals WHERE run_id = ?", rid)
    con = sqlite3.connect(cli.cwd / "vantage.db", timeout=5)
    with con:  # an "old extractor" result, which reextract must replace
        con.execute("UPDATE org_evals SET mentioned = 0, rank = 0, evidence = 'stale' WHERE run_id = ?", (rid,))
    con.close()
    r = cli.run("reextract", rid[:8], "--output", "json", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["summary"]["evaluations"] == n_q * 6
    assert cli.billing() == b3
    assert cli.rows("SELECT count(*), sum(mentioned) FROM org_evals WHERE run_id = ?", rid) == before
    assert cli.rows("SELECT count(*) FROM org_evals WHERE run_id = ? AND evidence = 'stale'", rid) == [(0,)]

    # Errors: one line, exit 2, nothing stored.
    runs_before = cli.rows("SELECT count(*) FROM runs")
    r = cli.run("evaluate", "--org", ORG, *matrix, "--samples", "20", "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "× 20 samples = 800 question runs" in r.stderr and "--yes" in r.stderr
    r = cli.run("evaluate", "--org", ORG, *matrix, "--samples", "20")  # asked, and stdin says nothing: not started
    assert r.returncode == 2 and "estimated cost $" in r.stderr and "not started" in r.stderr
    r = cli.run("evaluate", "--org", ORG, *matrix, "--reuse-answers", "00000000-0000-0000-0000-000000000000")
    assert r.returncode == 2 and "--reuse-answers" in r.stderr and "not found" in r.stderr
    r = cli.run("evaluate", "--org", ORG, *matrix, "--samples", "0")
    assert r.returncode == 2 and "--samples" in r.stderr
    assert cli.rows("SELECT count(*) FROM runs") == runs_before


def test_diff_of_two_sweeps_with_the_mention_knob(cli: Cli, tmp_path: Path) -> None:
    questions = tmp_path / "q.txt"
    questions.write_text(EXAMPLE_QUESTIONS.read_text())
    matrix = ("--questions", str(questions), "--models", "gpt-5.5,claude-sonnet-5", "--locations", "US")
    try:
        cli.knobs({"answer_mention_probability": {ORG: 0.8}})
        a = cli.evaluate(*matrix, "--samples", "5")["run_id"]
        # The org's true mention probability falls for gpt-5.5 only; claude-sonnet-5's answers do not change.
        cli.knobs({"answer_mention_probability": {ORG: 0.8, f"{ORG}@gpt-5.5": 0.3}})
        b = cli.evaluate(*matrix, "--samples", "5")["run_id"]
        few = tmp_path / "few.txt"
        few.write_text("".join(f"{q}\n" for q in read_questions(EXAMPLE_QUESTIONS)[:3]))
        c = cli.evaluate("--questions", str(few), "--models", "gpt-5.5,claude-sonnet-5", "--locations", "US",
                         "--samples", "1")["run_id"]
    finally:
        cli.knobs({"answer_mention_probability": {ORG: None, f"{ORG}@gpt-5.5": None}})

    r = cli.run("diff", a, b, "--output", "json", "--resamples", "1000", "--seed", "1")
    assert r.returncode == 0, r.stderr
    cells = {(c["model"], c["location"]): c for c in json.loads(r.stdout)["cells"]}
    gpt, claude = cells[("gpt-5.5", "US")], cells[("claude-sonnet-5", "US")]
    assert gpt["visibility_rate_verdict"] == "moved_down", gpt
    assert gpt["visibility_rate_delta_ci_high"] < 0
    assert claude["visibility_rate_delta"] == 0.0
    assert claude["visibility_rate_verdict"] == "within_noise", claude

    r = cli.run("diff", a, c, "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    overall = doc["cells"][-1]
    assert overall["model"] == "all" and overall["visibility_rate_verdict"] == "insufficient_data"
    assert overall["visibility_rate_needed_n"] and doc["basket"] == 3 * 2
