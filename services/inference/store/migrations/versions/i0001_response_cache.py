"""Response cache: response_cache (content-hash key → answer JSON, optional expiry) — created, or adopted.

Until the inference service had its own chain, the orchestrator's migration 0002_response_cache created this table.
On such a database the table (and its rows) is adopted as it is: it has exactly this shape. A downgrade drops it
(with the cached answers: they can be bought again).

Revision ID: i0001_response_cache
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0001_response_cache"
down_revision = None
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("response_cache"):
        return  # created by the orchestrator's 0002_response_cache before the move: adopt it, rows kept
    op.create_table(
        "response_cache",
        # sha256 (hex) of the canonical JSON of everything that determines the answer (services/inference/cache.py)
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),  # the answer as JSON
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("expires_at", Ts, nullable=True),  # NULL = never expires
        sa.PrimaryKeyConstraint("key", name="pk_response_cache"),
    )


def downgrade() -> None:
    op.drop_table("response_cache")
