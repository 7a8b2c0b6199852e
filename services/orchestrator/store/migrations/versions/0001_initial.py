"""Initial schema: runs, run_items, search_results, classifications, cost_ledger, run_events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Usd = sa.Numeric(24, 10, asdecimal=False)
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("input_path", sa.Text(), nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("started_at", Ts, nullable=True),
        sa.Column("finished_at", Ts, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    op.create_table(
        "run_items",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("company", sa.Text(), nullable=False, server_default=""),
        sa.Column("domain", sa.Text(), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", Ts, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("updated_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_items"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_items_run_id_runs", ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "key", name="uq_run_items_run_id_key"),
    )
    op.create_index("ix_run_items_run_status_seq", "run_items", ["run_id", "status", "seq"])
    op.create_index("ix_run_items_run_seq", "run_items", ["run_id", "seq"])

    op.create_table(
        "search_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("returned_count", sa.Integer(), nullable=False),
        sa.Column("kept_count", sa.Integer(), nullable=False),
        sa.Column("filtered_out_count", sa.Integer(), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("cost_usd", Usd, nullable=False),
        sa.Column("urls", sa.JSON(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_search_results"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["run_items.id"], name="fk_search_results_item_id_run_items", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("item_id", name="uq_search_results_item_id"),
    )

    op.create_table(
        "classifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("evidence_urls", sa.JSON(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", Usd, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_classifications"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["run_items.id"], name="fk_classifications_item_id_run_items", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("item_id", name="uq_classifications_item_id"),
    )

    op.create_table(
        "cost_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("item_id", sa.String(36), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("unit_type", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("usd", Usd, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cost_ledger"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_cost_ledger_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["run_items.id"], name="fk_cost_ledger_item_id_run_items", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_cost_ledger_idempotency_key"),
    )
    op.create_index("ix_cost_ledger_run_id", "cost_ledger", ["run_id"])

    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("item_id", sa.String(36), nullable=True),
        sa.Column("item_key", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_events_run_id_runs", ondelete="CASCADE"),
    )


def downgrade() -> None:
    for table in ("run_events", "cost_ledger", "classifications", "search_results", "run_items", "runs"):
        op.drop_table(table)
