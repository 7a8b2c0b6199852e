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
    # question_runs.sample: the repeat (0-based) of a question × model × location within its run, part of the
    # unique key (rows before this revision are sample 0: one ask each); question_runs.model_version: the model as
    # the provider reported it for the answer; question_runs.reused_from_run: the earlier sweep an answer was
    # copied from (--reuse-answers / vantage reextract), NULL when it was asked in this run.
    with op.batch_alter_table("question_runs") as b:
        b.add_column(sa.Column("sample", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("model_version", sa.Text(), nullable=True))
        b.add_column(sa.Column("reused_from_run", sa.String(36), nullable=True))
        b.drop_constraint("uq_question_runs_run_question_model_loc", type_="unique")
        b.create_unique_constraint("uq_question_runs_run_question_model_loc",
                                   ["run_id", "question_id", "model", "location", "sample"])
    # --- end samples and sweeps (#14): upgrade ---
    # --- schedules (#14): upgrade ---
    # schedules: a recurring evaluation sweep (`vantage schedule add`): the org, the questions' content (not a path:
    # any worker can start it), the matrix, the period in seconds and its anchor (period p is due from
    # anchor_at + p × every_seconds). schedule_sweeps: one row per started period, claimed by the worker that
    # starts it (the primary key makes the start exactly-once); run_id is the sweep's evaluation run.
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("org_name", sa.Text(), nullable=False),
        sa.Column("org_domain", sa.Text(), nullable=False, server_default=""),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("locations", sa.JSON(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("every_seconds", sa.Integer(), nullable=False),
        sa.Column("anchor_at", Ts, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.CheckConstraint("every_seconds > 0", name="ck_schedules_every_seconds_positive"),
    )
    op.create_table(
        "schedule_sweeps",
        sa.Column("schedule_id", sa.String(36), sa.ForeignKey("schedules.id", ondelete="CASCADE",
                                                              name="fk_schedule_sweeps_schedule_id_schedules"),
                  nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="SET NULL",
                                                         name="fk_schedule_sweeps_run_id_runs"), nullable=True),
        sa.Column("started_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "period", name="pk_schedule_sweeps"),
    )
    op.create_index("ix_schedule_sweeps_run_id", "schedule_sweeps", ["run_id"])
    # --- end schedules (#14): upgrade ---
    # --- source funnel (#14): upgrade ---
    # --- end source funnel (#14): upgrade ---
    pass


def downgrade() -> None:
    # --- source funnel (#14): downgrade ---
    # --- end source funnel (#14): downgrade ---
    # --- schedules (#14): downgrade ---
    op.drop_index("ix_schedule_sweeps_run_id", table_name="schedule_sweeps")
    op.drop_table("schedule_sweeps")
    op.drop_table("schedules")
    # --- end schedules (#14): downgrade ---
    # --- samples and sweeps (#14): downgrade ---
    # Only sample 0 of each question × model × location survives a downgrade (the older key has no sample).
    op.execute("DELETE FROM run_items WHERE id IN (SELECT item_id FROM question_runs WHERE sample > 0)")
    op.execute("DELETE FROM question_runs WHERE sample > 0")  # SQLite without foreign_keys does not cascade
    with op.batch_alter_table("question_runs") as b:
        b.drop_constraint("uq_question_runs_run_question_model_loc", type_="unique")
        b.create_unique_constraint("uq_question_runs_run_question_model_loc",
                                   ["run_id", "question_id", "model", "location"])
        b.drop_column("reused_from_run")
        b.drop_column("model_version")
        b.drop_column("sample")
    # --- end samples and sweeps (#14): downgrade ---
    pass
