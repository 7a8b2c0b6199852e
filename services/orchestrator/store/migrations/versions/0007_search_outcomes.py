"""Search rows of unknown outcome settled from the search service's records (issue 17): cost_ledger.unsettled_since.

A search's pending ledger row is committed before the call (issue 16: the rows of a claim share one transaction). When
its attempt cannot record the outcome — its worker was killed (the row is abandoned) or the call ended in a deadline
or a cancel — the row is marked with the time from which the reaper settles it from ``search_call_records`` (the
search service's chain, shared/call_records.py): exact when the search replicas recorded past it, the upper bound
(its known price, ``cost_estimated``) when a replica died with the outcome. A partial index holds only the marked
rows, so writing an item's rows costs nothing more.

Revision ID: 0007_search_outcomes
Revises: 0006_round4
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_search_outcomes"
down_revision = "0006_round4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cost_ledger") as b:
        b.add_column(sa.Column("unsettled_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_cost_ledger_unsettled", "cost_ledger", ["unsettled_since"],
                    postgresql_where=sa.text("unsettled_since IS NOT NULL"),
                    sqlite_where=sa.text("unsettled_since IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_cost_ledger_unsettled", table_name="cost_ledger")
    with op.batch_alter_table("cost_ledger") as b:
        b.drop_column("unsettled_since")
