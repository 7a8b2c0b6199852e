"""Helpers shared by the inference tests (imported by name, like tests/sandbox/sandbox_testkit.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def poll_until(check: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``within`` seconds (no blind sleeps)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)
