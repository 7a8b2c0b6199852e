"""The search pipeline behind both RPCs, without gRPC: cache / single-flight → backend → filter → sort →
credits → LLM context.

A cache hit (or a call coalesced onto an identical one in flight) costs nothing: ``credits`` = 0,
``cost_usd`` = 0, ``cached`` = true, and ``credits_saved`` = the credits the original fetch was billed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from sys import getsizeof

import structlog

from services.search.cache import CachedFlight, Origin, TTLCache
from services.search.core import (
    Hit,
    SearchBackend,
    SearchSpec,
    TavilyPage,
    cost_usd,
    filter_hits,
    format_llm_context,
)

log = structlog.get_logger("vantage.search")


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """One answered search. ``credits`` Tavily credits and ``cost_usd`` USD billed by *this* call;
    ``credits_saved`` credits a cache hit avoided; ``llm_context`` / ``context_truncated`` per
    :func:`~services.search.core.format_llm_context` ("" / false when no budget was asked for)."""

    query: str
    results: list[Hit]
    returned_count: int
    filtered_out_count: int
    credits: int
    cost_usd: float
    cached: bool
    credits_saved: int
    request_id: str
    llm_context: str = ""
    context_truncated: bool = False


def page_bytes(page: TavilyPage) -> int:
    """Bytes of memory a cached page holds (its objects, titles, URLs, snippets, raw content): the number
    :func:`~services.search.cache.deep_sizeof` gives, summed field by field over the page's known shape instead of
    by walking it generically (it runs once per page cached)."""
    size = getsizeof(page) + getsizeof(page.query) + getsizeof(page.hits) + getsizeof(page.credits)
    size += getsizeof(page.request_id) + getsizeof(page.response_time_s)
    for h in page.hits:
        size += (getsizeof(h) + getsizeof(h.title) + getsizeof(h.url) + getsizeof(h.content)
                 + getsizeof(h.raw_content) + getsizeof(h.score))
    return size


class SearchEngine:
    """Runs validated searches (:class:`~services.search.core.SearchSpec`) against ``backend`` through a
    TTL/LRU cache with single-flight. ``usd_per_credit``: price of one Tavily credit in USD; the cache holds at
    most ``cache_entries`` pages and ``cache_max_bytes`` bytes of memory (0 = no byte bound)."""

    def __init__(
        self,
        backend: SearchBackend,
        *,
        usd_per_credit: float,
        cache_entries: int,
        cache_ttl_seconds: float,
        cache_max_bytes: int = 0,
    ) -> None:
        self.backend = backend
        self.usd_per_credit = usd_per_credit
        self.flight: CachedFlight[tuple[object, ...], TavilyPage] = CachedFlight(
            TTLCache(cache_entries, cache_ttl_seconds, max_weight=cache_max_bytes, weigh=page_bytes)
        )

    async def run(self, spec: SearchSpec, *, timeout_s: float, no_cache: bool = False) -> SearchOutcome:
        """Answer ``spec`` within ``timeout_s`` seconds. ``no_cache`` skips the cache lookup (the fresh page still
        replaces the cached one)."""
        page, cached = await self.page(spec, timeout_s=timeout_s, no_cache=no_cache)
        return self.outcome(spec, page, cached)

    async def page(
        self, spec: SearchSpec, *, timeout_s: float, no_cache: bool = False, key: tuple[object, ...] | None = None
    ) -> tuple[TavilyPage, bool]:
        """The page answering ``spec`` (cache / single-flight / backend) and whether it came without a fetch of
        this call's own. The same cached page is returned as the same object until it is replaced or expires.
        ``key``: ``spec.params.cache_key()`` when the caller has it already."""
        params = spec.params

        async def fetch() -> TavilyPage:
            return await self.backend.search(params, timeout_s=timeout_s)

        page, origin = await self.flight.get(key or params.cache_key(), fetch, refresh=no_cache)
        cached = origin is not Origin.FETCHED
        if cached:
            log.debug("search_cache", origin=origin.value, credits_saved=page.credits)
        return page, cached

    def outcome(self, spec: SearchSpec, page: TavilyPage, cached: bool) -> SearchOutcome:
        """Filter, sort and bill ``page`` for ``spec`` and build its LLM context (pure given the page). The results
        carry ``raw_content`` only when ``spec.return_raw_content`` (the context is built from it either way)."""
        params = spec.params
        kept, dropped = filter_hits(page.hits, spec.min_score)
        context, truncated = "", False
        if spec.context_char_budget > 0:
            context, truncated = format_llm_context(
                kept,
                spec.context_char_budget,
                spec.context_source_char_cap,
                official_domain=spec.official_domain,
            )
        credits = 0 if cached else page.credits
        results = kept
        if not spec.return_raw_content:
            results = [replace(h, raw_content="") if h.raw_content else h for h in kept]
        return SearchOutcome(
            query=page.query or params.query,
            results=results,
            returned_count=len(page.hits),
            filtered_out_count=dropped,
            credits=credits,
            cost_usd=cost_usd(credits, self.usd_per_credit),
            cached=cached,
            credits_saved=page.credits if cached else 0,
            request_id=page.request_id,
            llm_context=context,
            context_truncated=truncated,
        )
