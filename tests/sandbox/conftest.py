"""Fixtures: a real sandbox server on a loopback port, started in-process per test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sandbox_testkit import Sandbox

from services.sandbox import base_urls
from services.sandbox.config import SandboxSettings
from services.sandbox.server import serve


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    settings = SandboxSettings(log_level="warning", brightdata_duration_s=0.3)
    ready = tmp_path / "ready.json"
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        serve(settings, "127.0.0.1", 0, ready_file=ready, shutdown_event=stop, started_event=started)
    )
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task.done():
            task.result()
        raise AssertionError("sandbox did not start within 15 s")
    port = json.loads(ready.read_text())["port"]
    root = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=root, timeout=10) as admin:
        try:
            yield Sandbox(root=root, urls=base_urls(root), admin=admin)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=15)
