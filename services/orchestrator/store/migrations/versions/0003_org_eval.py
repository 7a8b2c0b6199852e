"""AI visibility (org evaluation): orgs, questions, question_runs, provider_batches, org_evals, org_competitors,
org_citations.

Revision ID: 0003_org_eval
Revises: 0002_response_cache
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_org_eval"
down_revision = "0002_response_cache"
branch_labels = None
depends_on = None

Usd = sa.Numeric(24, 10, asdecimal=False)
Ts = sa.DateTime(timezone=True)


def _fk_item(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["item_id"], ["run_items.id"], name=f"fk_{table}_item_id_run_items", ondelete="CASCADE"
    )


def _fk_run(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False, server_default=""),
        sa.Column("name_variations", sa.JSON(), nullable=False),
        sa.Column("variations_model", sa.Text(), nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orgs"),
        sa.UniqueConstraint("key", name="uq_orgs_key"),
    )

    op.create_table(
        "questions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_questions"),
        _fk_run("questions"),
        sa.UniqueConstraint("run_id", "seq", name="uq_questions_run_id_seq"),
    )

    op.create_table(
        "question_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("question_id", sa.String(36), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("location", sa.String(8), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("answer_markdown", sa.Text(), nullable=True),
        sa.Column("answer_text", sa.Text(), nullable=True),
        sa.Column("citations", sa.JSON(), nullable=True),
        sa.Column("search_queries", sa.JSON(), nullable=True),
        sa.Column("snapshot_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("cost_usd", Usd, nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("web_search_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cached", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("answered_at", Ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_question_runs"),
        _fk_item("question_runs"),
        _fk_run("question_runs"),
        sa.ForeignKeyConstraint(
            ["question_id"], ["questions.id"], name="fk_question_runs_question_id_questions", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("item_id", name="uq_question_runs_item_id"),
        sa.UniqueConstraint(
            "run_id", "question_id", "model", "location", name="uq_question_runs_run_question_model_loc"
        ),
    )
    op.create_index("ix_question_runs_snapshot_id", "question_runs", ["snapshot_id"])

    op.create_table(
        "provider_batches",
        sa.Column("snapshot_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("location", sa.String(8), nullable=False, server_default=""),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("member_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("snapshot_id", name="pk_provider_batches"),
        _fk_run("provider_batches"),
    )
    op.create_index("ix_provider_batches_run_id", "provider_batches", ["run_id"])

    op.create_table(
        "org_evals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("mentioned", sa.Boolean(), nullable=False),
        sa.Column("mention_count", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("first_offset", sa.Integer(), nullable=False),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False, server_default=""),
        sa.Column("owned_citation_count", sa.Integer(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_org_evals"),
        _fk_item("org_evals"),
        _fk_run("org_evals"),
        sa.UniqueConstraint("item_id", name="uq_org_evals_item_id"),
    )
    op.create_index("ix_org_evals_run_id", "org_evals", ["run_id"])

    op.create_table(
        "org_competitors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("mention_count", sa.Integer(), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_org_competitors"),
        _fk_item("org_competitors"),
        _fk_run("org_competitors"),
        sa.UniqueConstraint("item_id", "name", name="uq_org_competitors_item_id_name"),
    )
    op.create_index("ix_org_competitors_run_id", "org_competitors", ["run_id"])

    op.create_table(
        "org_citations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("owned", sa.Boolean(), nullable=False),
        sa.Column("competitor", sa.Boolean(), nullable=False),
        sa.Column("competitor_name", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_org_citations"),
        _fk_item("org_citations"),
        _fk_run("org_citations"),
        sa.UniqueConstraint("item_id", "url", name="uq_org_citations_item_id_url"),
    )
    op.create_index("ix_org_citations_run_id", "org_citations", ["run_id"])


def downgrade() -> None:
    for table in (
        "org_citations", "org_competitors", "org_evals", "provider_batches", "question_runs", "questions", "orgs",
    ):
        op.drop_table(table)
