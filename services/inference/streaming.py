"""Many completions over one stream (``CompleteStream``, ``CompleteBatch``): pure asyncio, no gRPC.

Items for a batch provider (Bright Data) are packed per (provider, model, location) into batches that are flushed
when full (the provider's max batch size) or ``linger`` seconds after their first item, whichever comes first.
Each batch is triggered, announced with :class:`BatchSubmitted` **before** it is polled (so the caller persists the
snapshot id and can resume it after a crash), then every member's :class:`ItemResult` is emitted as soon as that
batch completes. Items for other providers run concurrently, each under its provider's budget, and are emitted as
they finish. A :class:`Resume` re-attaches to a snapshot submitted earlier: it is polled and downloaded, never
triggered again.

Structure (ARCHITECTURE.md, "Go-style concurrency"): one ``asyncio.TaskGroup`` per stream owns every task (batch
runs, linger timers, single calls); the number of items admitted but not yet answered is bounded
(``max_pending``), so a fast producer waits instead of buffering without limit; results go out through a bounded
queue (:func:`drive`). An item's failure is a value (:class:`ItemFailure`), never the stream's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

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
    """Provider calls made by one stream: snapshots triggered + single calls (resumes are not new calls)."""

    calls: int = 0
    batches: int = 0


@dataclass
class _Pending:
    provider: BatchProvider
    model: str
    location: str
    items: list[tuple[str, CompletionRequest]] = field(default_factory=list)
    timer: asyncio.Task[None] | None = None


class StreamEngine:
    """Runs streams for one service. ``linger``: seconds a partial batch waits for more items; ``max_pending``:
    items admitted per stream and not yet answered."""

    def __init__(self, core: Inference, *, linger: float, max_pending: int) -> None:
        self.core = core
        self.linger = linger
        self.max_pending = max(1, max_pending)

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

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self.tg is not None
        self.tg.create_task(coro)

    async def run(self, inputs: AsyncIterable[StreamInput]) -> StreamStats:
        async with asyncio.TaskGroup() as tg:
            self.tg = tg
            async for inp in inputs:
                if isinstance(inp, Resume):
                    self.spawn(self._resume(inp))
                    continue
                await self.slots.acquire()  # backpressure: the reader waits while max_pending items are open
                self._admit(inp)
            # End of input: nothing more will join the partial batches.
            for key in list(self.pending):
                self._flush(key)
        return self.stats

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
                self._add_to_batch(provider, item.id, req)
                return
        except VantageError as e:
            self.spawn(self._result(item.id, failure_from(e)))
            return
        self.spawn(self._single(provider, item.id, req))

    async def _single(self, provider: Provider, item_id: str, req: CompletionRequest) -> None:
        self.stats.calls += 1
        try:
            outcome: Outcome = await provider.complete(req, deadline=self.deadline)
        except VantageError as e:
            outcome = failure_from(e, provider=provider.name)
        except Exception as e:  # a bug must fail its item, not the stream
            log.exception("stream_item_internal_error", provider=provider.name)
            outcome = ItemFailure("INTERNAL", f"internal error: {type(e).__name__}", provider=provider.name)
        await self._result(item_id, outcome)

    # --- batches ------------------------------------------------------------------------------------------------

    def _add_to_batch(self, provider: BatchProvider, item_id: str, req: CompletionRequest) -> None:
        key = (provider.name, req.model.lower(), req.location)
        p = self.pending.get(key)
        if p is None:
            p = self.pending[key] = _Pending(provider, req.model, req.location)
        p.items.append((item_id, req))
        if len(p.items) >= provider.capabilities.max_batch_size:
            self._flush(key)
        elif p.timer is None:
            assert self.tg is not None
            p.timer = self.tg.create_task(self._linger(key, p))

    async def _linger(self, key: tuple[str, str, str], p: _Pending) -> None:
        await asyncio.sleep(self.engine.linger)
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
        self.stats.calls += 1
        self.stats.batches += 1
        try:
            # Announced before polling, so the caller can persist it and resume instead of paying again.
            await self._emit(BatchSubmitted(snapshot_id, provider.name, p.model, p.location, ids))
            outcomes = await provider.collect_batch(
                snapshot_id, len(reqs), prompts=[prompt_of(r) for r in reqs], model=p.model, deadline=self.deadline
            )
        except Exception as e:  # a bug must fail the batch's items, not the stream
            log.exception("stream_batch_internal_error", provider=provider.name, snapshot_id=snapshot_id)
            outcomes = [ItemFailure("INTERNAL", f"internal error: {type(e).__name__}", provider=provider.name)] * len(ids)
        finally:
            # Cancelled before collecting (the stream ended): the snapshot runs on and can be resumed, but this
            # process stops counting it against the dataset's in-flight cap.
            provider.release_batch(snapshot_id)
        for item_id, outcome in zip(ids, outcomes, strict=True):
            await self._result(item_id, outcome)

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
        outcomes = await provider.collect_batch(
            r.snapshot_id, len(r.member_ids), model=r.model, deadline=self.deadline
        )
        for item_id, outcome in zip(r.member_ids, outcomes, strict=True):
            await self._emit(ItemResult(item_id, outcome))


async def drive(
    run: Callable[[Emit], Coroutine[Any, Any, Any]], *, maxsize: int = 256
) -> AsyncIterator[StreamEvent]:
    """Run ``run(emit)`` in a task and yield what it emits, through a queue of ``maxsize`` events (a slow reader
    slows the producers down). Re-raises the task's exception after the events it emitted; cancels the task when
    the reader stops early (the RPC was cancelled)."""
    queue: asyncio.Queue[StreamEvent] = asyncio.Queue(maxsize=maxsize)
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
