"""Fixtures of the crash suite (``pytest -m crash``): one stack for the whole suite — the sandbox at scaled
latencies (search 20 ms, LLM ~100 ms lognormal, i.e. mostly 50–150 ms) plus search, inference and extraction as
processes. Helpers (workers, SIGKILL, database, sandbox counts) are in ``crash_kit.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from crash_kit import SANDBOX_LATENCIES

from shared.procs import Stack, start_stack


@pytest.fixture(scope="session")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("crash-stack")
    env = {
        "VANTAGE_LOG_LEVEL": "WARNING",
        "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'services.db'}",  # the services' own (response cache)
        "VANTAGE_SANDBOX_ENDPOINTS": json.dumps(SANDBOX_LATENCIES),
    }
    st = start_stack(("sandbox", "search", "inference", "extraction"), env=env, log_dir=logs)
    yield st
    st.stop(grace=5)
