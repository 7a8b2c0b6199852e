"""Fixtures of the chaos suite: a private sandbox process (fault knobs and billing counters of its own)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import configure_logging
from shared.procs import Child, start_child, stop_child


@pytest.fixture(scope="module")
def chaos_sandbox() -> Iterator[Child]:
    child = start_child("sandbox", env={"VANTAGE_LOG_LEVEL": "WARNING"})
    yield child
    stop_child(child, grace=5)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Only errors on stderr during a chaos run (the figures, not one warning per injected fault); the previous
    structlog and stdlib logging configuration comes back afterwards, so later tests' log captures still work."""
    before = structlog.get_config()
    root_level = logging.getLogger().level
    configure_logging("chaos", level="ERROR")
    try:
        yield
    finally:
        structlog.configure(**before)
        structlog.contextvars.unbind_contextvars("service")
        logging.getLogger().setLevel(root_level)
