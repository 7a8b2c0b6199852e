"""Fixtures of the HTML report tests: a stack of real processes (sandbox, search, inference, extraction on free
ports), one small evaluation run (3 questions × chatgpt, gpt-5.5 × US, GB = 12 question runs) executed by
``vantage evaluate … --html`` and one research run of 6 companies, both by the CLI as the user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.procs import start_stack

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = (
    "What are the best GPU cloud providers for training large language models?\n"
    "Which platforms offer serverless inference for open-source models like Llama and DeepSeek?\n"
    "What is the cheapest way to fine-tune Llama 3 on my own data?\n"
)


@dataclass
class Runs:
    dir: Path
    env: dict[str, str]
    eval_id: str
    eval_html: Path
    research_id: str
    research_html: Path

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.orchestrator.cli", *args], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    d = tmp_path_factory.mktemp("reports")
    st = start_stack(("sandbox", "search", "inference", "extraction"),
                     env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{d / 'services.db'}",
                          "VANTAGE_SANDBOX_BRIGHTDATA_DURATION_S": "0.2", "VANTAGE_BATCH_LINGER_SECONDS": "0.2",
                          "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.1"}, log_dir=d)
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
        env = {**base, **st.env(), "VANTAGE_DATABASE_URL": f"sqlite:///{d / 'vantage.db'}"}
        (d / "questions.txt").write_text(QUESTIONS)
        lines = (ROOT / "examples" / "companies.csv").read_text().splitlines()
        (d / "companies.csv").write_text("\n".join(lines[:7]) + "\n")
        r = Runs(d, env, "", d / "eval.html", "", d / "research.html")
        ev = r.cli("evaluate", "--samples", "1", "--org", "Together AI", "--domain", "together.ai", "--questions", "questions.txt",
                   "--models", "chatgpt,gpt-5.5", "--locations", "US,GB", "--competitors", "CoreWeave,Lambda",
                   "--output", "json", "--quiet", "--html", str(r.eval_html))
        assert ev.returncode == 0, ev.stderr
        r.eval_id = json.loads(ev.stdout)["run_id"]
        rs = r.cli("research", "companies.csv", "--output", "json", "--quiet")
        assert rs.returncode == 0, rs.stderr
        r.research_id = json.loads(rs.stdout)["run"]["run_id"]
        rep = r.cli("report", r.research_id, "--format", "html", "--out", str(r.research_html))
        assert rep.returncode == 0, rep.stderr
        yield r
    finally:
        st.stop(grace=5)
