"""Fixtures of the client-library tests: ``clients/python/src`` on the path (the package is tested from the
source tree here, and as a built wheel in a fresh venv by ``test_client_wheel``), and a whole real stack — sandbox,
search, inference, extraction and orchestrator as processes on free loopback ports, with a bearer token — that the
clients reach only over gRPC."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.procs import Stack, start_stack

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

#: The stack's bearer token (VANTAGE_AUTH_TOKEN): every service requires it on every call.
TOKEN = "client-test-token-5f0c"


@pytest.fixture(scope="session")
def client_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("client-stack")
    st = start_stack(env={
        "VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'vantage.db'}",
        "VANTAGE_AUTH_TOKEN": TOKEN, "VANTAGE_WATCH_POLL_SECONDS": "0.1", "VANTAGE_RETRY_INITIAL_SECONDS": "0.01",
        "VANTAGE_RETRY_MAX_SECONDS": "0.05", "VANTAGE_BATCH_LINGER_SECONDS": "0.2",
        "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.05",
    }, log_dir=logs)
    yield st
    st.stop(grace=5)


@pytest.fixture(scope="session")
def addrs(client_stack: Stack) -> dict[str, str]:
    return {name: c.address for name, c in client_stack.children.items()}
