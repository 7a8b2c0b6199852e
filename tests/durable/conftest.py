"""Fixtures of the durable-runs tests: a database URL per backend (SQLite and PostgreSQL), an opened Store, the three
downstream services in-process against the sandbox, and sandbox knobs restored afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shared.config import Settings


@pytest.fixture
def any_pg(pg_url: str) -> str:
    """PostgreSQL only (several processes sharing a run is a PostgreSQL deployment)."""
    return pg_url


@pytest.fixture
async def services(services: Settings) -> AsyncIterator[Settings]:
    """The shared in-process downstream services, with short leases and ticks for these tests."""
    yield services.model_copy(
        update={
            "lease_seconds": 3.0, "control_poll_seconds": 0.2, "worker_poll_seconds": 0.2,
            "watch_poll_seconds": 0.1,
        }
    )


@pytest.fixture
def knobs(sandbox_url: str) -> Iterator[Any]:
    """``knobs({...})`` merge-patches the shared sandbox's knobs; every knob is restored after the test."""
    before = httpx.get(f"{sandbox_url}/_sandbox/config").json()

    def patch(p: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{sandbox_url}/_sandbox/config", json=p)
        r.raise_for_status()
        return r.json()

    yield patch
    now = httpx.get(f"{sandbox_url}/_sandbox/config").json()
    restore = dict(before)
    restore["endpoints"] = {**{k: None for k in now.get("endpoints", {})}, **before.get("endpoints", {})}
    httpx.post(f"{sandbox_url}/_sandbox/config", json=restore).raise_for_status()
