"""SearchCompany's default answer carries the page text once (inside ``llm_context``), not twice: results keep
``content`` and ``score``; ``raw_content`` only when asked for. Checks of the engine's (pure) ``outcome`` and of the
built-answer cache on a given page; the engine has the real Tavily backend (pointed at the sandbox) but no test here
fetches through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from services.search.core import Defaults, Hit, TavilyPage, validate_company
from services.search.engine import SearchEngine
from services.search.server import HitResponses, to_response
from services.search.tavily import TavilyBackend
from shared.config import Settings

TEMPLATE = "{company} GPU compute"
RAW = "Acme trains frontier models on 4,096 GPUs. " * 20


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[SearchEngine]:
    backend = TavilyBackend(settings)
    try:
        yield SearchEngine(backend, usd_per_credit=0.008, cache_entries=4, cache_ttl_seconds=60)
    finally:
        await backend.aclose()


def _page() -> TavilyPage:
    hits = (
        Hit("Acme", "https://acme.ai/", "Acme builds GPUs clusters.", RAW, 0.9),
        Hit("News", "https://news.example.com/acme", "Acme raised money.", "News page text. " * 10, 0.7),
        Hit("Noise", "https://noise.example.com/", "Unrelated.", "Noise page text.", 0.1),
    )
    return TavilyPage("Acme GPU compute", hits, 2, "rid-1")


def _spec(include_raw_content: bool | None = None):
    return validate_company(
        company="Acme", domain="acme.ai", template=TEMPLATE, search_depth="", min_score=None, max_results=None,
        context_char_budget=0, include_raw_content=include_raw_content, defaults=Defaults(),
    )


def test_search_lean_default_keeps_snippets_scores_and_context_without_page_text(engine: SearchEngine) -> None:
    out = engine.outcome(_spec(), _page(), cached=True)
    assert [h.url for h in out.results] == ["https://acme.ai/", "https://news.example.com/acme"]
    assert [h.score for h in out.results] == [0.9, 0.7]
    assert out.results[0].content == "Acme builds GPUs clusters."
    assert all(h.raw_content == "" for h in out.results)
    assert RAW.strip()[:200] in out.llm_context  # the context is still built from the page text
    resp = to_response(out)
    assert all(r.raw_content == "" and r.content and r.score > 0 for r in resp.results)


def test_search_raw_content_on_request_and_smaller_default_answer(engine: SearchEngine) -> None:
    page = _page()
    lean = to_response(engine.outcome(_spec(), page, cached=True))
    full = to_response(engine.outcome(_spec(include_raw_content=True), page, cached=True))
    assert full.results[0].raw_content == RAW
    assert full.llm_context == lean.llm_context
    assert [r.url for r in full.results] == [r.url for r in lean.results]
    assert lean.ByteSize() < full.ByteSize() - len(RAW)
    # The cached page itself is never altered by a lean answer.
    assert page.hits[0].raw_content == RAW


def test_search_hit_responses_key_distinguishes_raw_and_lean_answers(engine: SearchEngine) -> None:
    lean, full = _spec(), _spec(include_raw_content=True)
    assert lean.params.cache_key() == full.params.cache_key()  # one Tavily fetch, one cached page…
    assert HitResponses.key(lean) != HitResponses.key(full)  # …two built answers
    assert HitResponses.key(replace(full, return_raw_content=False)) == HitResponses.key(lean)

    page, hits = _page(), HitResponses()
    for spec in (lean, full):
        hits.put(HitResponses.key(spec), page, to_response(engine.outcome(spec, page, cached=True)))
    lean_resp, full_resp = hits.get(HitResponses.key(lean), page), hits.get(HitResponses.key(full), page)
    assert lean_resp is not None and full_resp is not None
    assert all(r.raw_content == "" for r in lean_resp.results)
    assert full_resp.results[0].raw_content == RAW
