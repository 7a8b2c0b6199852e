"""Records of keyed search calls and the search replicas' watermarks (issue 17: the orchestrator's reaper settles a
killed worker's search rows from them; shared/call_records.py holds the contract).

Revision ID: s0001_call_records
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001_call_records"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_call_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),  # the caller's key (a ledger row's)
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # answered | failed | not_sent
        sa.Column("credits", sa.Integer(), nullable=False),  # Tavily credits this RPC billed
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("uncertain", sa.Integer(), nullable=False),  # Tavily requests sent, outcome unknown
        sa.Column("started_at", sa.Float(), nullable=False),  # Unix s
        sa.Column("finished_at", sa.Float(), nullable=False),  # Unix s
        sa.PrimaryKeyConstraint("id", name="pk_search_call_records"),
    )
    op.create_index("ix_search_call_records_key", "search_call_records", ["idempotency_key"])
    op.create_index("ix_search_call_records_finished_at", "search_call_records", ["finished_at"])
    op.create_table(
        "search_replicas",
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),  # last flush or heartbeat
        sa.Column("watermark", sa.Float(), nullable=False),  # every keyed call started before it is recorded
        sa.Column("stopped_at", sa.Float(), nullable=True),  # clean stop: every call taken is recorded
        sa.PrimaryKeyConstraint("replica", name="pk_search_replicas"),
    )


def downgrade() -> None:
    op.drop_table("search_replicas")
    op.drop_index("ix_search_call_records_finished_at", table_name="search_call_records")
    op.drop_index("ix_search_call_records_key", table_name="search_call_records")
    op.drop_table("search_call_records")
