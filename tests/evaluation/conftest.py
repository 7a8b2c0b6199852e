"""Fixtures of the ORG_EVAL tests: the three downstream services in-process against the shared sandbox, a database
of each backend, sandbox knobs restored after each test, and helpers to read the sandbox's Bright Data counters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.store import Store, open_store
from shared.config import Settings
from shared.grpc_client import Channels

CHATGPT_DATASET = "gd_m7aof0k82r803d5bjm"
PERPLEXITY_DATASET = "gd_m7dhdot1vw9a7gc1n"


@pytest.fixture
async def eval_env(services: Settings, db_url: str) -> AsyncIterator[tuple[Settings, Store, Orchestrator]]:
    """(settings, store, orchestrator): downstream services in-process + a fresh database of each backend."""
    settings = services.model_copy(update={"database_url": db_url})
    store = await open_store(db_url)
    channels = Channels(settings)
    yield settings, store, Orchestrator(store, Clients(channels, settings), settings)
    await channels.close()
    await store.close()


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


class SandboxCounters:
    """Reads ``GET /_sandbox/stats``: Bright Data triggers per dataset, records billed, cancels."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sandbox/stats").json()

    def triggers(self) -> dict[str, int]:
        bd = self.stats()["brightdata"]
        return {"chatgpt": int(bd["triggers"].get(CHATGPT_DATASET, 0)),
                "perplexity": int(bd["triggers"].get(PERPLEXITY_DATASET, 0))}

    def cancels(self) -> int:
        return int(self.stats()["brightdata"]["cancels"])


@pytest.fixture
def counters(sandbox_url: str) -> SandboxCounters:
    return SandboxCounters(sandbox_url)
