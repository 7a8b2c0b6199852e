"""Tables of the inference service (SQLAlchemy Core, its own ``MetaData``): the response cache and the Bright Data
trigger intents.

The schema is created and changed only by the inference service's Alembic chain (``migrations/versions``, version
table ``alembic_version_inference``); these ``Table`` objects are what the queries are written against, and a test
checks that both agree. Timestamps are UTC. No other service reads or writes these tables.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

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

#: Bright Data trigger intents (services/inference/trigger_intents.py), shared by every inference replica: one row per
#: trigger, recorded before it is sent. ``prompts_sha256`` = SHA-256 (hex) of the prompts as JSON; ``began_at`` and
#: ``updated_at`` are Unix seconds; ``state`` one of ``trigger_intents.STATES``; ``snapshot_id`` (Bright Data's id)
#: is UNIQUE so two intents never hold the same snapshot.
brightdata_trigger_intents = Table(
    "brightdata_trigger_intents",
    metadata,
    Column("intent_id", String(36), primary_key=True),
    Column("dataset_id", String(64), nullable=False),
    Column("prompts_sha256", String(64), nullable=False),
    Column("inputs", Integer, nullable=False),
    Column("began_at", Float, nullable=False),
    Column("replica", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("snapshot_id", String(128), nullable=True, unique=True),
    Column("updated_at", Float, nullable=False),
    Index("ix_brightdata_trigger_intents_dataset_began", "dataset_id", "began_at"),
)
