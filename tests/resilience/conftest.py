"""Fixtures of the resilience tests: a private sandbox process (its counters and fault knobs belong to these tests
alone, reset before each test, so a seeded fault sequence is reproducible), settings pointing at it, and helpers to
read its stats and change its knobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from shared.procs import Child, start_child, stop_child


@pytest.fixture(scope="module")
def private_sandbox() -> Iterator[Child]:
    child = start_child("sandbox", env={"VANTAGE_LOG_LEVEL": "WARNING"})
    yield child
    stop_child(child, grace=5)


@pytest.fixture
async def sandbox_admin(private_sandbox: Child) -> AsyncIterator[httpx.AsyncClient]:
    """Admin client of the private sandbox; its knobs and counters are reset around each test."""
    async with httpx.AsyncClient(base_url=f"http://{private_sandbox.address}", timeout=10) as admin:
        before = (await admin.get("/_sandbox/config")).json()
        (await admin.post("/_sandbox/reset")).raise_for_status()
        yield admin
        now = (await admin.get("/_sandbox/config")).json()
        restore = dict(before)
        restore["endpoints"] = {**{k: None for k in now.get("endpoints", {})}, **before.get("endpoints", {})}
        (await admin.post("/_sandbox/config", json=restore)).raise_for_status()


@pytest.fixture
def knobs(sandbox_admin: httpx.AsyncClient) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def patch(p: dict[str, Any]) -> None:
        r = await sandbox_admin.post("/_sandbox/config", json=p)
        assert r.status_code == 200, r.text

    return patch


@pytest.fixture
def res_settings(private_sandbox: Child, tmp_path: Path) -> Settings:
    """Settings against the private sandbox: fast retries, a small circuit threshold is set per test."""
    return Settings(
        sandbox_url=f"http://{private_sandbox.address}",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'vantage.db'}",
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
        batch_linger_seconds=0.2,
        brightdata_poll_seconds=0.05,
        grace_seconds=1.0,
    )
