"""The Bright Data provider against the sandbox's Datasets API v3 emulator, over HTTP (providers.md §2)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from services.inference.providers import ChatMessage, CompletionRequest, CompletionResult, ItemFailure
from services.inference.providers.brightdata import (
    CHATGPT,
    PERPLEXITY,
    BrightDataProvider,
    citations_of,
    match_records,
    new_http_client,
)
from shared.config import Settings
from shared.errors import InvalidArgument

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What are the best GPU cloud providers for training large models?",
    "Which inference platforms offer the cheapest H100 hours?",
    "Best alternatives to AWS for AI workloads?",
    "Who sells managed Kubernetes with GPUs?",
]


def _req(i: int, model: str = "chatgpt", location: str = "US") -> CompletionRequest:
    return CompletionRequest(
        model=model, messages=[ChatMessage("user", f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})")], location=location
    )


def _provider(settings: Settings, http: httpx.AsyncClient, dataset: Any = CHATGPT, cap: int = 10) -> BrightDataProvider:
    return BrightDataProvider(settings, dataset, http, anyio.CapacityLimiter(cap), has_key=True)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    client = new_http_client(settings)
    yield client
    await client.aclose()


async def _bd_stats(admin: httpx.AsyncClient) -> dict[str, Any]:
    return (await admin.get("/_sandbox/stats")).json()


def _count(stats: dict[str, Any], key: str, dataset: str = CHATGPT.dataset_id) -> int:
    return int(stats["brightdata"].get(key, {}).get(dataset, 0))


# --- pure helpers -----------------------------------------------------------------------------------------------


def test_match_records_by_index_then_prompt_then_position() -> None:
    prompts = ["a", "b", "c", "d"]
    records = [{"index": 3, "answer_text": "C"}, {"index": None, "input": {"index": 1}, "answer_text": "A"},
               {"prompt": "d", "answer_text": "D"}, {"answer_text": "B?"}]
    slots = match_records(records, prompts)
    assert [s and s["answer_text"] for s in slots] == ["A", "B?", "C", "D"]  # counts agree: the last one fills in


def test_match_records_never_guesses_when_records_are_missing() -> None:
    shuffled = [{"index": i, "answer_text": str(i)} for i in range(1, 21)]
    random.Random(7).shuffle(shuffled)
    slots = match_records(shuffled, [""] * 20)
    assert [s["answer_text"] for s in slots if s] == [str(i) for i in range(1, 21)]
    slots = match_records([{"answer_text": "?"}, {"index": 2, "answer_text": "two"}], ["", "", ""])
    assert [s and s["answer_text"] for s in slots] == [None, "two", None]


def test_citations_merge_citations_and_links_attached() -> None:
    rec = {
        "citations": [{"url": "https://a.com/x", "title": "A"}, {"url": "https://b.com", "title": "B"}],
        "links_attached": [{"url": "https://b.com", "text": "dup"}, {"url": "https://c.com", "text": "C"}],
    }
    assert [(c.url, c.title) for c in citations_of(rec)] == [
        ("https://a.com/x", "A"), ("https://b.com", "B"), ("https://c.com", "C")
    ]


# --- against the sandbox ----------------------------------------------------------------------------------------


async def test_batch_of_20_is_one_snapshot(settings: Settings, http: httpx.AsyncClient,
                                           sandbox_admin: httpx.AsyncClient) -> None:
    before = await _bd_stats(sandbox_admin)
    outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(20)])
    after = await _bd_stats(sandbox_admin)
    assert _count(after, "triggers") - _count(before, "triggers") == 1
    assert _count(after, "inputs") - _count(before, "inputs") == 20
    assert len(outcomes) == 20 and all(isinstance(o, CompletionResult) for o in outcomes)
    snapshot_ids = {o.snapshot_id for o in outcomes}  # type: ignore[union-attr]
    assert len(snapshot_ids) == 1 and next(iter(snapshot_ids)).startswith("s_")
    for o in outcomes:
        assert isinstance(o, CompletionResult)
        assert o.provider == "brightdata_chatgpt"
        assert o.text and o.markdown
        assert o.cost_usd == settings.brightdata_record_usd
        assert o.citations and all(c.url.startswith("http") for c in o.citations)


async def test_perplexity_dataset(settings: Settings, http: httpx.AsyncClient) -> None:
    (outcome,) = await _provider(settings, http, PERPLEXITY).complete_batch([_req(0, model="perplexity", location="GB")])
    assert isinstance(outcome, CompletionResult)
    assert outcome.provider == "brightdata_perplexity"
    assert outcome.markdown and outcome.citations and outcome.search_queries


async def test_error_records_fail_their_items_only(settings: Settings, http: httpx.AsyncClient,
                                                   sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any) -> None:
    await sandbox_knobs({"brightdata_error_rate": 0.5})
    before = await _bd_stats(sandbox_admin)
    outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(20)])
    after = await _bd_stats(sandbox_admin)
    failures = [o for o in outcomes if isinstance(o, ItemFailure)]
    assert 0 < len(failures) < 20
    assert len(failures) == _count(after, "error_records") - _count(before, "error_records")
    for f in failures:
        assert f.code == "UNAVAILABLE" and f.provider == "brightdata_chatgpt"
        assert f.provider_error_code in {"dead_page", "timeout", "blocked"}
        assert f.message
    assert all(o.text for o in outcomes if isinstance(o, CompletionResult))


async def test_count_mismatch_fails_the_missing_items(settings: Settings, http: httpx.AsyncClient,
                                                      sandbox_knobs: Any) -> None:
    await sandbox_knobs({"brightdata_drop_records": 3})
    outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(20)])
    failures = [o for o in outcomes if isinstance(o, ItemFailure)]
    assert len(failures) == 3
    for f in failures:
        assert "batch returned 17 records, expected 20" in f.message
        assert f.provider_error_code == "missing_record"


async def test_download_retries_202_while_building(settings: Settings, http: httpx.AsyncClient,
                                                   sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any) -> None:
    # Progress always fails, so the provider waits on the download endpoint, which answers 202 until ready.
    await sandbox_knobs({"endpoints": {"brightdata.progress": {"rate_500": 1.0}}, "brightdata_duration_s": 0.5})
    before = (await _bd_stats(sandbox_admin))["endpoints"].get("brightdata.snapshot", {}).get("status", {})
    outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(3)])
    assert all(isinstance(o, CompletionResult) for o in outcomes)
    status = (await _bd_stats(sandbox_admin))["endpoints"]["brightdata.snapshot"]["status"]
    assert status.get("202", 0) > before.get("202", 0)


async def test_failed_snapshot_fails_every_item(settings: Settings, http: httpx.AsyncClient,
                                                sandbox_knobs: Any) -> None:
    await sandbox_knobs({"brightdata_fail_rate": 1.0})
    outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(4)])
    assert all(isinstance(o, ItemFailure) for o in outcomes)
    assert {o.provider_error_code for o in outcomes} == {"snapshot_failed"}  # type: ignore[union-attr]
    assert "No data found" in outcomes[0].message  # type: ignore[union-attr]


async def test_cancel_then_collect(settings: Settings, http: httpx.AsyncClient, sandbox_admin: httpx.AsyncClient,
                                   sandbox_knobs: Any) -> None:
    await sandbox_knobs({"brightdata_duration_s": 30})
    provider = _provider(settings, http)
    before = (await _bd_stats(sandbox_admin))["brightdata"]["cancels"]
    snapshot_id = await provider.submit_batch([_req(i) for i in range(2)])
    assert await provider.cancel_batch(snapshot_id)
    outcomes = await provider.collect_batch(snapshot_id, 2)
    assert [o.code for o in outcomes] == ["CANCELLED", "CANCELLED"]  # type: ignore[union-attr]
    assert (await _bd_stats(sandbox_admin))["brightdata"]["cancels"] == before + 1
    assert provider.in_flight.borrowed_tokens == 0  # the slot came back


async def test_give_up_cancels_the_snapshot(settings: Settings, http: httpx.AsyncClient,
                                            sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any) -> None:
    await sandbox_knobs({"brightdata_duration_s": 30})
    provider = _provider(settings.model_copy(update={"brightdata_timeout_seconds": 0.3}), http)
    before = (await _bd_stats(sandbox_admin))["brightdata"]["cancels"]
    outcomes = await provider.complete_batch([_req(0)])
    assert outcomes[0].code == "DEADLINE_EXCEEDED"  # type: ignore[union-attr]
    assert (await _bd_stats(sandbox_admin))["brightdata"]["cancels"] == before + 1


async def test_resume_polls_without_triggering(settings: Settings, http: httpx.AsyncClient,
                                               sandbox_admin: httpx.AsyncClient) -> None:
    first = _provider(settings, http)
    snapshot_id = await first.submit_batch([_req(i) for i in range(5)])
    before = _count(await _bd_stats(sandbox_admin), "triggers")
    restarted = _provider(settings, http)  # a new process would know only the snapshot id
    outcomes = await restarted.collect_batch(snapshot_id, 5, model="chatgpt")
    assert all(isinstance(o, CompletionResult) and o.snapshot_id == snapshot_id for o in outcomes)
    assert _count(await _bd_stats(sandbox_admin), "triggers") == before
    assert restarted.in_flight.borrowed_tokens == 0
    await first.collect_batch(snapshot_id, 5)  # gives the first provider's slot back


async def test_unknown_snapshot_is_not_found(settings: Settings, http: httpx.AsyncClient) -> None:
    outcomes = await _provider(settings, http).collect_batch("s_doesnotexist00000", 2)
    assert [o.code for o in outcomes] == ["NOT_FOUND", "NOT_FOUND"]  # type: ignore[union-attr]


async def test_in_flight_cap_keeps_under_the_providers_running_limit(
    settings: Settings, http: httpx.AsyncClient, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any
) -> None:
    # Bright Data answers 429 above its running-jobs cap; our per-dataset cap must keep us below it.
    await sandbox_knobs({"brightdata_max_running": 1, "brightdata_duration_s": 0.3})
    provider = _provider(settings, http, cap=1)
    before = _count(await _bd_stats(sandbox_admin), "rejected")
    results = await asyncio.gather(*(provider.complete_batch([_req(i), _req(i + 1)]) for i in range(3)))
    assert all(isinstance(o, CompletionResult) for batch in results for o in batch)
    assert _count(await _bd_stats(sandbox_admin), "rejected") == before


async def test_scraper_refuses_schema_and_long_prompts(settings: Settings, http: httpx.AsyncClient) -> None:
    provider = _provider(settings, http)
    req = _req(0)
    req.json_schema = {"type": "object"}
    with pytest.raises(InvalidArgument) as ei:
        provider.check(req)
    assert ei.value.violations[0][0] == "json_schema"
    with pytest.raises(InvalidArgument) as ei:
        provider.check(CompletionRequest(model="chatgpt", messages=[ChatMessage("user", "x" * 5000)]))
    assert ei.value.reason == "CONTEXT_TOO_LONG"
