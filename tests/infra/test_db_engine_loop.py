"""The SQLite engine never sleeps on the event loop: switching a brand-new database to WAL while another
connection holds its write lock is retried with back-off (shared/db/engine.py ``_enable_wal``), and those waits
are ``asyncio.sleep`` awaited from SQLAlchemy's connect event (``AdaptedConnection.run_async``), not ``time.sleep``,
which would stop every other task of the process (issue 12 item 5). Real SQLite files, a real second connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import create_engine


async def test_wal_switch_waits_for_a_locked_new_database_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.current_thread()
    sleeps_on_loop: list[float] = []
    real_sleep = time.sleep

    def watched_sleep(seconds: float) -> None:
        if threading.current_thread() is loop_thread:
            sleeps_on_loop.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", watched_sleep)

    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None)  # another process' connection, mid-transaction
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE t (x INTEGER)")
    engine = create_engine(f"sqlite:///{path}")
    try:

        async def journal_mode() -> str:
            async with engine.connect() as conn:
                return str((await conn.execute(text("PRAGMA journal_mode"))).scalar())

        opening = asyncio.create_task(journal_mode())
        # Keep the lock for a while (several of the engine's retries); the loop keeps running meanwhile.
        held_until = time.monotonic() + 0.5
        while time.monotonic() < held_until:
            assert not opening.done(), "the WAL switch cannot succeed while the write lock is held"
            await asyncio.sleep(0.01)
        holder.execute("COMMIT")
        assert await asyncio.wait_for(opening, timeout=30) == "wal"
    finally:
        holder.close()
        await engine.dispose()
    assert sleeps_on_loop == []  # every back-off was awaited, none slept on the loop's thread
