"""Tables of the inference service (SQLAlchemy Core, its own ``MetaData``): the response cache.

The schema is created and changed only by the inference service's Alembic chain (``migrations/versions``, version
table ``alembic_version_inference``); these ``Table`` objects are what the queries are written against, and a test
checks that both agree. Timestamps are UTC. No other service reads or writes these tables.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

# Deterministic constraint names (same convention as the orchestrator's), so migrations can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Response cache (services/inference/cache.py): one row per distinct request, keyed by the sha256 (hex) of its
#: canonical JSON; ``response`` is the answer as JSON; ``expires_at`` NULL = never expires.
response_cache = Table(
    "response_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("model", Text, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
)
