"""Alembic environment. Configured in code by :func:`services.orchestrator.store.db.alembic_config`, which hands
over an open (synchronous) connection in ``config.attributes["connection"]``; there is no alembic.ini and no
offline mode. ``render_as_batch`` lets the same migrations alter tables on SQLite (copy-and-move)."""

from __future__ import annotations

from alembic import context

from services.orchestrator.store.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through a hand-written alembic.ini
    raise RuntimeError("run migrations through `vantage db upgrade` (services.orchestrator.store.db.upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
