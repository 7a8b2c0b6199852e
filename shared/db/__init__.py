"""Database code every service shares: engines and URLs (:mod:`shared.db.engine`), the transient-error
classification (:mod:`shared.db.retry`) and per-service Alembic chains in one database (:mod:`shared.db.migrations`).
No service's tables live here: each service declares its own metadata and migrations."""

from shared.db.engine import (
    PG_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    SQLITE_BUSY_TIMEOUT_MS,
    WRITE_TX,
    create_engine,
    display_url,
    is_sqlite,
    normalise_url,
    write_transaction,
)
from shared.db.migrations import MigrationChain, SchemaOutOfDate, run_env
from shared.db.retry import is_transient

__all__ = [
    "PG_IDLE_IN_TRANSACTION_TIMEOUT_MS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITE_TX",
    "MigrationChain",
    "SchemaOutOfDate",
    "create_engine",
    "display_url",
    "is_sqlite",
    "is_transient",
    "normalise_url",
    "run_env",
    "write_transaction",
]
