"""Durable runs: a run-level heartbeat, a cooperative cancel flag and a worker queue flag on ``runs``; the attempt
(fencing token) of every cost-ledger row; indexes for the lease reaper and the heartbeat.

- ``runs.heartbeat_at``: renewed about once a second by every process executing the run; older than the lease means
  nobody executes it (a crashed CLI or worker), so ``vantage worker`` processes may take it over.
- ``runs.cancel_requested``: CancelRun sets it; whoever executes the run (another process included) stops claiming,
  cancels in-flight calls and releases its items.
- ``runs.detached``: the run is queued for workers (``--detach``, StartRun/ResumeRun ``detach``).
- ``cost_ledger.attempt``: the item attempt that made the call, so that the calls of superseded attempts (repeats
  after a crash) can be counted; ledger rows also get the status ``abandoned`` (no schema change: a string).

Revision ID: 0004_durable_runs
Revises: 0003_org_eval
Create Date: 2025-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_durable_runs"
down_revision = "0003_org_eval"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("heartbeat_at", Ts, nullable=True))
        b.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default="0"))
        b.add_column(sa.Column("detached", sa.Boolean(), nullable=False, server_default="0"))
    with op.batch_alter_table("cost_ledger") as b:
        b.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
    op.create_index("ix_run_items_status_lease", "run_items", ["status", "lease_expires_at"])
    op.create_index("ix_run_items_lease_owner", "run_items", ["lease_owner"])


def downgrade() -> None:
    op.drop_index("ix_run_items_lease_owner", table_name="run_items")
    op.drop_index("ix_run_items_status_lease", table_name="run_items")
    with op.batch_alter_table("cost_ledger") as b:
        b.drop_column("attempt")
    with op.batch_alter_table("runs") as b:
        b.drop_column("detached")
        b.drop_column("cancel_requested")
        b.drop_column("heartbeat_at")
