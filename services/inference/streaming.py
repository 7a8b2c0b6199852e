"""Many completions over one stream (``CompleteStream``, ``CompleteBatch``): pure asyncio, no gRPC.

Items for a batch provider (Bright Data) are packed per (provider, model, location) into batches that are flushed
when full (the provider's max batch size), at the end of the input, or once no item has joined for ``linger``
seconds, or ``max batch size × linger`` after the first item, while no cache lookup (which may add items) is
under way — and never later than :data:`HARD_LINGER_FACTOR` times that. A partial batch is a whole paid snapshot (Bright Data bills per snapshot's records,
and each snapshot holds one of the in-flight slots for its full duration): flushing the first items of a stream
while the rest are still in their cache lookup would cost one snapshot more than ⌈n / batch⌉ (issue 16 item 4).
Each batch is triggered, announced with :class:`BatchSubmitted` **before** it is polled (so the caller persists the
snapshot id and can resume it after a crash), then every member's :class:`ItemResult` is emitted as soon as that
batch completes. Items for other providers run concurrently, each under its provider's budget, and are emitted as
they finish. A :class:`Resume` re-attaches to a snapshot submitted earlier: it is polled and downloaded, never
triggered again.

**Response cache** (:mod:`services.inference.cache`, when the service has one): a batch-provider item is looked up
under the same key as a ``Complete`` of the same request (:func:`~services.inference.cache.request_key`: provider
id such as ``brightdata_chatgpt``, model, messages, location, parameters) before it joins a batch — the lookups of
items that arrive together are one ``SELECT`` — and a hit is answered at once ($0, ``cached``), never batched. Every
successful answer of a collected snapshot is stored (error records, missing and empty answers never are); the keys
of a snapshot submitted here are remembered in memory (the last :data:`REMEMBERED_SNAPSHOTS`) so that the answers of
a snapshot re-attached by a :class:`Resume` are stored too. ``no_cache`` items skip the lookup; their fresh answers
still refresh the entries. Single calls are cached by the provider wrapper (:class:`~services.inference.cache.
CachedProvider`).

Structure (ARCHITECTURE.md, "Go-style concurrency"): one ``asyncio.TaskGroup`` per stream owns every task (batch
runs, linger timers, single calls); the number of items admitted but not yet answered is bounded
(``max_pending``), so a fast producer waits instead of buffering without limit; results go out through a bounded
queue (:func:`drive`). An item's failure is a value (:class:`ItemFailure`), never the stream's failure: a task
that fails unexpectedly (a bug, an exception a provider did not translate) fails its own items with ``INTERNAL``
and the stream goes on. When the input itself breaks (the client stream carries an undecodable message), nothing
more is read, every item already admitted still gets its result, and then the input's error ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from services.inference.cache import Entry, as_hit, is_cached, request_key, result_to_json
from services.inference.core import Inference
from services.inference.providers import (
    BatchProvider,
    CompletionRequest,
    CompletionResult,
    ItemFailure,
    Outcome,
    Provider,
    failure_from,
)
from services.inference.providers.brightdata import prompt_of
from shared.errors import InvalidArgument, VantageError
from shared.grpc_client import Deadline

log = structlog.get_logger("vantage.inference.stream")

#: Snapshots submitted by this process whose cache keys are remembered (oldest forgotten first), so that a snapshot
#: re-attached after its stream broke still has its answers stored. ≤ 20 keys of 64 characters each.
REMEMBERED_SNAPSHOTS = 2000
#: A partial batch waits at most this many times ``max batch size × linger`` for cache lookups that may add to it.
HARD_LINGER_FACTOR = 10


@dataclass(frozen=True)
class Item:
    """One item of the input stream: a validated request, or the failure that validating it produced."""

    id: str
    request: CompletionRequest | None = None
    failure: ItemFailure | None = None


@dataclass(frozen=True)
class Resume:
    """Re-attach to snapshot ``snapshot_id``; record i answers ``member_ids[i]``."""

    snapshot_id: str
    model: str
    location: str
    member_ids: tuple[str, ...]


@dataclass(frozen=True)
class BatchSubmitted:
    snapshot_id: str
    provider: str
    model: str
    location: str
    member_ids: tuple[str, ...]


@dataclass(frozen=True)
class ItemResult:
    id: str
    outcome: Outcome


StreamInput = Item | Resume
StreamEvent = BatchSubmitted | ItemResult
Emit = Callable[[StreamEvent], Awaitable[None]]


@dataclass
class StreamStats:
    """Provider calls made by one stream: snapshots triggered + single calls that reached their provider (resumes
    are not new calls, cache hits reach no provider); ``cache_hits`` = items answered from the response cache."""

    calls: int = 0
    batches: int = 0
    cache_hits: int = 0


@dataclass
class _Pending:
    provider: BatchProvider
    model: str
    location: str
    items: list[tuple[str, CompletionRequest]] = field(default_factory=list)
    timer: asyncio.Task[None] | None = None
    first_at: float = 0.0  # monotonic s the first item joined
    last_at: float = 0.0  # monotonic s the latest item joined


class StreamEngine:
    """Runs streams for one service. ``linger``: seconds a partial batch waits for more items; ``max_pending``:
    items admitted per stream and not yet answered."""

    def __init__(self, core: Inference, *, linger: float, max_pending: int) -> None:
        self.core = core
        self.linger = linger
        self.max_pending = max(1, max_pending)
        # snapshot id → the cache key of each member (None = not to be stored), in submission order.
        self._snapshot_keys: OrderedDict[str, list[str | None]] = OrderedDict()

    def remember(self, snapshot_id: str, keys: list[str | None]) -> None:
        """Remember the cache keys of a snapshot submitted here (bounded: :data:`REMEMBERED_SNAPSHOTS`)."""
        if self.core.cache is None:
            return
        self._snapshot_keys[snapshot_id] = keys
        self._snapshot_keys.move_to_end(snapshot_id)
        while len(self._snapshot_keys) > REMEMBERED_SNAPSHOTS:
            self._snapshot_keys.popitem(last=False)

    async def store_answers(self, snapshot_id: str, provider: str, model: str, outcomes: list[Outcome]) -> None:
        """Store the successful answers of collected snapshot ``snapshot_id`` under the keys remembered for it (a
        snapshot this process did not submit, or whose count differs, is not stored); the keys are forgotten. Never
        raises (the cache logs its own errors)."""
        keys = self._snapshot_keys.pop(snapshot_id, None)
        cache = self.core.cache
        if cache is None or keys is None or len(keys) != len(outcomes):
            return
        entries = [
            Entry(key, provider, model, result_to_json(o))
            for key, o in zip(keys, outcomes, strict=True)
            if key is not None and isinstance(o, CompletionResult) and not is_cached(o) and (o.markdown or o.text)
        ]
        await cache.put_many(entries)

    async def run(
        self, inputs: AsyncIterable[StreamInput], emit: Emit, *, deadline: Deadline | None = None
    ) -> StreamStats:
        """Consume ``inputs`` to the end, emit every event, return when every admitted item has its result."""
        return await _Run(self, emit, deadline).run(inputs)


class _Run:
    def __init__(self, engine: StreamEngine, emit: Emit, deadline: Deadline | None) -> None:
        self.engine = engine
        self.core = engine.core
        self._emit = emit
        self.deadline = deadline
        self.slots = asyncio.Semaphore(engine.max_pending)
        self.pending: dict[tuple[str, str, str], _Pending] = {}
        self.stats = StreamStats()
        self.tg: asyncio.TaskGroup | None = None
        self.cache = self.core.cache
        self._lookups: list[tuple[BatchProvider, str, CompletionRequest, str]] = []  # waiting for the cache
        self._looking = False  # a lookup task is draining self._lookups
        self._input_done = False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self.tg is not None
        self.tg.create_task(coro)

    async def run(self, inputs: AsyncIterable[StreamInput]) -> StreamStats:
        input_error: Exception | None = None
        async with asyncio.TaskGroup() as tg:
            self.tg = tg
            try:
                async for inp in inputs:
                    if isinstance(inp, Resume):
                        self.spawn(self._resume(inp))
                        continue
                    await self.slots.acquire()  # backpressure: the reader waits while max_pending items are open
                    self._admit(inp)
            except Exception as e:  # the input broke: answer what was admitted, then report it (see module doc)
                input_error = e
            # End of input: nothing more will join the partial batches (once the cache lookups under way are done).
            self._input_done = True
            if not self._looking:
                self._flush_all()
        if input_error is not None:
            raise input_error
        return self.stats

    def _flush_all(self) -> None:
        for key in list(self.pending):
            self._flush(key)

    async def _result(self, item_id: str, outcome: Outcome) -> None:
        try:
            await self._emit(ItemResult(item_id, outcome))
        finally:
            self.slots.release()

    def _admit(self, item: Item) -> None:
        if item.failure is not None or item.request is None:
            failure = item.failure or ItemFailure("INVALID_ARGUMENT", "item has no request")
            self.spawn(self._result(item.id, failure))
            return
        req = item.request
        try:
            route = self.core.route(req.model)
            provider = self.core.provider_for(route)
            if route.provider.capabilities.supports_batching and isinstance(provider, BatchProvider):
                check = getattr(provider, "check", None)
                if check is not None:
                    check(req)
                if self.cache is not None and not getattr(req, "no_cache", False):
                    self._lookup(provider, item.id, req)
                else:
                    self._add_to_batch(provider, item.id, req)
                return
        except VantageError as e:
            self.spawn(self._result(item.id, failure_from(e)))
            return
        except Exception as e:  # a bug must fail its item, not the stream
            log.exception("stream_item_internal_error")
            self.spawn(self._result(item.id, ItemFailure("INTERNAL", f"internal error: {type(e).__name__}")))
            return
        self.spawn(self._single(provider, item.id, req))

    async def _single(self, provider: Provider, item_id: str, req: CompletionRequest) -> None:
        try:
            outcome: Outcome = await provider.complete(req, deadline=self.deadline)
        except VantageError as e:
            outcome = failure_from(e, provider=provider.name)
        except Exception as e:  # a bug must fail its item, not the stream
            log.exception("stream_item_internal_error", provider=provider.name)
            outcome = ItemFailure("INTERNAL", f"internal error: {type(e).__name__}", provider=provider.name)
        if is_cached(outcome):
            self.stats.cache_hits += 1
        else:
            self.stats.calls += 1
        await self._result(item_id, outcome)

    # --- the response cache, for batch items ---------------------------------------------------------------------

    def _key(self, provider: BatchProvider, req: CompletionRequest) -> str:
        return request_key(provider.name, req, self.core.settings)

    def _lookup(self, provider: BatchProvider, item_id: str, req: CompletionRequest) -> None:
        """Queue ``req`` for a cache lookup; items queued while one lookup runs share the next one."""
        self._lookups.append((provider, item_id, req, self._key(provider, req)))
        if not self._looking:
            self._looking = True
            self.spawn(self._drain_lookups())

    async def _drain_lookups(self) -> None:
        assert self.cache is not None
        try:
            while self._lookups:
                chunk, self._lookups = self._lookups, []
                try:
                    hits = await self.cache.get_many(k for *_, k in chunk)  # a database error is all misses
                except Exception:  # so is anything else: the items are asked, not lost
                    log.exception("stream_cache_lookup_error")
                    hits = {}
                for provider, item_id, req, key in chunk:
                    hit = hits.get(key)
                    if hit is not None:
                        self.stats.cache_hits += 1
                        self.spawn(self._result(item_id, as_hit(hit)))
                    else:
                        self._add_to_batch(provider, item_id, req)
        finally:
            self._looking = False
        if self._input_done:
            self._flush_all()

    # --- batches ------------------------------------------------------------------------------------------------

    def _add_to_batch(self, provider: BatchProvider, item_id: str, req: CompletionRequest) -> None:
        key = (provider.name, req.model.lower(), req.location)
        p = self.pending.get(key)
        if p is None:
            p = self.pending[key] = _Pending(provider, req.model, req.location)
        p.items.append((item_id, req))
        p.last_at = time.monotonic()
        if len(p.items) == 1:
            p.first_at = p.last_at
        if len(p.items) >= provider.capabilities.max_batch_size:
            self._flush(key)
        elif p.timer is None:
            assert self.tg is not None
            p.timer = self.tg.create_task(self._linger(key, p))

    async def _linger(self, key: tuple[str, str, str], p: _Pending) -> None:
        """Flush ``p`` once it is quiet (module docstring): no item for ``linger`` s, or ``max batch size ×
        linger`` s after its first item, and no cache lookup under way; at the latest :data:`HARD_LINGER_FACTOR`
        times that after its first item."""
        linger = self.engine.linger
        soft = p.first_at + linger * p.provider.capabilities.max_batch_size
        hard = p.first_at + HARD_LINGER_FACTOR * linger * p.provider.capabilities.max_batch_size
        while True:
            now = time.monotonic()
            quiet_in = p.last_at + linger - now
            if now >= hard or ((quiet_in <= 0 or now >= soft) and not self._looking):
                break
            await asyncio.sleep(max(0.001, min(hard - now, quiet_in if quiet_in > 0 else linger / 4)))
        if self.pending.get(key) is p:
            p.timer = None  # this task is the timer: do not cancel it from _flush
            self._flush(key)

    def _flush(self, key: tuple[str, str, str]) -> None:
        p = self.pending.pop(key)
        if p.timer is not None:
            p.timer.cancel()
        self.spawn(self._run_batch(p))

    async def _run_batch(self, p: _Pending) -> None:
        ids = tuple(i for i, _ in p.items)
        reqs = [r for _, r in p.items]
        provider = p.provider
        try:
            snapshot_id = await provider.submit_batch(reqs, deadline=self.deadline)
        except VantageError as e:
            failure = failure_from(e, provider=provider.name)
            for item_id in ids:
                await self._result(item_id, failure)
            return
        except Exception as e:  # a bug must fail the batch's items, not the stream
            log.exception("stream_batch_internal_error", provider=provider.name)
            failure = ItemFailure("INTERNAL", f"internal error: {type(e).__name__}", provider=provider.name)
            for item_id in ids:
                await self._result(item_id, failure)
            return
        self.stats.calls += 1
        self.stats.batches += 1
        self.engine.remember(snapshot_id, [self._key(provider, r) for r in reqs])
        try:
            # Announced before polling, so the caller can persist it and resume instead of paying again.
            await self._emit(BatchSubmitted(snapshot_id, provider.name, p.model, p.location, ids))
            outcomes = await provider.collect_batch(
                snapshot_id, len(reqs), prompts=[prompt_of(r) for r in reqs], model=p.model, deadline=self.deadline
            )
        except Exception as e:  # a bug must fail the batch's items, not the stream
            log.exception("stream_batch_internal_error", provider=provider.name, snapshot_id=snapshot_id)
            failure = ItemFailure("INTERNAL", f"internal error: {type(e).__name__}", provider=provider.name)
            outcomes = [failure] * len(ids)
        finally:
            # Cancelled before collecting (the stream ended): the snapshot runs on and can be resumed, but this
            # process stops counting it against the dataset's in-flight cap.
            provider.release_batch(snapshot_id)
        outcomes = _fit(outcomes, len(ids), provider.name)
        await self._store(snapshot_id, provider.name, p.model, outcomes)
        for item_id, outcome in zip(ids, outcomes, strict=True):
            await self._result(item_id, outcome)

    async def _store(self, snapshot_id: str, provider: str, model: str, outcomes: list[Outcome]) -> None:
        try:
            await self.engine.store_answers(snapshot_id, provider, model, outcomes)
        except Exception:  # the answers still go out; only their caching is lost
            log.exception("stream_cache_store_error", provider=provider, snapshot_id=snapshot_id)

    async def _resume(self, r: Resume) -> None:
        if not r.member_ids:
            log.warning("resume_without_members", snapshot_id=r.snapshot_id)
            return
        try:
            if not r.snapshot_id:
                raise InvalidArgument("resume.snapshot_id is required", field="resume.snapshot_id")
            route = self.core.route(r.model)
            provider = self.core.provider_for(route)
            if not isinstance(provider, BatchProvider):
                raise InvalidArgument(f"model {r.model!r} is not served by a batch provider", field="resume.model")
        except VantageError as e:
            failure = failure_from(e)
            for item_id in r.member_ids:
                await self._emit(ItemResult(item_id, failure))
            return
        try:
            outcomes = await provider.collect_batch(
                r.snapshot_id, len(r.member_ids), model=r.model, deadline=self.deadline
            )
        except VantageError as e:
            outcomes = [failure_from(e, provider=provider.name)] * len(r.member_ids)
        except Exception as e:  # a bug (or an id the provider did not check) fails this resume, not the stream
            log.exception("stream_resume_internal_error", provider=provider.name)
            outcomes = [ItemFailure("INTERNAL", f"internal error: {type(e).__name__}", provider=provider.name)] * len(
                r.member_ids
            )
        outcomes = _fit(outcomes, len(r.member_ids), provider.name)
        await self._store(r.snapshot_id, provider.name, r.model, outcomes)
        for item_id, outcome in zip(r.member_ids, outcomes, strict=True):
            await self._emit(ItemResult(item_id, outcome))


def _fit(outcomes: list[Outcome], count: int, provider: str) -> list[Outcome]:
    """``outcomes`` as exactly ``count`` outcomes (one per member): a provider that returned another number is a
    bug, and its missing members fail with ``INTERNAL`` instead of ending the stream."""
    if len(outcomes) == count:
        return outcomes
    log.error("stream_batch_outcome_count", provider=provider, expected=count, got=len(outcomes))
    missing = ItemFailure("INTERNAL", f"internal error: the provider answered {len(outcomes)} of {count} members",
                          provider=provider)
    return [*outcomes[:count], *[missing] * (count - len(outcomes))]


async def drive(
    run: Callable[[Emit], Coroutine[Any, Any, Any]], *, maxsize: int = 256
) -> AsyncIterator[StreamEvent]:
    """Run ``run(emit)`` in a task and yield what it emits, through a queue of ``maxsize`` events (a slow reader
    slows the producers down). Re-raises the task's exception after the events it emitted; cancels the task when
    the reader stops early (the RPC was cancelled)."""
    queue: asyncio.Queue[StreamEvent] = asyncio.Queue(maxsize=maxsize)
    # Not a TaskGroup: this is an async generator, and a TaskGroup (a cancel scope) must not span a ``yield``
    # (PEP 789; anyio's and trio's docs say the same). The task's lifetime is this generator's: the ``finally``
    # cancels and awaits it whether the reader finishes, stops early or is cancelled.
    task: asyncio.Task[Any] = asyncio.create_task(run(queue.put))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            while not queue.empty():
                yield queue.get_nowait()
            task.result()
            return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def totals(results: list[Outcome]) -> tuple[int, int, float]:
    """(input tokens, output tokens, USD) over the answers among ``results``."""
    ok = [r for r in results if isinstance(r, CompletionResult)]
    return sum(r.input_tokens for r in ok), sum(r.output_tokens for r in ok), sum(r.cost_usd for r in ok)
