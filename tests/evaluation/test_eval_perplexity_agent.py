"""Acceptance of issue 18, item 1: ``vantage evaluate --models sonar,…`` against the sandbox answers every question
through Perplexity's Agent API and makes 0 calls to the retired ``/chat/completions`` (the sandbox's stats count
both), with real processes (sandbox, search, inference, extraction on free ports; the CLI as a subprocess). Plus the
report's location note for a provider that cannot apply a location."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.inference.router import PROVIDERS
from services.orchestrator.reports.visibility import location_notes
from shared.procs import Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUESTIONS = (
    "What are the best GPU cloud providers for training large language models?\n"
    "Which platforms offer serverless inference for open-source models like Llama and DeepSeek?\n"
)
MODELS = "sonar,pplx:low,perplexity/sonar,claude-sonnet-5"
LOCATIONS = "US,GB"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("pplx-stack")
    st = start_stack(
        ("sandbox", "search", "inference", "extraction"),
        env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'services.db'}"},
        log_dir=logs,
    )
    yield st
    st.stop(grace=5)


def _stats(stack: Stack) -> dict:
    return httpx.get(f"http://{stack.children['sandbox'].address}/_sandbox/stats").json()


def _calls(stats: dict, endpoint: str) -> int:
    return int(stats["endpoints"].get(endpoint, {}).get("calls", 0))


def test_evaluate_with_sonar_uses_the_agent_api_only(stack: Stack, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env = {**base, **stack.env(), "VANTAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'vantage.db'}"}
    (tmp_path / "questions.txt").write_text(QUESTIONS)
    before = _stats(stack)
    r = subprocess.run(
        [sys.executable, "-m", "services.orchestrator.cli", "evaluate", "--samples", "1", "--org", "Together AI", "--domain",
         "together.ai", "--questions", "questions.txt", "--models", MODELS, "--locations", LOCATIONS,
         "--output", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    after = _stats(stack)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    n = 2 * 4 * 2  # questions × models × locations
    assert report["summary"]["processed"] == n and report["summary"]["evaluations"] == n
    assert not report["failures"] and report["notes"] == []  # every provider here applies the location
    pplx_groups = [g for g in report["groups"] if g["model"] != "claude-sonnet-5"]
    assert len(pplx_groups) == 6 and all(g["answered"] == g["question_runs"] == 2 for g in pplx_groups)
    assert sum(g["citations"] for g in pplx_groups) > 0  # grounded: the forced search gave sources
    # Counted by the sandbox: 12 Agent API calls (3 Perplexity models × 2 questions × 2 locations), none to the
    # retired Sonar endpoint, and the searches billed per search.
    assert _calls(after, "perplexity.chat_completions") == _calls(before, "perplexity.chat_completions")
    assert _calls(after, "perplexity.agent") - _calls(before, "perplexity.agent") == 12
    billed = after["billing"]["perplexity"]["web_search_requests"] - before["billing"].get(
        "perplexity", {}).get("web_search_requests", 0)
    assert billed >= 12


def test_report_notes_a_location_a_provider_cannot_apply() -> None:
    spec = PROVIDERS["perplexity"]
    blind = {**PROVIDERS, "perplexity": dataclasses.replace(
        spec, capabilities=dataclasses.replace(spec.capabilities, supports_locations=False))}
    rows = [("sonar", "GB", "perplexity"), ("sonar", "", "perplexity"), ("gpt-4.1", "GB", "openai")]
    assert location_notes(rows, blind) == [
        "location GB was not applied for model sonar: Perplexity Agent API (web_search forced) has no location option"]
    assert location_notes(rows) == []  # the Agent API's web_search tool takes user_location (perplexity-py type)
