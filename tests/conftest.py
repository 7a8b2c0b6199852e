"""Fixtures shared by the whole suite: the provider sandbox as a real HTTP process, settings pointing at it,
fresh SQLite and PostgreSQL databases, and real services on loopback ports.

PostgreSQL tests skip (with the reason) when no server answers at ``VANTAGE_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), unless ``VANTAGE_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which
turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from shared.procs import Child, start_child, stop_child

PG_ADMIN_URL = os.environ.get("VANTAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _restore_structlog_config() -> Iterator[None]:
    """A test that configures logging in-process (e.g. the chaos suite at level ERROR) must not change what later
    tests capture with ``structlog.testing.capture_logs``."""
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Child]:
    """The provider sandbox, started once per session on a free loopback port."""
    child = start_child("sandbox", env={"VANTAGE_LOG_LEVEL": "WARNING"})
    yield child
    stop_child(child, grace=5)


@pytest.fixture(scope="session")
def sandbox_url(sandbox: Child) -> str:
    return f"http://{sandbox.address}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file database."""
    return f"sqlite+aiosqlite:///{tmp_path / 'vantage.db'}"


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
        return None
    except Exception as e:  # any failure to connect means "not reachable"
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(e).__name__}: {str(e).strip()[:200]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (created here, dropped afterwards), as a SQLAlchemy psycopg URL."""
    import psycopg

    reason = _pg_reachable()
    if reason:
        if os.environ.get("VANTAGE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (VANTAGE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    name = f"vantage_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(sandbox_url: str, sqlite_url: str) -> Settings:
    """Settings for in-process services: sandbox providers, a fresh SQLite database, fast retries."""
    return Settings(
        sandbox_url=sandbox_url,
        database_url=sqlite_url,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
        batch_linger_seconds=0.2,
        brightdata_poll_seconds=0.05,
        grace_seconds=1.0,
    )


@pytest.fixture
async def grpc_channels(settings: Settings) -> AsyncIterator[object]:
    from shared.grpc_client import Channels

    ch = Channels(settings)
    yield ch
    await ch.close()


@pytest.fixture
async def sandbox_admin(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the sandbox root, for its admin endpoints (``/_sandbox/config``, ``/_sandbox/stats``)."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        yield client


@pytest.fixture
async def sandbox_knobs(sandbox_admin: httpx.AsyncClient) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[None]]]:
    """Patch the (session-wide) sandbox's knobs for one test; the previous values come back afterwards."""
    before = (await sandbox_admin.get("/_sandbox/config")).json()

    async def patch(changes: dict[str, Any]) -> None:
        r = await sandbox_admin.post("/_sandbox/config", json=changes)
        assert r.status_code == 200, r.text

    yield patch
    # A merge-patch with every top-level key restores them; "endpoints" is replaced wholesale (null = drop).
    current = (await sandbox_admin.get("/_sandbox/config")).json()
    restore = {k: before.get(k) for k in current}
    restore["endpoints"] = {k: None for k in current.get("endpoints", {})} | before.get("endpoints", {})
    r = await sandbox_admin.post("/_sandbox/config", json=restore)
    assert r.status_code == 200, r.text


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each backend (PostgreSQL skips without a server, fails under VANTAGE_REQUIRE_POSTGRES=1)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[object]:
    """An opened orchestrator Store on ``db_url`` (schema created on first use)."""
    from services.orchestrator.store import open_store

    st = await open_store(db_url)
    yield st
    await st.close()


@contextlib.asynccontextmanager
async def downstream(settings: Settings) -> AsyncIterator[Settings]:
    """search, inference and extraction served in-process on loopback; yields settings pointing at them."""
    from services.extraction.server import build as extraction_build
    from services.inference.server import build as inference_build
    from services.search.server import build as search_build
    from shared.grpc_server import serving

    async with (
        serving("search", search_build, settings) as s,
        serving("inference", inference_build, settings) as i,
        serving("extraction", extraction_build, settings) as e,
    ):
        yield settings.model_copy(
            update={"search_addr": s.address, "inference_addr": i.address, "extraction_addr": e.address}
        )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose search/inference/extraction addresses are live in-process servers (against the sandbox)."""
    async with downstream(settings) as s:
        yield s
