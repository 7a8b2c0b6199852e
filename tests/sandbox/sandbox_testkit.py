"""Shared helpers for the sandbox tests (imported by conftest and the test modules)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

API_KEY = "sk-sandbox-test"


@dataclass
class Sandbox:
    root: str
    urls: dict[str, str]
    admin: httpx.AsyncClient

    async def stats(self) -> dict[str, Any]:
        r = await self.admin.get("/_sandbox/stats")
        r.raise_for_status()
        return r.json()

    async def configure(self, patch: dict[str, Any]) -> dict[str, Any]:
        r = await self.admin.post("/_sandbox/config", json=patch)
        r.raise_for_status()
        return r.json()


async def poll_until(check: Callable[[], Awaitable[Any]], within: float = 5.0, interval: float = 0.01) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)
