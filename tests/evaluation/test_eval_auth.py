"""An org evaluation with the bearer token required by every service (``VANTAGE_AUTH_TOKEN``): the run's
``InferenceService/CompleteStream`` carries the token like its unary calls do, and a wrong token fails the question
runs at once with UNAUTHENTICATED instead of re-opening the stream until ``rpc_timeout_seconds`` runs out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.procs import Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TOKEN = "eval-auth-test-token-0123456789"
QUESTIONS = "Which GPU clouds are best for training?\nWhere can I fine-tune Llama cheaply?\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("eval-auth")
    st = start_stack(
        ("sandbox", "search", "inference", "extraction"),
        env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'services.db'}",
             "VANTAGE_AUTH_TOKEN": TOKEN, "VANTAGE_BATCH_LINGER_SECONDS": "0.2",
             "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.2"},
        log_dir=logs,
    )
    yield st
    st.stop(grace=5)


def evaluate(stack: Stack, cwd: Path, token: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env = {**base, **stack.env(), "VANTAGE_DATABASE_URL": f"sqlite:///{cwd / 'vantage.db'}",
           "VANTAGE_AUTH_TOKEN": token, "VANTAGE_RETRY_INITIAL_SECONDS": "0.01", "VANTAGE_RETRY_MAX_SECONDS": "0.05"}
    (cwd / "questions.txt").write_text(QUESTIONS)
    return subprocess.run(
        [sys.executable, "-m", "services.orchestrator.cli", "evaluate", "--samples", "1", "--org", "Together AI", "--domain",
         "together.ai", "--questions", "questions.txt", "--models", "chatgpt,gpt-5.5", "--locations", "US",
         "--output", "json"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )


def test_evaluation_with_the_token_answers_every_question(stack: Stack, tmp_path: Path) -> None:
    r = evaluate(stack, tmp_path, TOKEN)
    assert r.returncode == 0, r.stderr[-2000:]
    assert TOKEN not in r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["failures"] == [] and report["summary"]["evaluations"] == 4  # 2 questions × 2 models × 1 location


def test_a_wrong_token_fails_fast_with_unauthenticated(stack: Stack, tmp_path: Path) -> None:
    r = evaluate(stack, tmp_path, "not-the-token-but-long-enough")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "UNAUTHENTICATED" in out or "unauthenticated" in out.lower(), out[-2000:]
    assert "attempts)" not in out  # no stream re-open loop
