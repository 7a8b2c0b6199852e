"""Both clients against the real stack on loopback (sandbox, search, inference, extraction and orchestrator as
processes): an end-to-end research with the sync client and an evaluation with the async
client, through the client only; errors, deadlines and the thin per-service calls on the real servers (the quickstart
example runs in test_client_wheel, from the installed wheel)."""

from __future__ import annotations

import pytest
from client_kit import TOKEN
from vantage_client import (
    AsyncVantageClient,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RunEvent,
    RunKind,
    RunStatus,
    Unauthenticated,
    VantageClient,
)

pytestmark = pytest.mark.integration

COMPANIES = [("Anthropic", "anthropic.com"), ("Jasper", "jasper.ai"), ("Hugging Face", "huggingface.co")]
QUESTIONS = ["Which platforms offer serverless inference for open-source models like Llama and DeepSeek?",
             "What is the cheapest way to fine-tune Llama 3 on my own data?"]


def test_sync_research_end_to_end(addrs: dict[str, str]) -> None:
    events: list[RunEvent] = []
    with VantageClient(f"dns:///{addrs['orchestrator']}") as client:
        started = client.research(companies=COMPANIES, name="client-e2e")
        assert started.kind is RunKind.RESEARCH and started.counts.total == 3
        run = client.wait(started.run_id, on_progress=events.append)
        assert run.status is RunStatus.COMPLETED and run.counts.done == 3 and run.cost_usd > 0 and run.credits > 0
        seqs = [e.sequence for e in events]
        assert seqs == sorted(set(seqs)) and events[-1].type == "RUN_FINISHED"
        assert {e.item_key for e in events if e.type == "ITEM_DONE"} == {n for n, _ in COMPANIES}

        got = client.get_run(started.run_id)
        assert got.status is RunStatus.COMPLETED and got.counts == run.counts and got.finished_at is not None
        items = {i.key: i for i in client.list_items(run.run_id, page_size=2)}  # pages of 2
        assert set(items) == {n for n, _ in COMPANIES}
        assert items["Anthropic"].research is not None and items["Anthropic"].research.tier == "HOT"
        assert items["Jasper"].research is not None and items["Jasper"].research.tier == "COLD"
        report = client.report(run.run_id)
        assert sum(report.tiers.values()) == 3 and report.tiers.get("HOT", 0) >= 1
        header = client.export(run.run_id, "csv").splitlines()[0]
        assert header.startswith("key,domain,status,tier,score")
        assert run.run_id in {r.run_id for r in client.list_runs(page_size=1)}  # paged one run at a time

        d = client.diff(run.run_id, run.run_id)  # DiffRuns: a research run against itself, nothing moved
        assert d.kind is RunKind.RESEARCH and not d.cells
        assert {c.company: c.tier_change for c in d.companies} == {n: "same" for n, _ in COMPANIES}
        assert all(c.score_a == c.score_b and not c.new_evidence_urls for c in d.companies)
        with pytest.raises(InvalidArgument) as e:
            client.diff(run.run_id, "not-a-run")
        assert e.value.fields == ["run_b"]

        assert client.resume(run.run_id).status is RunStatus.COMPLETED  # nothing to do
        with pytest.raises(FailedPrecondition):
            client.cancel(run.run_id)
        with pytest.raises(NotFound):
            client.get_run("00000000-0000-4000-8000-000000000000")
        with pytest.raises(InvalidArgument) as e:
            client.research(companies=[("x" * 301, "")])
        assert e.value.fields and e.value.fields[0].startswith("research.companies")
        # A deadline already past: gRPC core rounds deadlines up to the next millisecond, so a 1 µs timeout can
        # still be met by a loopback GetRun on a fast machine.
        with pytest.raises(DeadlineExceeded):
            client.get_run(run.run_id, timeout=-1.0)


def test_token_is_required(token_inference: str) -> None:
    """shared/security.py: ``authorization: Bearer <token>`` on every call; the client sends it as metadata on a
    plaintext channel."""
    with VantageClient(inference_target=f"ipv4:{token_inference}", token=TOKEN) as client:  # a static address list
        assert client.route("gpt-5.5").provider == "openai"
    with VantageClient(inference_target=token_inference) as anonymous, pytest.raises(Unauthenticated):
        anonymous.route("gpt-5.5")
    with VantageClient(inference_target=token_inference, token="wrong") as wrong, pytest.raises(Unauthenticated) as e:
        wrong.route("gpt-5.5")
    assert "wrong" not in str(e.value)


