"""gRPC servicer of ``vantage.search.v1.SearchService`` and its builder.

Handlers are thin: validate (:mod:`services.search.core`) → run (:class:`services.search.engine.SearchEngine`) →
build the response. The Tavily client, its concurrency limiter and the result cache are created once in
:func:`build` and shared by every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from services.search.core import (
    Defaults,
    SearchSpec,
    TavilyPage,
    check_idempotency_key,
    validate_company,
    validate_search,
)
from services.search.engine import SearchEngine, SearchOutcome
from services.search.records import CallRecorder, KeyedCall
from services.search.tavily import TavilyBackend, current_call
from shared.config import SearchSettings
from shared.grpc_client import forward_timeout
from shared.grpc_server import Mount
from vantage.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name


def defaults_from(settings: SearchSettings) -> Defaults:
    """Request defaults from settings (max_results 20, depth advanced, raw content fetched, min_score 0.4,
    context budget 60,000 characters, 15,000 per source)."""
    return Defaults(
        max_results=settings.search_max_results,
        search_depth=settings.search_depth,
        include_raw_content=settings.search_include_raw_content,
        min_score=settings.search_min_score,
        context_char_budget=settings.context_char_budget,
        context_source_char_cap=settings.context_source_char_cap,
    )


def to_response(out: SearchOutcome) -> search_pb2.SearchResponse:
    return search_pb2.SearchResponse(
        results=[
            search_pb2.SearchResult(
                title=h.title, url=h.url, content=h.content, raw_content=h.raw_content, score=h.score
            )
            for h in out.results
        ],
        returned_count=out.returned_count,
        filtered_out_count=out.filtered_out_count,
        credits=out.credits,
        cost_usd=out.cost_usd,
        cached=out.cached,
        query=out.query,
        llm_context=out.llm_context,
        context_truncated=out.context_truncated,
        request_id=out.request_id,
        credits_saved=out.credits_saved,
    )


#: Built cache-hit answers kept (one per cached page × filter/context variant); each holds one page's text.
HIT_RESPONSES = 32


#: :meth:`HitResponses.key`: the page's cache key (``SearchParams.cache_key()``) first, then the request variant.
HitKey = tuple[tuple[object, ...], str, float, int, int, str, bool]


class HitResponses:
    """The :class:`SearchResponse` of a cache hit, built once per cached page and per request variant
    (``min_score``, context budget, source cap, official domain, query spelling, raw content returned or not). A
    hit answers from the same page object until the page is replaced or expires, so an entry is used only while its
    page is the one the cache returned (identity check); a small LRU bounds what it keeps alive."""

    def __init__(self, size: int = HIT_RESPONSES) -> None:
        self._size = size
        self._entries: OrderedDict[HitKey, tuple[TavilyPage, search_pb2.SearchResponse]] = OrderedDict()

    @staticmethod
    def key(spec: SearchSpec) -> HitKey:
        return (
            spec.params.cache_key(),
            spec.params.query,
            spec.min_score,
            spec.context_char_budget,
            spec.context_source_char_cap,
            spec.official_domain,
            spec.return_raw_content,
        )

    def get(self, key: HitKey, page: TavilyPage) -> search_pb2.SearchResponse | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] is not page:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: HitKey, page: TavilyPage, response: search_pb2.SearchResponse) -> None:
        self._entries[key] = (page, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


#: Validated requests remembered (per RPC), so that a repeated request skips validation on a cache hit.
VALIDATED_REQUESTS = 256
#: Larger requests (e.g. hundreds of long include_domains) are validated every time rather than remembered, so the
#: memo holds at most VALIDATED_REQUESTS × this many bytes of keys.
MAX_REMEMBERED_REQUEST_BYTES = 8_192


class ValidatedRequests:
    """Validated specs (and their built-answer keys) of recent requests, keyed by the request's serialized bytes.

    Validation is a pure function of the request and the servicer's settings, so a request seen before maps to the
    same :class:`SearchSpec`; an invalid request raises every time and is never remembered, nor is one over
    :data:`MAX_REMEMBERED_REQUEST_BYTES`. A small LRU."""

    def __init__(self, size: int = VALIDATED_REQUESTS) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, tuple[SearchSpec, HitKey]] = OrderedDict()

    def spec(self, request: Message, validate: Callable[[Any], SearchSpec]) -> tuple[SearchSpec, HitKey]:
        """``(validate(request), HitResponses.key(spec))``, remembered for ``request``'s bytes. Raises what
        ``validate`` raises (:class:`~shared.errors.InvalidArgument`); nothing is remembered then."""
        request_key = request.SerializeToString(deterministic=True)
        if len(request_key) > MAX_REMEMBERED_REQUEST_BYTES:
            spec = validate(request)
            return spec, HitResponses.key(spec)
        entry = self._entries.get(request_key)
        if entry is None:
            spec = validate(request)
            entry = self._entries[request_key] = (spec, HitResponses.key(spec))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(request_key)
        return entry


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    """``Search`` and ``SearchCompany`` over one :class:`SearchEngine`.

    A call with an ``idempotency_key`` and a ``recorder`` (:class:`~services.search.records.CallRecorder`, the
    service has a database) runs as a task of its own, shielded from the caller: when the caller goes away (its
    worker killed, its deadline passed) before the Tavily request is sent, the task is cancelled and recorded
    ``not_sent``; once the request is sent, it is allowed to finish (bounded by the call's deadline) so that what
    Tavily billed is recorded exactly. Every keyed call ends in one record."""

    def __init__(self, engine: SearchEngine, settings: SearchSettings, recorder: CallRecorder | None = None) -> None:
        self._engine = engine
        self._settings = settings
        self._defaults = defaults_from(settings)
        self._hits = HitResponses()
        self._searches = ValidatedRequests()
        self._companies = ValidatedRequests()
        self.recorder = recorder
        #: Keyed calls running (their tasks), including those whose caller went away.
        self.keyed_tasks: set[asyncio.Task[search_pb2.SearchResponse]] = set()

    async def _keyed(
        self, key: str, spec: SearchSpec, hit_key: HitKey, no_cache: bool, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        rec = self.recorder
        if not key or rec is None:
            return await self._run(spec, hit_key, no_cache, context)
        call = rec.begin(key)
        token = current_call.set(call)  # copied into the task's context: the backend counts its requests on it
        try:
            task = asyncio.ensure_future(self._run(spec, hit_key, no_cache, context))
        finally:
            current_call.reset(token)
        self.keyed_tasks.add(task)
        task.add_done_callback(functools.partial(self._record, rec, call))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            call_gone(rec, call, task)
            raise

    def _record(self, rec: CallRecorder, call: KeyedCall, task: asyncio.Task[search_pb2.SearchResponse]) -> None:
        self.keyed_tasks.discard(task)
        urgent = call.orphaned
        if task.cancelled():
            rec.finish(call, state="failed" if call.sent else "not_sent", urgent=urgent)
        elif task.exception() is not None:
            rec.finish(call, state="failed", urgent=urgent)
        else:
            resp = task.result()
            rec.finish(call, state="answered", credits=resp.credits, usd=resp.cost_usd, urgent=urgent)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the keyed calls still running (sent requests whose callers went
        away), then cancel what is left (recorded with their requests uncertain)."""
        tasks = set(self.keyed_tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, timeout_s))
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _run(
        self, spec: SearchSpec, hit_key: HitKey, no_cache: bool, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        # The caller's remaining time (rpc_timeout_seconds without a deadline) covers every attempt and back-off;
        # the backend caps each attempt at provider_timeout_seconds.
        timeout = forward_timeout(context, self._settings.rpc_timeout_seconds)
        # hit_key[0] is spec.params.cache_key() (HitResponses.key), computed once per distinct request.
        page, cached = await self._engine.page(spec, timeout_s=timeout, no_cache=no_cache, key=hit_key[0])
        if not cached:
            return to_response(self._engine.outcome(spec, page, cached))
        # A hit's answer depends only on the page and the variant (credits 0, credits_saved = the page's): build
        # it once and answer the same (never mutated) message to every later hit.
        response = self._hits.get(hit_key, page)
        if response is None:
            response = to_response(self._engine.outcome(spec, page, cached))
            self._hits.put(hit_key, page, response)
        return response

    async def Search(
        self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        key = _take_key(request)
        spec, hit_key = self._searches.spec(request, self._validate_search)
        return await self._keyed(key, spec, hit_key, request.no_cache, context)

    def _validate_search(self, request: search_pb2.SearchRequest) -> SearchSpec:
        return validate_search(
            query=request.query,
            max_results=request.max_results if request.HasField("max_results") else None,
            search_depth=request.search_depth,
            include_raw_content=request.include_raw_content if request.HasField("include_raw_content") else None,
            min_score=request.min_score if request.HasField("min_score") else None,
            include_domains=request.include_domains,
            exclude_domains=request.exclude_domains,
            context_char_budget=request.context_char_budget,
            defaults=self._defaults,
        )

    async def SearchCompany(
        self, request: search_pb2.SearchCompanyRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        key = _take_key(request)
        spec, hit_key = self._companies.spec(request, self._validate_company)
        return await self._keyed(key, spec, hit_key, request.no_cache, context)

    def _validate_company(self, request: search_pb2.SearchCompanyRequest) -> SearchSpec:
        return validate_company(
            company=request.company,
            domain=request.domain,
            template=self._settings.company_query_template,
            search_depth=request.search_depth,
            min_score=request.min_score if request.HasField("min_score") else None,
            max_results=request.max_results if request.HasField("max_results") else None,
            context_char_budget=request.context_char_budget,
            include_raw_content=request.include_raw_content if request.HasField("include_raw_content") else None,
            defaults=self._defaults,
        )


def _take_key(request: search_pb2.SearchRequest | search_pb2.SearchCompanyRequest) -> str:
    """The request's ``idempotency_key`` (checked: :func:`~services.search.core.check_idempotency_key`), cleared
    from the request so that the memo of validated requests, keyed by the request's bytes, still matches."""
    key = request.idempotency_key
    if key:
        check_idempotency_key(key)
        request.ClearField("idempotency_key")
    return key


def call_gone(rec: CallRecorder, call: KeyedCall, task: asyncio.Task[search_pb2.SearchResponse]) -> None:
    """The caller of a keyed call went away: a call whose Tavily request is not sent yet is cancelled (recorded
    ``not_sent``); a sent one goes on, its record written at once when it ends (the caller's reaper is waiting)."""
    call.orphaned = True
    if not task.done() and not call.sent:
        task.cancel()
    elif task.done():
        rec.wake()


@contextlib.asynccontextmanager
async def build(settings: SearchSettings) -> AsyncIterator[list[Mount]]:
    """Create the Tavily backend (its SDK clients, one limiter) and the cache; yield the servicer; close the clients.

    Everything opened is registered on one ``AsyncExitStack`` as soon as it exists, so a failure part-way (a bad
    setting refused by the engine or the servicer) closes what was already opened, in reverse order."""
    async with contextlib.AsyncExitStack() as stack:
        backend = TavilyBackend(settings)
        stack.push_async_callback(backend.aclose)
        engine = SearchEngine(
            backend,
            usd_per_credit=settings.tavily_credit_usd,
            cache_entries=settings.search_cache_entries,
            cache_ttl_seconds=settings.search_cache_ttl_seconds,
            cache_max_bytes=settings.search_cache_max_bytes,
        )
        # Records of keyed calls in the shared database (services/search/records.py), read by the orchestrator's
        # reaper; None without a database URL (or when it cannot serve): calls are served as before, unrecorded.
        recorder = await CallRecorder.open(settings.search_database_url)
        if recorder is not None:
            stack.push_async_callback(recorder.aclose)
        servicer = SearchServicer(engine, settings, recorder)
        # First on exit: keyed calls whose caller went away finish (within the grace period) and are recorded.
        stack.push_async_callback(servicer.drain, settings.grace_seconds)
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, SERVICE_NAME)]
