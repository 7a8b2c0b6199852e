"""Re-running an ORG_EVAL over the Bright Data models (chatgpt, perplexity) is served from the inference service's
response cache: no snapshot is triggered (counted at the sandbox), the run costs $0, its question runs are marked
cached, and the report counts them as cache hits; ``no_cache`` asks Bright Data again. Real inference and extraction
services on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from eval_testkit import QUESTIONS, rows, scalar

from services.orchestrator.app.jobs.evaluation import create_eval_run, read_questions
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.reports.visibility import build_report, report_dict
from services.orchestrator.store import Store
from shared.config import Settings

pytestmark = pytest.mark.integration

MODELS = ["chatgpt", "perplexity"]
LOCATIONS = ["US", "GB"]


async def _run(orch: Orchestrator, questions: list[str], *, no_cache: bool = False) -> str:
    run, report = await create_eval_run(
        orch, org_name="Together AI", org_domain="together.ai", questions=questions, models=MODELS,
        locations=LOCATIONS, known_competitors=["CoreWeave", "Lambda"], no_cache=no_cache,
    )
    assert report.items == len(questions) * 4
    summary = await orch.execute(run.id)
    assert summary.run.status == "completed", summary.run.error
    assert summary.totals.counts["done"] == report.items
    return run.id


async def test_cache_bd_rerun_of_an_evaluation_triggers_nothing_and_costs_nothing(
    eval_env: tuple[Settings, Store, Orchestrator], counters
) -> None:
    settings, store, orch = eval_env
    questions = read_questions(QUESTIONS)[:5]

    t0 = counters.triggers()
    first = await _run(orch, questions)
    t1 = counters.triggers()
    assert (t1["chatgpt"] - t0["chatgpt"], t1["perplexity"] - t0["perplexity"]) == (2, 2)
    rep1 = await build_report(store, first)
    assert rep1.totals.cost_usd >= 20 * settings.brightdata_record_usd
    assert rep1.overall.cached == 0 and rep1.snapshots == 4
    assert rep1.cache_line().startswith("Answers: 20 total, 0 cache hits ($0), 20 newly asked, 0 failed")

    second = await _run(orch, questions)
    t2 = counters.triggers()
    assert t2 == t1  # not one Bright Data trigger
    rep2 = await build_report(store, second)
    assert rep2.totals.cost_usd == 0
    assert sum(r["usd"] for r in await store.ledger_rows(second)) == 0
    assert rep2.snapshots == 0 and rep2.overall.cached == 20 and rep2.overall.answers == 20
    assert rep2.cache_line().startswith("Answers: 20 total, 20 cache hits ($0), 0 newly asked, 0 failed")
    assert report_dict(rep2)["summary"]["cache_hits"] == 20
    qr = await rows(store, "SELECT cached, snapshot_id, cost_usd FROM question_runs WHERE run_id = :r", r=second)
    assert len(qr) == 20 and all(bool(c) and not s and u == 0 for c, s, u in qr)
    # Same answers, so the same evaluations as the first run.
    assert rep2.overall.mentioned == rep1.overall.mentioned
    assert rep2.overall.citations == rep1.overall.citations
    assert await scalar(store, "SELECT count(*) FROM provider_batches WHERE run_id = :r", r=second) == 0

    third = await _run(orch, questions, no_cache=True)
    t3 = counters.triggers()
    assert (t3["chatgpt"] - t2["chatgpt"], t3["perplexity"] - t2["perplexity"]) == (2, 2)
    rep3 = await build_report(store, third)
    assert rep3.overall.cached == 0 and rep3.snapshots == 4
    scraped = sum(r["usd"] for r in await store.ledger_rows(third) if r["unit_type"] == "records")
    assert scraped == pytest.approx(20 * settings.brightdata_record_usd)