async def test_async_token(token_inference: str) -> None:
    async with AsyncVantageClient(inference_target=token_inference, token=TOKEN) as client:
        assert (await client.route("claude-sonnet-5")).provider == "anthropic"
    async with AsyncVantageClient(inference_target=token_inference) as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.route("gpt-5.5")


async def test_async_evaluation_end_to_end(addrs: dict[str, str]) -> None:
    seen: list[str] = []

    async def progress(ev: RunEvent) -> None:
        seen.append(ev.type)

    async with AsyncVantageClient(addrs["orchestrator"], search_target=addrs["search"],
                                  inference_target=addrs["inference"],
                                  extraction_target=addrs["extraction"]) as client:
        started = await client.evaluate("Together AI", QUESTIONS, ["gpt-5.5", "claude-sonnet-5"], ["US"],
                                        samples=1, org_domain="together.ai", name="client-eval")
        assert started.kind is RunKind.ORG_EVAL and started.counts.total == 4
        run = await client.wait(started.run_id, on_progress=progress, timeout=240)
        items = [i async for i in client.list_items(run.run_id)]
        assert run.status is RunStatus.COMPLETED and run.counts.done == 4, [i.error for i in items]
        assert seen.count("ITEM_DONE") == 4 and seen[-1] == "RUN_FINISHED"
        assert {(i.question_run.model, i.question_run.location) for i in items if i.question_run} == {
            ("gpt-5.5", "US"), ("claude-sonnet-5", "US")}
        rep = await client.report(run.run_id)
        assert rep.evaluated == 4 and rep.visibility_rate is not None and 0 <= rep.visibility_rate <= 1
        assert {(g.model, g.location) for g in rep.groups} == {("gpt-5.5", "US"), ("claude-sonnet-5", "US")}
        assert (await client.export(run.run_id, "jsonl")).count("\n") == 4
        d = await client.diff(run.run_id, run.run_id, seed=3)  # 2 questions < 5: insufficient_data, with N
        assert d.kind is RunKind.ORG_EVAL and d.basket == 4 and d.seed == 3 and d.model_versions_stored
        assert d.overall is not None and d.overall.model == "all"
        vis = d.overall.figures["visibility_rate"]
        assert vis.verdict == "insufficient_data" and vis.needed_n and vis.delta.value == 0.0

        # The thin per-service calls, each on its own target.
        route = await client.route("gpt-5.5")
        assert route.provider == "openai"
        found = await client.search_company("Anthropic", "anthropic.com")
        assert found.results and found.llm_context and found.results[0].score >= found.results[-1].score
        done = await client.complete("gpt-5.5", "Name one inference platform for Llama.")
        assert done.text and done.provider == "openai"
        ex = await client.extract("Together AI leads; Fireworks AI is close behind.", "Together AI",
                                  known_competitors=["Fireworks AI"])
        assert ex.mentioned and ex.rank == 1 and any(c.name == "Fireworks AI" for c in ex.competitors)
        with pytest.raises(InvalidArgument) as e:
            await client.route("bad model name!")
        assert e.value.fields == ["model"]
        # Repeated samples: each question × model × location asked K times, each sample its own question run.
        sampled = await client.evaluate("Together AI", QUESTIONS[:1], ["gpt-5.5"], ["US"], samples=3,
                                        org_domain="together.ai", name="client-eval-samples")
        assert sampled.counts.total == 3
        run = await client.wait(sampled.run_id, timeout=240)
        assert run.status is RunStatus.COMPLETED and run.counts.done == 3
        keys = sorted([i.key async for i in client.list_items(run.run_id)])
        assert len(keys) == 3 and all(f"#{k}/3 " in key for k, key in zip((1, 2, 3), keys, strict=True)), keys
        # Out of bounds: refused before any call; an earlier sweep that does not exist: NOT_FOUND from the server.
        with pytest.raises(ValueError, match="samples"):
            await client.evaluate("Together AI", QUESTIONS, ["gpt-5.5"], samples=21)
        with pytest.raises(NotFound):
            await client.evaluate("Together AI", QUESTIONS, ["gpt-5.5"], samples=1,
                                  reuse_answers="00000000-0000-0000-0000-000000000000")

