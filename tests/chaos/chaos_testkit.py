"""Shared parts of the chaos suite (imported by name, like the other suites' testkits): the fault mix, sizes, the
in-process stack and the figures both chaos runs print."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.extraction.server import build as extraction_build
from services.inference.server import build as inference_build
from services.search.server import build as search_build
from shared.config import Settings
from shared.grpc_server import serving
from shared.procs import Child

FULL = os.environ.get("VANTAGE_CHAOS_FULL") == "1"
MIN_SUCCESS = 0.995
SEED = int(os.environ.get("VANTAGE_CHAOS_SEED", "20260501"))  # a failing run replays with its seed

#: The fault mix of the issue, as sandbox rates.
FAULTS = {"rate_429": 0.10, "rate_500": 0.05, "rate_hang": 0.02, "rate_malformed": 0.01}
#: Only where a request can be too large: an LLM prompt built from search results.
LLM_ONLY = {"rate_oversize": 0.03}


def latency(kind: str) -> dict[str, float]:
    """Sandbox latency knobs: provider-like lognormal ones at full size, ~5 ms in CI."""
    if not FULL:
        return {"latency_s": 0.005, "latency_cv": 0.5, "retry_after_s": 0.05}
    mean = {"search": 0.4, "llm": 1.2, "poll": 0.1}[kind]
    return {"latency_s": mean, "latency_cv": 0.7, "retry_after_s": 1.0}


def chaos_settings(sandbox: Child, db: Path, **overrides: Any) -> Settings:
    return Settings(
        sandbox_url=f"http://{sandbox.address}",
        database_url=f"sqlite+aiosqlite:///{db}",
        # One attempt; a hang is cut here and retried. Well above a loaded box's worst answer time, so that only
        # hangs time out (an answer the client gave up on may still have been billed: the sandbox counts it under
        # billing_unread, and no client-side ledger could know it).
        provider_timeout_seconds=10.0 if FULL else 5.0,
        retry_initial_seconds=0.2 if FULL else 0.05,
        retry_max_seconds=2.0 if FULL else 1.0,
        rpc_timeout_seconds=120.0,
        grace_seconds=1.0,
        log_level="WARNING",
        **overrides,
    )


@contextlib.asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[Settings]:
    """search, inference and extraction in-process; settings pointing at them."""
    async with (
        serving("search", search_build, settings) as s,
        serving("inference", inference_build, settings) as i,
        serving("extraction", extraction_build, settings) as e,
    ):
        yield settings.model_copy(
            update={"search_addr": s.address, "inference_addr": i.address, "extraction_addr": e.address}
        )


def reason_class(error: str | None) -> str:
    """The stable head of an item's failure reason: ``"inference: UNAVAILABLE"``."""
    if not error:
        return "(no reason recorded)"
    head = error.split(": ", 2)
    return ": ".join(head[:2]) if len(head) >= 2 else error


def delivered(sandbox: dict[str, Any], provider: str, key: str) -> int:
    """Units the sandbox billed for answers that reached the client: its billing minus billing_unread."""
    billed = sandbox["billing"].get(provider, {}).get(key, 0)
    unread = sandbox.get("billing_unread", {}).get(provider, {}).get(key, 0)
    return int(billed) - int(unread)


def fault_counts(sandbox: dict[str, Any]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(calls per endpoint, injected faults per endpoint) from the sandbox's stats."""
    eps = sandbox["endpoints"]
    return ({n: ep.get("calls", 0) for n, ep in eps.items()},
            {n: ep["faults"] for n, ep in eps.items() if ep.get("faults")})
