"""Response cache of the inference service: response_cache (content-hash key → answer JSON, optional expiry).

Revision ID: 0002_response_cache
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_response_cache"
down_revision = "0001"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
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
