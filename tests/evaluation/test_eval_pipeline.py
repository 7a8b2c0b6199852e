"""ORG_EVAL runs end to end through the REAL inference and extraction services (in-process on loopback) against the
provider sandbox, on SQLite and on PostgreSQL: every question run terminal, Bright Data questions packed into
snapshots of ≤ 20 (the sandbox's trigger counter says how many), answers / evaluations / competitors / citations
persisted, the report's figures equal to what the rows say, and cost = Σ ledger = records × $0.0015 + tokens × price
+ web searches × price."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from eval_testkit import QUESTIONS, members, rows, scalar

from services.orchestrator.app.jobs.evaluation import create_eval_run, read_questions
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.reports.visibility import build_report
from services.orchestrator.store import Store
from shared.config import Settings

pytestmark = pytest.mark.integration

MODELS = ["chatgpt", "perplexity", "gpt-4.1", "claude-sonnet-5"]
LOCATIONS = ["US", "GB"]


async def test_evaluation_end_to_end(eval_env: tuple[Settings, Store, Orchestrator], counters) -> None:
    settings, store, orch = eval_env
    questions = read_questions(QUESTIONS)[:5]
    before = counters.triggers()
    run, report = await create_eval_run(
        orch, samples=1, org_name="Together AI", org_domain="together.ai", questions=questions, models=MODELS,
        locations=LOCATIONS, known_competitors=["CoreWeave", "Lambda"],
    )
    assert report.items == 40 and report.questions == 5
    seen: list[bool] = []
    summary = await orch.execute(run.id, listener=lambda item, ok, msg: seen.append(ok))
    assert summary.run.status == "completed", summary.run.error
    assert summary.totals.counts["done"] == 40 and len(seen) == 40 and all(seen)

    # Bright Data: one snapshot per (model, location) group of 5 questions = ⌈5/20⌉; nothing else triggered.
    after = counters.triggers()
    assert after["chatgpt"] - before["chatgpt"] == 2 * math.ceil(5 / 20)
    assert after["perplexity"] - before["perplexity"] == 2 * math.ceil(5 / 20)
    batches = await rows(store, "SELECT provider, location, status, member_ids FROM provider_batches")
    assert len(batches) == 4 and all(b[2] == "ready" for b in batches)
    assert Counter((b[0], b[1]) for b in batches) == {
        ("brightdata_chatgpt", "US"): 1, ("brightdata_chatgpt", "GB"): 1,
        ("brightdata_perplexity", "US"): 1, ("brightdata_perplexity", "GB"): 1,
    }
    assert all(len(members(b[3])) == 5 for b in batches)

    # Every question run answered; the scraped ones came from their snapshot.
    qr = await rows(store, "SELECT model, status, snapshot_id, answer_markdown FROM question_runs")
    assert len(qr) == 40 and all(r[1] == "answered" and r[3] for r in qr)
    assert all(r[2] for r in qr if r[0] in ("chatgpt", "perplexity"))
    assert not any(r[2] for r in qr if r[0] not in ("chatgpt", "perplexity"))
    assert await scalar(store, "SELECT count(*) FROM org_evals") == 40
    assert await scalar(store, "SELECT count(*) FROM org_competitors") > 40
    assert await scalar(store, "SELECT count(*) FROM org_citations") > 40
    mentioned = await scalar(store, "SELECT count(*) FROM org_evals WHERE mentioned")
    assert 0 < mentioned < 40  # the sandbox names Together AI at varying ranks, or not at all

    # The report agrees with the rows.
    rep = await build_report(store, run.id)
    assert rep.overall.answers == 40 and rep.overall.mentioned == mentioned
    assert rep.overall.visibility_rate == pytest.approx(mentioned / 40)
    ranks = [r[0] for r in await rows(store, "SELECT rank FROM org_evals WHERE mentioned")]
    assert rep.overall.average_rank == pytest.approx(sum(ranks) / len(ranks))
    org_m = await scalar(store, "SELECT sum(mention_count) FROM org_evals")
    comp_m = await scalar(store, "SELECT sum(mention_count) FROM org_competitors")
    assert rep.overall.share_of_voice == pytest.approx(org_m / (org_m + comp_m))
    n_cit = await scalar(store, "SELECT count(*) FROM org_citations")
    owned = await scalar(store, "SELECT count(*) FROM org_citations WHERE owned")
    assert rep.overall.citations == n_cit and rep.overall.owned_citation_share == pytest.approx(owned / n_cit)
    assert sum(g.answers for g in rep.groups) == 40 and len(rep.groups) == 8
    assert rep.snapshots == 4 and rep.max_snapshot_size == 5
    names = [c.name for c in rep.overall.top_competitors]
    assert "Lambda Labs" not in names and "Lambda Cloud" not in names

    # Cost: Σ ledger = records × price + tokens × price + web searches × price.
    ledger = await store.ledger_rows(run.id)
    assert all(r["status"] == "completed" for r in ledger)
    expected = 0.0
    for r in ledger:
        if r["unit_type"] == "records":
            expected += r["units"] * settings.brightdata_record_usd
    for model, tin, tout, ws in await rows(
        store, "SELECT model, input_tokens, output_tokens, web_search_calls FROM question_runs WHERE snapshot_id IS NULL"
    ):
        pin, pout = settings.token_prices(model)
        expected += (tin * pin + tout * pout) / 1e6 + ws * settings.web_search_call_usd
    llm_run_level = sum(r["usd"] for r in ledger if r["item_id"] is None)
    assert summary.totals.cost_usd == pytest.approx(sum(r["usd"] for r in ledger), rel=1e-9)
    assert summary.totals.cost_usd == pytest.approx(expected + llm_run_level, rel=1e-9)
    assert sum(r["units"] for r in ledger if r["unit_type"] == "records") == 20

    # The org's name variations were computed once (deterministic + the LLM's, one packed call on the run's
    # ledger) and are reused by the next run of the same org: no second variations call.
    (variations, vmodel), = await rows(store, "SELECT name_variations, variations_model FROM orgs")
    variations = members(variations)
    assert vmodel == settings.research_model and variations[0] == "Together AI"
    assert {"Together", "together.ai", "Together Inc"} <= set(variations)
    assert [r for r in ledger if r["item_id"] is None and ":variations" in r["idempotency_key"]]
    again, _ = await create_eval_run(orch, samples=1, org_name="together ai", org_domain="together.ai",
                                     questions=questions[:1], models=["gpt-4.1"], locations=["US"])
    assert again.options["org_id"] == run.options["org_id"]
    assert (await orch.execute(again.id)).totals.counts["done"] == 1
    assert not [r for r in await store.ledger_rows(again.id) if ":variations" in r["idempotency_key"]]
