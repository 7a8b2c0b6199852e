"""Fixtures of the client-library tests: ``clients/python/src`` on the path (``client_kit``: the package is tested
from the source tree here, and as a built wheel in a fresh venv by ``test_client_wheel``), and a whole real stack — sandbox,
search, inference, extraction and orchestrator as processes on free loopback ports — that the clients reach only
over gRPC; and an inference service alone that requires a bearer token.

The whole stack runs without a token: with VANTAGE_AUTH_TOKEN set the orchestrator's CompleteStream calls to the
inference service are refused UNAUTHENTICATED and retried ~1,800 times per item (a server bug, reported), so the token is
tested on the services alone (token_inference, test_client_tls)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from client_kit import TOKEN, vendored_stubs_stale

from shared.procs import Stack, start_child, start_stack, stop_child

# Stale vendored stubs register the same .proto file names as gen/ with other contents, and protobuf refuses that
# in one process ("duplicate file name"): importing vantage_client next to gen/ would then break the collection of
# the whole suite. Only test_client_stubs (which says to run clients/python/scripts/gen.py) is collected then.
if vendored_stubs_stale():
    collect_ignore = [p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_client_stubs.py"]


@pytest.fixture(scope="session")
def client_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("client-stack")
    st = start_stack(env={
        "VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'vantage.db'}",
        "VANTAGE_WATCH_POLL_SECONDS": "0.1", "VANTAGE_RETRY_INITIAL_SECONDS": "0.01",
        "VANTAGE_RETRY_MAX_SECONDS": "0.05", "VANTAGE_BATCH_LINGER_SECONDS": "0.2",
        "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.05",
    }, log_dir=logs)
    yield st
    st.stop(grace=5)


@pytest.fixture(scope="session")
def addrs(client_stack: Stack) -> dict[str, str]:
    return {name: c.address for name, c in client_stack.children.items()}


@pytest.fixture(scope="session")
def token_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An inference service that requires ``authorization: Bearer TOKEN`` on every call; its address."""
    logs = tmp_path_factory.mktemp("client-token")
    child = start_child("inference", env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_AUTH_TOKEN": TOKEN,
                                          "VANTAGE_DATABASE_URL": f"sqlite:///{logs / 'inference.db'}"}, log_dir=logs)
    yield child.address
    stop_child(child, grace=5)
