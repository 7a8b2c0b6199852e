"""The orchestrator's database: engines (:mod:`shared.db.engine`, plus the crash-test hook), its Alembic chain
(migrations configured in code, no alembic.ini; version table ``alembic_version``) and the start-up schema check.

Policy at start-up (:func:`ensure_schema`, :class:`shared.db.MigrationChain`): a database where none of the
orchestrator's tables exist yet is upgraded to the head revision automatically (another service's tables — the
inference service's response cache — do not count); a database at an older revision is refused with one line
telling the user to run ``vantage db upgrade`` (:class:`SchemaOutOfDate`); a database at a revision this code does
not know (newer code migrated it) is refused too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.orchestrator.store.models import metadata
from shared.db import (
    PG_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    SQLITE_BUSY_TIMEOUT_MS,
    WRITE_TX,
    MigrationChain,
    SchemaOutOfDate,
    display_url,
    is_sqlite,
    normalise_url,
    write_transaction,
)
from shared.db import create_engine as _shared_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: pg_advisory_xact_lock key that serialises concurrent schema upgrades (several workers starting at once).
_PG_MIGRATION_LOCK = 0x56414E54  # "VANT"
#: ``Connection.info`` key counting the item completions written by the current transaction (see
#: :func:`install_crash_hook`).
COMPLETIONS_KEY = "vantage_completions"
#: Crash-test hook (inert unless set): ``"N:/path/marker"`` — right before the COMMIT of the N-th transaction of this
#: process that completes items, write ``/path/marker`` (JSON: pid, completions in the transaction) and freeze, so
#: that the test can SIGKILL the process inside a database commit.
CRASH_HOOK_ENV = "VANTAGE_TEST_PAUSE_BEFORE_COMMIT"


#: The orchestrator's migration chain.
CHAIN = MigrationChain(
    script_location=MIGRATIONS_DIR,
    version_table="alembic_version",
    lock_key=_PG_MIGRATION_LOCK,
    owned_tables=lambda: list(metadata.tables),
    upgrade_hint="vantage db upgrade",
)

__all__ = [
    "CHAIN",
    "COMPLETIONS_KEY",
    "CRASH_HOOK_ENV",
    "MIGRATIONS_DIR",
    "PG_IDLE_IN_TRANSACTION_TIMEOUT_MS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITE_TX",
    "SchemaOutOfDate",
    "alembic_config",
    "create_engine",
    "current_revision",
    "display_url",
    "ensure_schema",
    "head_revision",
    "install_crash_hook",
    "is_sqlite",
    "normalise_url",
    "upgrade",
    "write_transaction",
]


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """:func:`shared.db.create_engine` with the crash-test hook (:func:`install_crash_hook`, inert unless set)."""
    engine = _shared_engine(url, pool_size=pool_size)
    install_crash_hook(engine)
    return engine


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
    """Alembic configured in code: the orchestrator's migrations directory; ``connection`` handed to ``env.py``."""
    return CHAIN.config(connection)


def head_revision() -> str:
    """The newest migration revision this code ships."""
    return CHAIN.head_revision()


async def ensure_schema(engine: AsyncEngine, *, auto_upgrade_empty: bool = True) -> str:
    """Check (and for a database without the orchestrator's tables, create) the schema. Returns the revision.
    Raises SchemaOutOfDate."""
    return await CHAIN.ensure_schema(engine, auto_upgrade_empty=auto_upgrade_empty)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str]:
    """Run the migrations up to ``revision``. Returns (revision before, revision after)."""
    return await CHAIN.upgrade(engine, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    return await CHAIN.current_revision(engine)
