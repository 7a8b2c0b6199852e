"""Fixtures of the CLI tests: a real stack (sandbox, search, inference, extraction as processes on free ports) and a
runner for the real ``vantage`` command (``e2e_kit``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kit import Cli, cli_for

from shared.procs import Stack, start_stack


def make_stack(logs: Path, **env: str) -> Stack:
    """sandbox + search + inference + extraction as processes on free ports. The services get a database of their
    own (the inference response cache lives there), never the CLI's."""
    base = {"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'services.db'}"}
    return start_stack(("sandbox", "search", "inference", "extraction"), env={**base, **env}, log_dir=logs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = make_stack(tmp_path_factory.mktemp("stack-logs"))
    yield st
    st.stop(grace=5)


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own (cold caches for the first test that uses it) whose sandbox answers each LLM call after
    0.4 s."""
    st = make_stack(
        tmp_path_factory.mktemp("slow-stack-logs"),
        VANTAGE_SANDBOX_ENDPOINTS='{"openai.chat_completions": {"latency_s": 0.4}}',
    )
    yield st
    st.stop(grace=5)


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    return cli_for(stack, tmp_path)


@pytest.fixture
def slow_cli(slow_stack: Stack, tmp_path: Path) -> Cli:
    return cli_for(slow_stack, tmp_path)
