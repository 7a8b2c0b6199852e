"""Bright Data trigger intents: brightdata_trigger_intents (one row per trigger, shared by the replicas) — created,
or adopted.

Before this migration the running service created the table itself (``create_all`` in
services/inference/trigger_intents.py). On such a database the table (and its rows) is adopted as it is: it has the
same columns and index. A downgrade drops it (intents are only read within a failed trigger's own call).

Revision ID: i0002_brightdata_trigger_intents
Revises: i0001_response_cache
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0002_brightdata_trigger_intents"
down_revision = "i0001_response_cache"
branch_labels = None
depends_on = None

TABLE = "brightdata_trigger_intents"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(TABLE):
        return  # made by the service's former create_all: adopt it, rows kept
    op.create_table(
        TABLE,
        sa.Column("intent_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("prompts_sha256", sa.String(64), nullable=False),  # SHA-256 (hex) of the prompts as JSON
        sa.Column("inputs", sa.Integer(), nullable=False),
        sa.Column("began_at", sa.Float(), nullable=False),  # Unix s
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("snapshot_id", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),  # Unix s
        sa.PrimaryKeyConstraint("intent_id", name="pk_brightdata_trigger_intents"),
        # One intent per snapshot: two replicas never adopt the same one.
        sa.UniqueConstraint("snapshot_id", name="uq_brightdata_trigger_intents_snapshot_id"),
    )
    op.create_index("ix_brightdata_trigger_intents_dataset_began", TABLE, ["dataset_id", "began_at"])


def downgrade() -> None:
    op.drop_index("ix_brightdata_trigger_intents_dataset_began", table_name=TABLE)
    op.drop_table(TABLE)
