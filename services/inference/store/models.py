"""Tables of the inference service (SQLAlchemy Core, its own ``MetaData``): the response cache, the Bright Data
trigger intents, and the Bright Data 429 budget shared by the replicas (its 429s and its members).

The schema is created and changed only by the inference service's Alembic chain (``migrations/versions``, version
table ``alembic_version_inference``); these ``Table`` objects are what the queries are written against, and a test
checks that both agree. Timestamps are UTC. No other service reads or writes these tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

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

#: Bright Data 429s of every replica (services/inference/shared_budget.py): one row per HTTP 429 received, so every
#: replica sharing a token counts them in one sliding window (Bright Data blocks an IP at 25 429s in 5 minutes:
#: /work/shared/reference/providers-2026-12.md). ``budget_key`` = SHA-256 (hex, first 32) of the token, never the token;
#: ``at`` and ``paused_until`` (the pause that 429 asks every replica for) are Unix seconds. Read by one indexed count
#: on ``(budget_key, at)``.
brightdata_429s = Table(
    "brightdata_429s",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("budget_key", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("paused_until", Float, nullable=False),
    Column("replica", String(255), nullable=False),
    Index("ix_brightdata_429s_budget_at", "budget_key", "at"),
)

#: Replicas sharing a Bright Data 429 budget, with their last heartbeat (Unix s): each replica's share of the calls in
#: flight is ``budget // live replicas`` (services/inference/shared_budget.py).
brightdata_budget_replicas = Table(
    "brightdata_budget_replicas",
    metadata,
    Column("budget_key", String(64), primary_key=True),
    Column("replica", String(255), primary_key=True),
    Column("seen_at", Float, nullable=False),
)
