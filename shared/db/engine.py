"""Database engines shared by the services: URL normalisation, SQLite/PostgreSQL engine set-up (SQLite WAL and
pragmas, PostgreSQL pool and idle-in-transaction timeout) and write transactions.

Both the orchestrator's store and the inference service's response cache open their engines here; each service
then adds its own hooks (the orchestrator its crash-test hook) and runs its own migrations
(:mod:`shared.db.migrations`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

#: Milliseconds a SQLite connection waits for another writer's lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: PostgreSQL ends a session that sits inside a transaction without sending anything for this long (milliseconds),
#: releasing its row locks. Our transactions never wait on anything but the database, so only a frozen process (a
#: SIGSTOP, a VM pause, a debugger) gets there; without it such a process would stall every claimer that touches a
#: row it locked until it woke up. https://www.postgresql.org/docs/15/runtime-config-client.html
PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 20_000
#: Execution option marking a connection's transactions as writes (``BEGIN IMMEDIATE`` on SQLite).
WRITE_TX = "vantage_write"


def normalise_url(url: str) -> str:
    """The async SQLAlchemy URL for ``url``: ``postgresql://`` / ``postgres://`` / ``postgresql+psycopg2://`` →
    ``postgresql+psycopg://``; ``sqlite://`` → ``sqlite+aiosqlite://``. Other URLs are returned unchanged.
    Raises ``ValueError`` for a string without ``://``.

    >>> normalise_url("postgresql://u@h/db")
    'postgresql+psycopg://u@h/db'
    >>> normalise_url("sqlite:///vantage.db")
    'sqlite+aiosqlite:///vantage.db'
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r} (expected e.g. sqlite:///vantage.db or postgresql://…)")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    return url


def is_sqlite(url: str) -> bool:
    return normalise_url(url).startswith("sqlite")


def display_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return make_url(normalise_url(url)).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as-is minus credentials we cannot find
        return url.split("@")[-1]


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url``. SQLite: WAL (readers never block the writer), a busy timeout, foreign keys
    on, ``synchronous=NORMAL`` (durable at each WAL checkpoint; safe with WAL against application crashes), and
    transactions begun by us (``BEGIN IMMEDIATE`` under :data:`WRITE_TX`). PostgreSQL: psycopg 3 async with a pool of
    ``pool_size`` (+ twice as many overflow connections), pre-ping, and :data:`PG_IDLE_IN_TRANSACTION_TIMEOUT_MS` so
    a frozen process cannot hold row locks for ever."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cur, _loop_sleep(dbapi_conn))
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            # We emit BEGIN ourselves (below): the driver's implicit BEGIN comes only before DML, which would leave
            # DDL (migrations) outside any transaction and let a write transaction start as a reader.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take SQLite's write lock up front (waiting up to busy_timeout), so two processes racing to
            # write — or to create the schema — queue instead of failing half-way.
            immediate = conn.get_execution_options().get(WRITE_TX, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_pre_ping=True,
        connect_args={"options": f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_TIMEOUT_MS}"},
    )


def _is_locked(e: BaseException) -> bool:
    return type(e).__name__ == "OperationalError" and "locked" in str(e)


def _loop_sleep(dbapi_conn: Any) -> Callable[[float], None]:
    """A sleep for code that runs inside a SQLAlchemy event of an async engine: the event is synchronous, but runs
    in SQLAlchemy's greenlet on the event loop, so ``time.sleep`` there would stop every other task of the process.
    ``AdaptedConnection.run_async`` awaits ``asyncio.sleep`` instead — the documented way to await from a pool event
    (https://docs.sqlalchemy.org/en/20/orm/extensions/asyncio.html#using-awaitable-only-driver-methods-in-connection-pool-and-other-events).
    A raw DB-API connection (no ``run_async``: a sync engine, off the loop) sleeps the thread."""
    run_async = getattr(dbapi_conn, "run_async", None)
    if run_async is None:
        return time.sleep

    def sleep(seconds: float) -> None:
        run_async(lambda _raw: asyncio.sleep(seconds))

    return sleep


def _enable_wal(cur: Any, sleep: Callable[[float], None] = time.sleep) -> None:
    """Switch a SQLite database to WAL. Changing the journal mode needs an exclusive lock and SQLite answers
    SQLITE_BUSY at once, without its busy handler, when another connection is mid-transaction on a brand-new
    file (https://www.sqlite.org/wal.html#activating_and_configuring_wal_mode), so several processes opening
    the same new database retry here with jittered back-off, waiting with ``sleep`` (:func:`_loop_sleep`: on the
    event loop without blocking it) for at most the busy timeout."""
    for attempt in Retrying(
        retry=retry_if_exception(_is_locked),
        wait=wait_random_exponential(multiplier=0.01, max=0.5),
        stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
        sleep=sleep,
        reraise=True,
    ):
        with attempt:
            cur.execute("PRAGMA journal_mode")
            (mode,) = cur.fetchone()
            if str(mode).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: ``BEGIN IMMEDIATE`` on SQLite (the write lock is taken at once)."""
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_TX: True})
        async with conn.begin():
            yield conn
