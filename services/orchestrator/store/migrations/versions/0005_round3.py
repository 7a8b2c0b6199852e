"""Round 3: input completeness of runs (hardening), Bright Data retrieved-vs-cited sources per answer, and the
estimated-cost flag of ledger rows (model catalogue).

Each block below belongs to one change; keep them independent so any of them can be read alone.

Revision ID: 0005_round3
Revises: 0004_durable_runs
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_round3"
down_revision = "0004_durable_runs"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    # --- hardening (#11): upgrade ---
    # runs.input_complete: false while a run's input is being stored; a run left so (its load was interrupted) is
    # refused by resume and by workers. Runs created before this revision had their input stored whole.
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("input_complete", sa.Boolean(), nullable=False, server_default="1"))
    # --- end hardening (#11): upgrade ---
    # --- bright data sources (#18): upgrade ---
    # question_runs.web_search_triggered: the Bright Data record's flag (NULL = the provider does not say);
    # question_runs.links_attached: links the answer showed but does not cite, [{url, title}] (retrieved vs cited).
    with op.batch_alter_table("question_runs") as b:
        b.add_column(sa.Column("web_search_triggered", sa.Boolean(), nullable=True))
        b.add_column(sa.Column("links_attached", sa.JSON(), nullable=True))
    # --- end bright data sources (#18): upgrade ---
    # --- model catalogue (#18): upgrade ---
    # cost_ledger.cost_estimated: the row's USD is an estimate (its model is missing from the model catalogue,
    # priced at VANTAGE_DEFAULT_TOKEN_PRICES), not a list price. Rows written before this revision: false.
    with op.batch_alter_table("cost_ledger") as b:
        b.add_column(sa.Column("cost_estimated", sa.Boolean(), nullable=False, server_default="0"))
    # --- end model catalogue (#18): upgrade ---
    pass


def downgrade() -> None:
    # --- model catalogue (#18): downgrade ---
    with op.batch_alter_table("cost_ledger") as b:
        b.drop_column("cost_estimated")
    # --- end model catalogue (#18): downgrade ---
    # --- bright data sources (#18): downgrade ---
    with op.batch_alter_table("question_runs") as b:
        b.drop_column("links_attached")
        b.drop_column("web_search_triggered")
    # --- end bright data sources (#18): downgrade ---
    # --- hardening (#11): downgrade ---
    with op.batch_alter_table("runs") as b:
        b.drop_column("input_complete")
    # --- end hardening (#11): downgrade ---
    pass
