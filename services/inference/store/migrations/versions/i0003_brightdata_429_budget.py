"""Bright Data 429 budget shared by the replicas: brightdata_429s (one row per 429 received, any replica) and
brightdata_budget_replicas (the replicas sharing a token's budget, with their heartbeat).

Bright Data blocks an IP that receives 25 or more HTTP 429s within 5 minutes (/work/shared/reference/
providers-2026-12.md, docs.brightdata.com/products/scrapers/error-codes); replicas sharing one token (and one egress
IP) must count their 429s together (issue 17). A downgrade drops both tables: they only hold the last window.

Revision ID: i0003_brightdata_429_budget
Revises: i0002_brightdata_trigger_intents
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0003_brightdata_429_budget"
down_revision = "i0002_brightdata_trigger_intents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brightdata_429s",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("budget_key", sa.String(64), nullable=False),  # SHA-256 (hex, first 32) of the token
        sa.Column("at", sa.Float(), nullable=False),  # Unix s the 429 was received
        sa.Column("paused_until", sa.Float(), nullable=False),  # Unix s every replica waits until
        sa.Column("replica", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_brightdata_429s"),
    )
    # The one query of a decision counts the window's rows of one budget: (budget_key, at) answers it from the index.
    op.create_index("ix_brightdata_429s_budget_at", "brightdata_429s", ["budget_key", "at"])
    op.create_table(
        "brightdata_budget_replicas",
        sa.Column("budget_key", sa.String(64), nullable=False),
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),  # Unix s of the replica's last heartbeat
        sa.PrimaryKeyConstraint("budget_key", "replica", name="pk_brightdata_budget_replicas"),
    )


def downgrade() -> None:
    op.drop_table("brightdata_budget_replicas")
    op.drop_index("ix_brightdata_429s_budget_at", table_name="brightdata_429s")
    op.drop_table("brightdata_429s")
