"""The streaming engine under every run: claim items, admit them under a bound, run each item's whole path in its
own task, one long-lived budget per downstream service. No phase barrier and no ``gather`` over a batch: a slot
that frees is reused at once, so makespan ≈ max over stages of (items × latency / budget) + one item's path
(reference/performance.md §3: within ~2 % of the flow-shop lower bound, where barriers or gathered batches lose
2.3–7.5×).

Go idioms, in asyncio:

- :class:`Budget` — a semaphore per downstream service, held only for the duration of one call (not across
  retries' back-off), observable (``in_use``, ``waiting``).
- :class:`Admission` — errgroup ``SetLimit``: the producer reserves a slot *before* it claims and spawns, so at
  most ``limit`` items are in memory whatever the input size.
- :func:`stream_items` — one ``asyncio.TaskGroup`` owns the producer loop's children (no orphan tasks).
- :class:`Inflight` — cooperative cancellation: stop claiming, cancel the items that are waiting on the network,
  but let an item that is inside a database write finish it, so a cancel never leaves a half-written item.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared import metrics
from shared.config import OrchestratorSettings

T = TypeVar("T")


class Budget:
    """Concurrency budget of one downstream service (e.g. 10 concurrent inference calls)."""

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"budget {name!r} must be ≥ 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._sem = asyncio.Semaphore(capacity)
        self.in_use = 0
        self.waiting = 0
        self.peak = 0  # most slots ever in use at once (tests assert the budget held)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the enclosed call; also counted in the ``budget_in_use`` / ``budget_waiting`` gauges
        (label = the budget's name, summed over the runs this process executes)."""
        waiting = metrics.BUDGET_WAITING.labels(self.name)
        self.waiting += 1
        waiting.inc()
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
            waiting.dec()
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        try:
            with metrics.budget_slot(self.name):
                yield
        finally:
            self.in_use -= 1
            self._sem.release()

    def __repr__(self) -> str:
        return f"Budget({self.name}: {self.in_use}/{self.capacity} in use, {self.waiting} waiting)"


class Admission:
    """At most ``limit`` items in flight. The single producer reserves slots, each finished item releases one."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be ≥ 1, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self._freed = asyncio.Event()

    async def reserve(self, at_most: int, at_least: int = 1) -> int:
        """Wait until ``at_least`` slots are free (one when nothing is in flight), then take up to ``at_most`` free
        slots. Returns how many were taken (≥ 1)."""
        while self.in_flight > 0 and self.limit - self.in_flight < max(1, min(at_least, self.limit)):
            self._freed.clear()
            await self._freed.wait()
        n = max(1, min(at_most, self.limit - self.in_flight))
        self.in_flight += n
        return n

    def release(self, n: int = 1) -> None:
        if n <= 0:
            return
        self.in_flight -= n
        assert self.in_flight >= 0, "admission released more than reserved"
        self._freed.set()


class Inflight:
    """The running item tasks, and which of them are inside a critical section (a database write)."""

    def __init__(self) -> None:
        self.stopping = False
        self._critical: dict[asyncio.Task[object], bool] = {}

    def add(self, task: asyncio.Task[object]) -> None:
        self._critical[task] = False
        task.add_done_callback(self._critical.pop)

    def __len__(self) -> int:
        return len(self._critical)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Mark the current task as writing: :meth:`stop` will not cancel it until the block is left."""
        task = asyncio.current_task()
        known = task in self._critical
        if known:
            self._critical[task] = True  # type: ignore[index]
        try:
            yield
        finally:
            if known and task in self._critical:
                self._critical[task] = False

    def drain(self) -> None:
        """Stop claiming but let the running tasks finish (a worker's SIGTERM grace period); :meth:`stop` later
        cancels what is left."""
        self.stopping = True

    def cancel(self, task: asyncio.Task[object]) -> bool:
        """Cancel one task unless it is inside a critical section (its lease was lost: its write-back would be
        rejected anyway, and its next paid call would be a repeat). Returns whether it was cancelled."""
        if self._critical.get(task) is False and not task.done():
            task.cancel()
            return True
        return False

    def stop(self) -> int:
        """Stop: cancel every task that is not inside a critical section (those check :attr:`stopping` when they
        leave it). Returns how many were cancelled."""
        self.stopping = True
        n = 0
        for task, critical in list(self._critical.items()):
            if not critical and not task.done():
                task.cancel()
                n += 1
        return n


@dataclass
class StreamResult(Generic[T]):
    claimed: int = 0
    stopped: bool = False


async def stream_items(
    claim: Callable[[int], Awaitable[Sequence[T]]],
    process: Callable[[T], Awaitable[None]],
    *,
    max_in_flight: int,
    claim_batch: int,
    inflight: Inflight | None = None,
) -> StreamResult[T]:
    """Claim items (``claim(n)`` returns at most n) and run ``process(item)`` for each, at most ``max_in_flight`` at
    once, until ``claim`` returns nothing or :meth:`Inflight.stop` is called. Returns when every started item has
    finished (or been cancelled). An exception from ``process`` cancels the others and propagates (as an
    ``ExceptionGroup``): ``process`` must turn an item's own failures into values and raise only for
    infrastructure failures (the database) that make going on pointless."""
    inflight = inflight if inflight is not None else Inflight()
    admission = Admission(max_in_flight)
    # Claim in batches: once the pipeline is full, wait until a batch's worth of slots is free (at most a quarter of
    # the bound, so the stages stay fed) instead of claiming one item per finished one — one claim transaction for
    # several items (issue 16 item 2), and items that start together share their first ledger write.
    refill = max(1, min(claim_batch, max_in_flight // 4))
    result: StreamResult[T] = StreamResult()

    async def run_one(item: T) -> None:
        try:
            await process(item)
        finally:
            admission.release()

    async with asyncio.TaskGroup() as tg:
        while not inflight.stopping:
            n = await admission.reserve(claim_batch, refill)
            if inflight.stopping:
                admission.release(n)
                break
            items = await claim(n)
            admission.release(n - len(items))
            if not items or inflight.stopping:
                # Items claimed while a stop came in stay 'running' in the database; the caller releases them.
                admission.release(len(items))
                break
            result.claimed += len(items)
            for item in items:
                inflight.add(tg.create_task(run_one(item)))
    result.stopped = inflight.stopping
    return result


@dataclass
class Budgets:
    """One long-lived budget per downstream service (settings.*_concurrency)."""

    search: Budget
    inference: Budget
    extraction: Budget

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> Budgets:
        return cls(
            Budget("search", settings.search_concurrency),
            Budget("inference", settings.inference_concurrency),
            Budget("extraction", settings.extraction_concurrency),
        )

    @property
    def total(self) -> int:
        return self.search.capacity + self.inference.capacity + self.extraction.capacity
