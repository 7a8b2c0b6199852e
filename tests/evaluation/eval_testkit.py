"""Helpers of the ORG_EVAL tests: raw SQL reads (JSON columns come back as text on SQLite), polling with a
deadline, and an in-process orchestrator over a fresh database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text

from services.orchestrator.store import Store

QUESTIONS = Path(__file__).resolve().parents[2] / "examples" / "questions.txt"


async def rows(store: Store, sql: str, **params: object) -> list[tuple]:
    async with store.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql), params)]


async def scalar(store: Store, sql: str, **params: object) -> object:
    return (await rows(store, sql, **params))[0][0]


def members(value: object) -> list[str]:
    """A JSON column read by raw SQL: a list on PostgreSQL, JSON text on SQLite."""
    return json.loads(value) if isinstance(value, str) else list(value)  # type: ignore[arg-type]


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 30.0, what: str = "condition") -> None:
    """Poll ``check`` every 50 ms until it is true; AssertionError after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
