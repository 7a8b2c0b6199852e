"""Formerly: the inference service's response cache (table response_cache). Now a no-op kept for the revision chain.

The table belongs to the inference service, whose own migration chain (services/inference/store/migrations,
version table ``alembic_version_inference``) creates it on a new database and adopts it — rows kept — on a
database where this revision created it before. So neither direction touches the table here: a downgrade of the
orchestrator never drops the inference service's data.

Revision ID: 0002_response_cache
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

revision = "0002_response_cache"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
