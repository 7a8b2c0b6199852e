"""Oversized requests in a research run (issue 5, part 3), through the real services and a private sandbox: the
search context is trimmed to the model's window before the call; a provider 400 "context length exceeded" is
answered by halving the context, at most twice, and the item records that it was truncated."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from res_testkit import endpoint

from services.extraction.server import build as extraction_build
from services.inference.server import build as inference_build
from services.orchestrator.app.inputs import rows_from_pairs
from services.orchestrator.app.jobs.research import MAX_CONTEXT_HALVINGS, ResearchOptions, create_research_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.store import Store, open_store
from services.search.server import build as search_build
from shared.config import Settings
from shared.grpc_client import Channels
from shared.grpc_server import serving

pytestmark = pytest.mark.integration

CHAT = "openai.chat_completions"


@contextlib.asynccontextmanager
async def research_env(settings: Settings) -> AsyncIterator[tuple[Orchestrator, Store]]:
    async with (
        serving("search", search_build, settings) as s,
        serving("inference", inference_build, settings) as i,
        serving("extraction", extraction_build, settings) as e,
    ):
        live = settings.model_copy(update={"search_addr": s.address, "inference_addr": i.address,
                                           "extraction_addr": e.address})
        store = await open_store(live.database_url)
        channels = Channels(live)
        try:
            yield Orchestrator(store, Clients(channels, live), live), store
        finally:
            await channels.close()
            await store.close()


async def research(orch: Orchestrator, *pairs: tuple[str, str]) -> str:
    run, _ = await create_research_run(orch, rows_from_pairs(pairs), name="t",
                                            options=ResearchOptions(model="gpt-4.1"))
    await orch.execute(run.id)
    return run.id


async def test_context_is_trimmed_to_the_window_before_the_call(res_settings: Settings, knobs: Any,
                                                                sandbox_admin: httpx.AsyncClient) -> None:
    # Together AI's default prompt is ~8k tokens; the model window is said to be 3,000 prompt tokens and the
    # sandbox enforces 3,500: trimmed beforehand, no call is ever refused.
    await knobs({"openai_max_input_tokens": 3500})
    settings = res_settings.model_copy(update={"llm_max_input_tokens": 3000})
    async with research_env(settings) as (orch, store):
        run_id = await research(orch, ("Together AI", "together.ai"), ("Cohere", "cohere.com"))
        items = {i.company: i for i in await store.page_items(run_id)}
    assert {i.status for i in items.values()} == {"done"}
    assert items["Together AI"].truncated  # the window cut its context
    ep = await endpoint(sandbox_admin, CHAT)
    assert ep["status"] == {"200": 2}  # two calls, no 400


async def test_a_too_long_answer_halves_the_context_up_to_twice_then_succeeds(
    res_settings: Settings, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    # Seed 8 draws "oversize, oversize, ok" at rate 0.5 (one item, sequential calls).
    await knobs({"seed": 8, "endpoints": {CHAT: {"rate_oversize": 0.5}}})
    async with research_env(res_settings) as (orch, store):
        run_id = await research(orch, ("Together AI", "together.ai"))
        (item,) = await store.page_items(run_id)
        rows = await store.ledger_rows(run_id)
    assert item.status == "done" and item.truncated
    ep = await endpoint(sandbox_admin, CHAT)
    assert ep["status"] == {"400": 2, "200": 1}
    # The refused calls were not billed; the searches after halving were cache hits (free).
    assert Counter(r["kind"] for r in rows) == {"search": 1, "llm": 1}


async def test_still_too_long_after_two_halvings_fails_with_a_clear_reason(
    res_settings: Settings, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    await knobs({"endpoints": {CHAT: {"rate_oversize": 1.0}}})
    async with research_env(res_settings) as (orch, store):
        run_id = await research(orch, ("Together AI", "together.ai"))
        (item,) = await store.page_items(run_id)
    assert item.status == "failed" and item.truncated
    assert item.error is not None
    assert item.error.startswith("inference: INVALID_ARGUMENT") and "CONTEXT_TOO_LONG" in item.error
    assert f"halved {MAX_CONTEXT_HALVINGS} times" in item.error
    assert (await endpoint(sandbox_admin, CHAT))["status"] == {"400": 1 + MAX_CONTEXT_HALVINGS}
