"""Sweeps over the Bright Data models (chatgpt, perplexity) and the inference service's response cache (issue 14):
a second sweep is a new measurement — it triggers its own snapshots and pays for its records (the cache is scoped
to a sweep) —, while a sweep started with ``reuse_answers`` copies the earlier sweep's answers: no snapshot is
triggered (counted at the sandbox), the run costs $0, its question runs are marked cached and reused, and the report
counts them as cache hits; ``no_cache`` asks Bright Data again too. Real inference and extraction services on
loopback, SQLite and PostgreSQL."""

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


async def _run(orch: Orchestrator, questions: list[str], *, no_cache: bool = False, reuse: str = "") -> str:
    run, report = await create_eval_run(
        orch, samples=1, org_name="Together AI", org_domain="together.ai", questions=questions, models=MODELS,
        locations=LOCATIONS, known_competitors=["CoreWeave", "Lambda"], no_cache=no_cache, reuse_answers=reuse,
    )
    assert report.items == len(questions) * 4
    summary = await orch.execute(run.id)
    assert summary.run.status == "completed", summary.run.error
    assert summary.totals.counts["done"] == report.items
    return run.id


async def test_cache_bd_second_sweep_asks_again_and_reuse_answers_costs_nothing(
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

    # A second sweep is a new measurement: the response cache is scoped to a sweep, so Bright Data is asked again.
    again = await _run(orch, questions)
    t_again = counters.triggers()
    assert (t_again["chatgpt"] - t1["chatgpt"], t_again["perplexity"] - t1["perplexity"]) == (2, 2)
    rep_again = await build_report(store, again)
    assert rep_again.overall.cached == 0 and rep_again.snapshots == 4
    assert rep_again.totals.cost_usd >= 20 * settings.brightdata_record_usd

    # --reuse-answers: the first sweep's answers copied in and read again, nothing asked.
    second = await _run(orch, questions, reuse=first)
    t2 = counters.triggers()
    assert t2 == t_again  # not one Bright Data trigger
    assert {r[0] for r in await rows(store, "SELECT reused_from_run FROM question_runs WHERE run_id = :r",
                                     r=second)} == {first}
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
