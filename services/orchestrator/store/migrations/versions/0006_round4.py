"""Round 4 (AI visibility as a measurement, issue 14): repeated samples and sweeps, scheduled sweeps, the source
funnel and the model version of each answer.

Each block below belongs to one change; keep them independent so any of them can be read alone.

Revision ID: 0006_round4
Revises: 0005_round3
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_round4"
down_revision = "0005_round3"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    # --- samples and sweeps (#14): upgrade ---
    # --- end samples and sweeps (#14): upgrade ---
    # --- schedules (#14): upgrade ---
    # --- end schedules (#14): upgrade ---
    # --- source funnel (#14): upgrade ---
    # --- end source funnel (#14): upgrade ---
    pass


def downgrade() -> None:
    # --- source funnel (#14): downgrade ---
    # --- end source funnel (#14): downgrade ---
    # --- schedules (#14): downgrade ---
    # --- end schedules (#14): downgrade ---
    # --- samples and sweeps (#14): downgrade ---
    # --- end samples and sweeps (#14): downgrade ---
    pass
