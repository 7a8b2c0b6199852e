"""Fixtures of the orchestrator tests: a database URL per backend (SQLite and PostgreSQL), an opened Store, the
three downstream services in-process against the sandbox, and sandbox knobs that are restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture
def knobs(sandbox_url: str) -> Iterator[Any]:
    """``knobs({...})`` merge-patches the shared sandbox's knobs; every knob is restored after the test."""
    before = httpx.get(f"{sandbox_url}/_sandbox/config").json()

    def patch(p: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{sandbox_url}/_sandbox/config", json=p)
        r.raise_for_status()
        return r.json()

    yield patch
    # A merge-patch cannot delete keys added to `endpoints`: null them out explicitly.
    now = httpx.get(f"{sandbox_url}/_sandbox/config").json()
    restore = dict(before)
    restore["endpoints"] = {**{k: None for k in now.get("endpoints", {})}, **before.get("endpoints", {})}
    httpx.post(f"{sandbox_url}/_sandbox/config", json=restore).raise_for_status()
