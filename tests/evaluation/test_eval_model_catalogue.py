"""The model catalogue in ORG_EVAL runs (REAL inference and extraction services, sandbox providers, SQLite and
PostgreSQL): an unknown model's answers are billed with ``cost_estimated`` ledger rows, a catalogued model's are
not; a retired model is refused before any run exists (INVALID_ARGUMENT naming the field and the successor)."""

from __future__ import annotations

import pytest
from eval_testkit import QUESTIONS, rows

from services.orchestrator.app.jobs.evaluation import check_models, create_eval_run, read_questions
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.store import Store
from shared.config import Settings
from shared.errors import InvalidArgument

pytestmark = pytest.mark.integration


async def test_unknown_model_answers_are_billed_as_estimates(eval_env: tuple[Settings, Store, Orchestrator]) -> None:
    _, store, orch = eval_env
    run, _ = await create_eval_run(
        orch, samples=1, org_name="Together AI", org_domain="together.ai", questions=read_questions(QUESTIONS)[:2],
        models=["gpt-5.5", "gpt-house-tuned"], locations=["US"],
    )
    summary = await orch.execute(run.id)
    assert summary.run.status == "completed" and summary.totals.counts["done"] == 4, summary.run.error
    billed = await rows(store, "SELECT q.model, l.cost_estimated, l.usd FROM cost_ledger l "
                               "JOIN question_runs q ON q.item_id = l.item_id WHERE l.kind = 'llm'")
    assert sorted((m, bool(e), float(usd) > 0) for m, e, usd in billed) == [
        ("gpt-5.5", False, True), ("gpt-5.5", False, True), ("gpt-house-tuned", True, True),
        ("gpt-house-tuned", True, True)]


async def test_a_retired_model_is_refused_before_the_run_exists(
    eval_env: tuple[Settings, Store, Orchestrator],
) -> None:
    _, _, orch = eval_env
    with pytest.raises(InvalidArgument) as info:
        await check_models(orch, ["gpt-5.5", "claude-sonnet-4"], field="models")
    assert info.value.violations[0][0] == "models"
    assert "retired on 2026-06-15" in info.value.message and "use claude-sonnet-5" in info.value.message
