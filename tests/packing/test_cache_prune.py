"""Purging the response cache: ``vantage db prune-cache`` (a real subprocess, which runs the inference service's
``python -m services.inference prune-cache``) removes only the expired rows (and,
with ``--older-than``, the old ones), prints how many, exits 0 / 2; :func:`purge` works in bounded batches on SQLite
and PostgreSQL; the inference service purges expired rows in the background."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from services.inference.cache import ResponseCache, purge
from services.inference.providers import CompletionResult
from services.inference.server import build
from services.inference.store import CHAIN
from services.inference.store.models import response_cache
from shared.config import Settings
from shared.db import create_engine
from shared.grpc_server import serving

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_900_000_000.0  # the seeding clock (Unix seconds), far from now


def _answer(text: str) -> CompletionResult:
    return CompletionResult(text=text, provider="brightdata_chatgpt", model="chatgpt", json_text="", cost_usd=0.0015)


async def _seed(url: str, *, now: float = T0) -> None:
    """Rows: ``e1``/``e2`` expire 60 s after ``now``; ``live`` expires a day after; ``forever`` never expires."""
    engine = create_engine(url)
    try:
        await CHAIN.ensure_schema(engine)
        short = ResponseCache(engine, ttl_seconds=60, clock=lambda: now)
        for k in ("e1", "e2"):
            await short.put(k * 32, "brightdata_chatgpt", "chatgpt", _answer(k))
        await ResponseCache(engine, ttl_seconds=86_400, clock=lambda: now).put(
            "live" * 16, "openai", "gpt-4.1", _answer("live"))
        await ResponseCache(engine, ttl_seconds=0, clock=lambda: now).put(
            "forever" + "f" * 57, "openai", "gpt-4.1", _answer("forever"))
    finally:
        await engine.dispose()


async def _keys(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {k[:4] for (k,) in await conn.execute(select(response_cache.c.key))}
    finally:
        await engine.dispose()


async def _cli(url: str, *args: str) -> tuple[int, str, str]:
    drop = ("VANTAGE_", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(VANTAGE_DATABASE_URL=url, VANTAGE_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orchestrator.cli", "db", "prune-cache", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cache_prune_cli_removes_only_expired_rows(db_url: str) -> None:
    # Seeded "now" = real time - 2 min: e1/e2 expired a minute ago, live expires in ~a day, forever never.
    await _seed(db_url, now=time.time() - 120)
    code, out, err = await _cli(db_url)
    assert code == 0, err
    assert "removed 2 expired response cache rows" in out
    assert await _keys(db_url) == {"live", "fore"}

    code, out, _ = await _cli(db_url)
    assert code == 0 and "removed 0 expired" in out  # nothing left to remove

    code, out, _ = await _cli(db_url, "--older-than", "3600")
    assert code == 0 and "removed 0 " in out  # live and forever were stored 2 minutes ago
    code, out, _ = await _cli(db_url, "--older-than", "60")
    assert code == 0 and "removed 2 response cache rows (expired, or stored at least 60 s ago)" in out
    assert await _keys(db_url) == set()


async def test_cache_prune_cli_refuses_a_negative_age_and_tolerates_a_database_without_the_table(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    code, _, err = await _cli(url, "--older-than", "-5")
    assert code == 2 and "--older-than" in err
    code, out, err = await _cli(url)
    assert code == 0, err
    assert "no response_cache table" in out and "removed 0 rows" in out


async def test_cache_prune_purges_in_bounded_batches(db_url: str) -> None:
    await _seed(db_url)
    engine = create_engine(db_url)
    try:
        before = datetime.fromtimestamp(T0 + 59, UTC)
        assert await purge(engine, now=before) == 0  # nothing has expired yet
        after = datetime.fromtimestamp(T0 + 61, UTC)
        assert await purge(engine, now=after, batch=1, max_batches=1) == 1  # one batch of one row
        assert await purge(engine, now=after, batch=1) == 1  # the other expired row; then a batch finds none
        assert await _keys(db_url) == {"live", "fore"}
        # older_than also removes rows that never expire, and rows not yet expired.
        assert await purge(engine, now=after, older_than_seconds=62) == 0  # stored 61 s ago
        assert await purge(engine, now=after + timedelta(seconds=1), older_than_seconds=62, batch=1) == 2
        assert await _keys(db_url) == set()
        with pytest.raises(ValueError):
            await purge(engine, now=after, older_than_seconds=-1)
    finally:
        await engine.dispose()


async def test_cache_prune_the_inference_service_purges_expired_rows_in_the_background(
    settings: Settings,
) -> None:
    await _seed(settings.database_url, now=time.time() - 120)
    fast = settings.model_copy(update={"response_cache_purge_interval_seconds": 0.05})
    async with serving("inference", build, fast) as srv, grpc.aio.insecure_channel(srv.address):
        end = time.monotonic() + 20
        while (keys := await _keys(settings.database_url)) != {"live", "fore"}:
            assert time.monotonic() < end, f"expired rows still there: {keys}"
            await asyncio.sleep(0.05)
    # The default interval is an hour (0 switches the background purge off).
    assert Settings.model_fields["response_cache_purge_interval_seconds"].default == 3600
