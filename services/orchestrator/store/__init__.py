"""The orchestrator's durable state: SQLAlchemy 2 async engine (SQLite via aiosqlite, PostgreSQL via psycopg 3),
Alembic migrations, and :class:`~services.orchestrator.store.repo.Store` with every query."""

from services.orchestrator.store.db import (
    SchemaOutOfDate,
    create_engine,
    ensure_schema,
    head_revision,
    normalise_url,
    upgrade,
)
from services.orchestrator.store.repo import (
    ClaimedItem,
    ClassificationRecord,
    EventRow,
    IngestReport,
    ItemView,
    RunRow,
    RunTotals,
    SearchRecord,
    Store,
    open_store,
)

__all__ = [
    "ClaimedItem",
    "ClassificationRecord",
    "EventRow",
    "IngestReport",
    "ItemView",
    "RunRow",
    "RunTotals",
    "SchemaOutOfDate",
    "SearchRecord",
    "Store",
    "create_engine",
    "ensure_schema",
    "head_revision",
    "normalise_url",
    "open_store",
    "upgrade",
]
