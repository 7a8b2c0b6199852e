"""ORG_EVAL runs interrupted and continued, through the real services and the sandbox (SQLite and PostgreSQL):

- a run that dies with Bright Data snapshots in flight resumes by re-polling the stored snapshots — the sandbox's
  trigger counter does not move — and every question run finishes exactly once, paid once;
- CancelRun cancels the in-flight snapshots at the provider; their questions are asked again on resume;
- Bright Data error records become failed question runs (error and error_code, never answers), grouped by reason in
  the report, and ``retry-failed`` asks them again.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from eval_testkit import members, rows, scalar, wait_for

from services.orchestrator.app.jobs.evaluation import create_eval_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.reports.visibility import build_report
from services.orchestrator.store import Store
from shared.config import Settings
from shared.grpc_client import Channels

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What are the best GPU cloud providers for training large language models?",
    "Which platforms offer serverless inference for open-source models like Llama and DeepSeek?",
    "What is the cheapest way to fine-tune Llama 3 on my own data?",
]
MODELS = ["chatgpt", "perplexity", "gpt-4.1"]


async def new_run(orch: Orchestrator, models: list[str] = MODELS) -> str:
    run, _ = await create_eval_run(orch, samples=1, org_name="Together AI", org_domain="together.ai", questions=QUESTIONS,
                                   models=models, locations=["US"])
    return run.id


async def batches(store: Store) -> list[tuple]:
    return await rows(store, "SELECT snapshot_id, provider, status, member_ids FROM provider_batches")


async def test_resume_with_snapshots_in_flight_triggers_nothing_new(
    eval_env: tuple[Settings, Store, Orchestrator], knobs, counters
) -> None:
    settings, store, orch = eval_env
    knobs({"brightdata_duration_s": 4.0})  # slow snapshots: the "crash" comes while they run
    run_id = await new_run(orch)
    before = counters.triggers()

    async def both_recorded() -> bool:
        return len(await batches(store)) == 2

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(orch.execute(run_id))
        await wait_for(both_recorded, 90, "both snapshots recorded")
        task.cancel()  # the "crash": the process dies with both snapshots in flight
    recorded = await batches(store)
    assert {b[2] for b in recorded} == {"submitted"}
    assert counters.triggers()["chatgpt"] - before["chatgpt"] == 1
    assert counters.triggers()["perplexity"] - before["perplexity"] == 1
    answered = await scalar(store, "SELECT count(*) FROM question_runs WHERE status = 'answered' AND "
                                   "snapshot_id IS NOT NULL")
    assert answered == 0  # nothing scraped was answered before the crash

    # Another process resumes: it re-attaches the stored snapshots (ResumeBatch), never triggers them again.
    second = Orchestrator(store, Clients(Channels(settings), settings), settings)
    try:
        _, todo = await second.prepare_resume(run_id)
        assert todo >= 6
        resumed: list[str] = []
        summary = await second.execute(run_id, listener=lambda item, ok, msg: resumed.append(item.id))
    finally:
        await second.clients.channels.close()
    assert summary.run.status == "completed" and summary.totals.counts["done"] == 9
    after = counters.triggers()
    assert after["chatgpt"] - before["chatgpt"] == 1 and after["perplexity"] - before["perplexity"] == 1
    assert len(resumed) == len(set(resumed))

    # Every question run answered exactly once; scraped ones from the snapshot stored before the crash.
    final = {b[0]: b for b in await batches(store)}
    assert set(final) == {b[0] for b in recorded} and {b[2] for b in final.values()} == {"ready"}
    qr = await rows(store, "SELECT item_id, model, status, snapshot_id FROM question_runs")
    assert len(qr) == 9 and all(r[2] == "answered" for r in qr)
    for item_id, model, _, snapshot in qr:
        if model in ("chatgpt", "perplexity"):
            assert snapshot in final and item_id in members(final[snapshot][3])
    assert await scalar(store, "SELECT count(*) FROM org_evals") == 9
    assert await scalar(store, "SELECT count(DISTINCT item_id) FROM org_evals") == 9
    # Paid once: one completed record row per scraped question run, keyed by its snapshot.
    ledger = await store.ledger_rows(run_id)
    scraped = [r for r in ledger if r["unit_type"] == "records"]
    assert len(scraped) == 6 and all(r["status"] == "completed" and r["units"] == 1 for r in scraped)
    assert Counter(r["item_id"] for r in scraped).most_common(1)[0][1] == 1
    assert all(r["idempotency_key"].rsplit(":", 1)[1] in final for r in scraped)
    rep = await build_report(store, run_id)
    assert rep.snapshots == 2 and rep.processed == 9 and rep.overall.answers == 9


async def test_cancel_cancels_in_flight_snapshots_and_resume_asks_again(
    eval_env: tuple[Settings, Store, Orchestrator], knobs, counters
) -> None:
    _, store, orch = eval_env
    knobs({"brightdata_duration_s": 4.0})
    run_id = await new_run(orch, ["chatgpt"])
    before, cancels = counters.triggers(), counters.cancels()

    async def recorded() -> bool:
        return len(await batches(store)) == 1

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(orch.execute(run_id))
        await wait_for(recorded, 90, "the snapshot recorded")
        cancelled = await orch.cancel(run_id)
        await task
    assert cancelled.status == "cancelled"
    assert counters.cancels() - cancels == 1
    assert [b[2] for b in await batches(store)] == ["cancelled"]
    assert not [r for r in await store.ledger_rows(run_id) if r["status"] == "pending"]

    knobs({"brightdata_duration_s": 0.3})
    _, todo = await orch.prepare_resume(run_id)
    assert todo == 3
    summary = await orch.execute(run_id)
    assert summary.run.status == "completed" and summary.totals.counts["done"] == 3
    assert counters.triggers()["chatgpt"] - before["chatgpt"] == 2  # the cancelled snapshot's questions again
    assert sorted(b[2] for b in await batches(store)) == ["cancelled", "ready"]


async def test_error_records_are_failed_question_runs(
    eval_env: tuple[Settings, Store, Orchestrator], knobs
) -> None:
    _, store, orch = eval_env
    knobs({"brightdata_error_rate": 1.0})
    run_id = await new_run(orch)
    summary = await orch.execute(run_id)
    assert summary.run.status == "completed"
    assert summary.totals.counts == {"pending": 0, "running": 0, "done": 3, "failed": 6, "skipped": 0}
    failed = await rows(store, "SELECT model, status, error, error_code, answer_markdown, provider FROM question_runs "
                               "WHERE model <> 'gpt-4.1'")
    assert len(failed) == 6
    for model, status, error, code, answer, provider in failed:
        assert status == "failed" and error and code and answer is None, (model, status, error, code)
        assert provider == f"brightdata_{model}"
    assert not await scalar(store, "SELECT count(*) FROM org_evals e JOIN question_runs q ON q.item_id = e.item_id "
                                   "WHERE q.model <> 'gpt-4.1'")
    # Error records are not billed: no scraped record in the ledger, no pending row left behind.
    ledger = await store.ledger_rows(run_id)
    assert not [r for r in ledger if r["unit_type"] == "records"]
    assert not [r for r in ledger if r["status"] == "pending"]
    assert {b[2] for b in await batches(store)} == {"failed"}
    items = await rows(store, "SELECT last_error FROM run_items WHERE status = 'failed'")
    assert all(e[0].startswith("brightdata_") for e in items)

    rep = await build_report(store, run_id)
    by_code = {f.code: f.count for f in rep.failures}
    assert sum(by_code.values()) == 6 and all(f.kind == "provider" for f in rep.failures)
    assert by_code == Counter(r[3] for r in failed)  # grouped by the provider's error_code
    assert rep.overall.answers == 3 and rep.overall.failed == 6

    # The provider recovers: retry-failed asks the failed question runs again (new snapshots) and they land.
    knobs({"brightdata_error_rate": 0.0})
    _, todo = await orch.prepare_retry(run_id)
    assert todo == 6
    summary = await orch.execute(run_id)
    assert summary.totals.counts["done"] == 9 and summary.totals.counts["failed"] == 0
    assert await scalar(store, "SELECT count(*) FROM question_runs WHERE status = 'answered'") == 9
    assert await scalar(store, "SELECT count(*) FROM question_runs WHERE error IS NOT NULL") == 0


async def test_inference_restart_mid_run_reattaches_its_snapshots(settings: Settings, knobs, counters) -> None:
    """The inference service goes away with a snapshot in flight and comes back on the same port: the run's stream
    breaks, is re-opened, and the recorded snapshot is re-attached (no second trigger); the run completes."""
    from services.extraction.server import build as extraction_build
    from services.inference.server import build as inference_build
    from services.orchestrator.store import open_store
    from shared.grpc_server import serving

    knobs({"brightdata_duration_s": 3.0})
    async with serving("extraction", extraction_build, settings) as ext:
        first = serving("inference", inference_build, settings)
        inf = await first.__aenter__()
        port = int(inf.address.rsplit(":", 1)[1])
        cfg = settings.model_copy(update={"inference_addr": inf.address, "extraction_addr": ext.address})
        store = await open_store(cfg.database_url)
        orch = Orchestrator(store, Clients(Channels(cfg), cfg), cfg)
        try:
            run_id = await new_run(orch, ["chatgpt", "gpt-4.1"])
            before = counters.triggers()["chatgpt"]
            task = asyncio.create_task(orch.execute(run_id))

            async def recorded() -> bool:
                return len(await batches(store)) == 1

            try:
                await wait_for(recorded, 90, "the snapshot recorded")
                await first.__aexit__(None, None, None)  # inference stops: the run's stream breaks
                assert not await scalar(store, "SELECT count(*) FROM question_runs WHERE model = 'chatgpt' AND "
                                               "status = 'answered'")  # the snapshot was still running
                await asyncio.sleep(0.5)  # items retry against nothing for a while
                async with serving("inference", inference_build, settings, port=port):
                    summary = await asyncio.wait_for(task, 60)
            finally:
                if not task.done():
                    task.cancel()
            assert summary.run.status == "completed" and summary.totals.counts["done"] == 6
            assert counters.triggers()["chatgpt"] - before == 1  # re-attached after the restart, not re-triggered
            assert [b[2] for b in await batches(store)] == ["ready"]
            assert await scalar(store, "SELECT count(DISTINCT item_id) FROM org_evals") == 6
        finally:
            await orch.clients.channels.close()
            await store.close()
