"""Database engine and schema management: URL normalisation, SQLite/PostgreSQL engine set-up, Alembic
migrations configured in code (no alembic.ini), and the start-up schema check.

Policy at start-up (:func:`ensure_schema`): a brand-new empty database is upgraded to the head revision
automatically; a database at an older revision is refused with one line telling the user to run
``vantage db upgrade`` (:class:`SchemaOutOfDate`); a database at a revision this code does not know (newer code
migrated it) is refused too.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from shared.errors import FailedPrecondition

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: pg_advisory_xact_lock key that serialises concurrent schema upgrades (several workers starting at once).
_PG_MIGRATION_LOCK = 0x56414E54  # "VANT"
#: Milliseconds a SQLite connection waits for another writer's lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: PostgreSQL ends a session that sits inside a transaction without sending anything for this long (milliseconds),
#: releasing its row locks. Our transactions never wait on anything but the database, so only a frozen process (a
#: SIGSTOP, a VM pause, a debugger) gets there; without it such a process would stall every claimer that touches a
#: row it locked until it woke up. https://www.postgresql.org/docs/15/runtime-config-client.html
PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 20_000
#: Execution option marking a connection's transactions as writes (``BEGIN IMMEDIATE`` on SQLite).
WRITE_TX = "vantage_write"
#: ``Connection.info`` key counting the item completions written by the current transaction (see
#: :func:`install_crash_hook`).
COMPLETIONS_KEY = "vantage_completions"
#: Crash-test hook (inert unless set): ``"N:/path/marker"`` — right before the COMMIT of the N-th transaction of this
#: process that completes items, write ``/path/marker`` (JSON: pid, completions in the transaction) and freeze, so
#: that the test can SIGKILL the process inside a database commit.
CRASH_HOOK_ENV = "VANTAGE_TEST_PAUSE_BEFORE_COMMIT"


class SchemaOutOfDate(FailedPrecondition):
    """The database's schema revision is not the one this code needs."""

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message, reason="SCHEMA_OUT_OF_DATE")
        self.current = current
        self.head = head


def normalise_url(url: str) -> str:
    """The async SQLAlchemy URL for ``url``: ``postgresql://`` / ``postgres://`` / ``postgresql+psycopg2://`` →
    ``postgresql+psycopg://``; ``sqlite://`` → ``sqlite+aiosqlite://``. Other URLs are returned unchanged.

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
    on, ``synchronous=NORMAL`` (durable at each WAL checkpoint; safe with WAL against application crashes).
    PostgreSQL: psycopg 3 async with a pool sized for the pipeline's concurrent writers, and
    :data:`PG_IDLE_IN_TRANSACTION_TIMEOUT_MS` so a frozen process cannot hold row locks for ever."""
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
            _enable_wal(cur)
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

        install_crash_hook(engine)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_pre_ping=True,
        connect_args={"options": f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_TIMEOUT_MS}"},
    )
    install_crash_hook(engine)
    return engine


@retry(
    retry=retry_if_exception(lambda e: type(e).__name__ == "OperationalError" and "locked" in str(e)),
    wait=wait_random_exponential(multiplier=0.01, max=0.5),
    stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
    reraise=True,
)
def _enable_wal(cur: Any) -> None:
    """Switch a SQLite database to WAL. Changing the journal mode needs an exclusive lock and SQLite answers
    SQLITE_BUSY at once, without its busy handler, when another connection is mid-transaction on a brand-new
    file (https://www.sqlite.org/wal.html#activating_and_configuring_wal_mode), so several processes opening
    the same new database retry here with jittered back-off."""
    cur.execute("PRAGMA journal_mode")
    (mode,) = cur.fetchone()
    if str(mode).lower() != "wal":
        cur.execute("PRAGMA journal_mode=WAL")


def install_crash_hook(engine: AsyncEngine) -> bool:
    """The crash suite's "kill inside a commit" point (:data:`CRASH_HOOK_ENV`); does nothing unless that variable
    is set. The pause is a blocking sleep inside SQLAlchemy's ``commit`` event, which fires after the transaction's
    statements and before the COMMIT is sent: the whole process freezes there with its row locks held, exactly as
    a machine dying mid-commit; PostgreSQL rolls the transaction back when the connection drops."""
    spec = os.environ.get(CRASH_HOOK_ENV, "")
    if not spec:
        return False
    nth_s, _, marker = spec.partition(":")
    nth = int(nth_s)
    seen = [0]

    @event.listens_for(engine.sync_engine, "commit")
    def _before_commit(conn: Connection) -> None:
        n = conn.info.pop(COMPLETIONS_KEY, 0)
        if not n:
            return
        seen[0] += 1
        if seen[0] != nth:
            return
        Path(marker).write_text(json.dumps({"pid": os.getpid(), "completions": n}))
        time.sleep(3600)  # SIGKILLed here by the test

    @event.listens_for(engine.sync_engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        conn.info.pop(COMPLETIONS_KEY, None)

    return True


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configured in code: our migrations directory; ``connection`` handed to ``env.py``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision this code ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _lock_for_migration(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})


def _upgrade_sync(conn: Connection, revision: str) -> None:
    _lock_for_migration(conn)
    command.upgrade(alembic_config(conn), revision)


def _check_sync(conn: Connection, *, auto_upgrade_empty: bool) -> tuple[str | None, str]:
    """(revision found, head) after upgrading an empty database when allowed; raises :class:`SchemaOutOfDate`."""
    head = head_revision()
    current = _current_revision(conn)
    if current == head:
        return current, head
    if current is None and auto_upgrade_empty:
        _lock_for_migration(conn)
        # Re-read under the lock: another process may have just created the schema.
        current = _current_revision(conn)
        if current is None and not [t for t in inspect(conn).get_table_names() if t != "alembic_version"]:
            command.upgrade(alembic_config(conn), "head")
            return head, head
        if current == head:
            return current, head
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    shown = current or "empty (no alembic_version)"
    if current is not None and current not in known:
        raise SchemaOutOfDate(
            f"database schema is at {current}, which this code does not know (it needs {head}): "
            "upgrade Vantage, or point it at another database",
            current=current,
            head=head,
        )
    raise SchemaOutOfDate(
        f"database schema is at {shown}, code needs {head}: run `vantage db upgrade`", current=current, head=head
    )


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: ``BEGIN IMMEDIATE`` on SQLite (the write lock is taken at once)."""
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_TX: True})
        async with conn.begin():
            yield conn


async def ensure_schema(engine: AsyncEngine, *, auto_upgrade_empty: bool = True) -> str:
    """Check (and for an empty database, create) the schema. Returns the revision. Raises SchemaOutOfDate."""
    async with write_transaction(engine) as conn:
        current, _head = await conn.run_sync(lambda c: _check_sync(c, auto_upgrade_empty=auto_upgrade_empty))
    assert current is not None
    return current


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str]:
    """Run the migrations up to ``revision``. Returns (revision before, revision after)."""
    async with write_transaction(engine) as conn:
        before = await conn.run_sync(_current_revision)
        await conn.run_sync(lambda c: _upgrade_sync(c, revision))
        after = await conn.run_sync(_current_revision)
    assert after is not None
    return before, after


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision)
