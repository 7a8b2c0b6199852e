"""Every query of the orchestrator, behind one class, :class:`Store`.

Rules the methods follow:

- Writes are idempotent: results and ledger rows are ``INSERT … ON CONFLICT DO NOTHING`` on their unique keys
  (the SQLite and PostgreSQL dialect inserts).
- A result is written together with ``status = 'done'`` in ONE transaction, guarded by ``WHERE attempts =
  :attempt``: ``attempts`` is bumped by every claim and is the claim's fencing token, so the write-back of a stale
  attempt (an item reclaimed after its lease expired, or re-queued by a resume) changes nothing.
- Claims take items with a lease (``lease_owner``, ``lease_expires_at``) — ``UPDATE … WHERE id IN (SELECT … FOR
  UPDATE SKIP LOCKED)`` on PostgreSQL, so any number of processes share a run; on SQLite every write goes through
  one ``asyncio.Lock`` and ``BEGIN IMMEDIATE`` (SQLite has one writer anyway; the lock turns "database is locked"
  retries into a queue).
- Leases are renewed by :meth:`Store.heartbeat` (about every third of the lease, the pattern of Payload CMS PR
  #17220: ``processingUntil`` renewed at ⅓ plus a ``processingToken`` so that only the current owner completes);
  expired leases are returned to ``pending`` by any claim of the run and by :meth:`Store.reap`, the periodic
  rescuer run by workers and the server (River's ``RescueStuckJobsAfter``, procrastinate's stalled-jobs retry,
  graphile-worker's sweep — see ``shared/reference/performance.md`` §4.3).
- Completions and ledger writes go through a group commit (:class:`_GroupCommit`): the operations that queue up
  while one transaction commits share the next one, so N items finishing together cost one commit instead of N
  (performance.md §4.2: batches of 10 → ~10× the transitions per second).
- On PostgreSQL a transient database error (connection lost, server restarting, deadlock detected) is retried with
  back-off for up to :attr:`Store.retry_seconds` (the pool re-connects with ``pool_pre_ping``); every write is safe
  to repeat after a commit whose outcome was lost (inserts do nothing, fenced updates match nothing).
- Event sequence numbers come from ``runs.event_seq`` (``UPDATE … RETURNING``), in the writing transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import structlog
from sqlalchemy import and_, bindparam, case, delete, exists, func, not_, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.orchestrator.domain import InputRow
from services.orchestrator.store import models as m
from services.orchestrator.store.db import (
    COMPLETIONS_KEY,
    create_engine,
    display_url,
    ensure_schema,
    is_sqlite,
    write_transaction,
)
from shared import call_records
from shared.concurrency import background
from shared.db import is_transient

#: Rows per INSERT when ingesting input.
INGEST_BATCH = 500
#: Skipped rows whose reason an :class:`IngestReport` keeps (the rest are only counted; all are in the DB).
REPORTED_SKIPS = 50
#: Seconds a PostgreSQL operation is retried through transient errors (connection lost, server restart, deadlock).
DB_RETRY_SECONDS = 60.0
#: Operations one group-commit transaction carries at most.
GROUP_COMMIT_MAX = 64
#: Expired leases one reaper pass returns to pending at most (the next pass takes the rest).
REAP_BATCH = 500

log = structlog.get_logger("vantage.store")
P = ParamSpec("P")
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


# --- lease owners -----------------------------------------------------------------------------------------------


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        return ""


def make_owner() -> str:
    """Lease owner id of this process: ``host#pidns:pid:nonce`` (the pid namespace tells two containers with the same
    host name apart; the nonce tells a restarted pid apart)."""
    ns = _pid_namespace()
    host = socket.gethostname() + (f"#{ns}" if ns else "")
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _pid_alive(pid: int) -> bool:
    """True unless the process is certainly gone (no such pid, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[-1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def owner_is_dead_here(owner: str | None) -> bool:
    """True when ``owner`` (see :func:`make_owner`) is a process of this host and pid namespace that no longer
    exists: its leases can be taken over at once, without waiting for them to expire (``vantage resume`` right after
    a ``kill -9``). False whenever that cannot be known for sure (another host, another namespace, an old format)."""
    if not owner:
        return False
    try:
        host, pid, _nonce = owner.rsplit(":", 2)
        pid_n = int(pid)
    except ValueError:
        return False
    ns = _pid_namespace()
    if not ns or host != f"{socket.gethostname()}#{ns}":
        return False
    return pid_n != os.getpid() and not _pid_alive(pid_n)


# --- transient database errors ----------------------------------------------------------------------------------


# is_transient (which errors are worth retrying) is shared with every service: shared.db.retry.


def _retrying(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Retry a Store method through transient PostgreSQL errors (see :meth:`Store._retry`)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self: Store = args[0]  # type: ignore[assignment]
        return await self._retry(lambda: fn(*args, **kwargs), fn.__name__)

    return wrapper


# --- values -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    id: str
    kind: str
    status: str
    name: str
    options: dict[str, Any]
    input_path: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    owner: str | None
    heartbeat_at: datetime | None = None  # last renewal by a process executing the run (UTC)
    cancel_requested: bool = False
    detached: bool = False  # queued for `vantage worker` processes
    input_complete: bool = True  # False: its input is being stored, or its load was interrupted (not resumable)

    def heartbeat_age(self, now: datetime | None = None) -> float | None:
        """Seconds since the last run heartbeat; None when nobody has renewed it (or the reaper cleared it)."""
        if self.heartbeat_at is None:
            return None
        return ((now or utcnow()) - self.heartbeat_at).total_seconds()


@dataclass(frozen=True)
class RunTotals:
    """Counts by item status and the sums of the run's cost ledger."""

    counts: dict[str, int]
    cost_usd: float  # USD
    credits: int  # Tavily credits
    input_tokens: int
    output_tokens: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unfinished(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("running", 0)


@dataclass(frozen=True)
class ClaimedItem:
    """An item claimed by this process; ``attempt`` is the fencing token its write-back must present."""

    id: str
    run_id: str
    seq: int
    company: str
    domain: str
    attempt: int


@dataclass(frozen=True)
class RunControl:
    """What a heartbeat learns about a run being executed: its status and whether a cancel was requested."""

    status: str
    cancel_requested: bool

    @property
    def should_stop(self) -> bool:
        return self.cancel_requested or self.status not in ("pending", "running")


@dataclass
class HeartbeatResult:
    """:meth:`Store.heartbeat`: items whose lease was renewed (``held``), items that are no longer this owner's
    attempt (``lost``: reclaimed by another process after the lease expired, or released by a resume/cancel — their
    in-flight work should stop, its write-back would be rejected anyway) and the state of each run."""

    held: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    runs: dict[str, RunControl] = field(default_factory=dict)


@dataclass
class ReapReport:
    """One pass of :meth:`Store.reap`: item leases returned to pending, their pending ledger rows marked abandoned,
    runs found with nobody executing them (heartbeat cleared)."""

    expired: int = 0
    abandoned_calls: int = 0
    interrupted: list[str] = field(default_factory=list)
    #: Search rows of unknown outcome settled from the search service's records (:meth:`Store.settle_searches`).
    settled_calls: int = 0


@dataclass(frozen=True)
class RepeatedCalls:
    """Paid calls of superseded attempts (an item claimed again after a crash, an expired lease, a resume or a
    retry): ``completed`` were billed for sure, ``abandoned`` / ``pending`` have an unknown outcome (the process died
    between the ledger row and the answer). ``total`` is what ``vantage status`` prints."""

    completed: int
    abandoned: int

    @property
    def total(self) -> int:
        return self.completed + self.abandoned


@dataclass(frozen=True)
class SearchRecord:
    """What an item's search gave: counts, billing (credits, USD) and the kept URLs (best first)."""

    returned_count: int
    kept_count: int
    filtered_out_count: int
    credits: int
    cost_usd: float
    urls: list[str]
    cached: bool


@dataclass(frozen=True)
class ClassificationRecord:
    tier: str  # HOT | WARM | WATCH | COLD
    score: int  # 0..100
    category: str
    rationale: str
    evidence_urls: list[str]
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float  # USD of the LLM calls of this attempt


@dataclass(frozen=True)
class ItemView:
    """An item with its results and its ledger sums (all attempts), for tables, exports and ListRunItems."""

    id: str
    seq: int
    company: str
    domain: str
    status: str
    attempts: int
    error: str | None
    truncated: bool
    tier: str | None = None
    score: int | None = None
    category: str | None = None
    rationale: str | None = None
    evidence_urls: list[str] = field(default_factory=list)
    model: str | None = None
    returned_count: int | None = None
    kept_count: int | None = None
    credits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class EventRow:
    run_id: str
    seq: int
    type: str
    item_id: str | None
    item_key: str | None
    message: str
    created_at: datetime


@dataclass
class IngestReport:
    """What :meth:`Store.add_items` stored: items queued, rows skipped (first few reasons kept)."""

    queued: int = 0
    skipped: int = 0
    skip_messages: list[str] = field(default_factory=list)

    def skip(self, seq: int, company: str, reason: str) -> None:
        self.skipped += 1
        if len(self.skip_messages) < REPORTED_SKIPS:
            who = f" ({company})" if company else ""
            self.skip_messages.append(f"row {seq}{who}: {reason}")


# --- group commit -----------------------------------------------------------------------------------------------

#: A write of the group commit: runs inside the shared transaction, returns its own result. An operation whose class
#: has ``run_many(store, conn, ops)`` is executed set-based together with the others of its class in the batch (one
#: statement for N items rather than N: performance.md §4.2, batches of 10 → ~10× the transitions per second).
Op = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True)
class _Complete:
    """:meth:`Store.complete_item` as a group-commit operation."""

    store: Store
    item: ClaimedItem
    search: SearchRecord
    cls: ClassificationRecord
    truncated: bool
    ledger: LedgerSettlement | None = None

    async def __call__(self, conn: AsyncConnection) -> bool:
        return (await self.run_many(self.store, conn, [self]))[0]

    @staticmethod
    async def run_many(store: Store, conn: AsyncConnection, ops: Sequence[_Complete]) -> list[bool]:
        """Mark the items done where their attempt is still current — one fenced ``UPDATE … WHERE (id, attempts) IN
        (…) AND status = 'running' RETURNING id, attempts`` per ``truncated`` value — then insert the winners'
        results (one executemany per table, ``ON CONFLICT DO NOTHING``) and their ITEM_DONE events (one append per
        run), and settle every operation's ledger rows (winner or not: a stale attempt's calls were paid all the
        same; one executemany UPDATE, one DELETE). Returns, per operation, whether it won."""
        now = utcnow()
        it = m.run_items.c
        won: set[tuple[str, int]] = set()
        for trunc in (False, True):
            group = [o for o in ops if o.truncated == trunc]
            if not group:
                continue
            rows = await conn.execute(
                update(m.run_items)
                .where(tuple_(it.id, it.attempts).in_([(o.item.id, o.item.attempt) for o in group]),
                       it.status == "running")
                .values(status="done", last_error=None, truncated=trunc, lease_owner=None, lease_expires_at=None,
                        updated_at=now)
                .returning(it.id, it.attempts)
            )
            won |= {(r[0], int(r[1])) for r in rows}
        winners = [o for o in ops if (o.item.id, o.item.attempt) in won]
        if winners:
            # executemany of one cached statement (SQLAlchemy's insertmanyvalues batches it into multi-row INSERTs on
            # PostgreSQL): a ``.values([...])`` per batch would be compiled anew for every batch size.
            await conn.execute(
                store.insert(m.search_results).on_conflict_do_nothing(index_elements=["item_id"]),
                [
                    {"item_id": o.item.id, "returned_count": o.search.returned_count, "kept_count": o.search.kept_count,
                     "filtered_out_count": o.search.filtered_out_count, "credits": o.search.credits,
                     "cost_usd": o.search.cost_usd, "urls": list(o.search.urls), "cached": o.search.cached,
                     "created_at": now}
                    for o in winners
                ],
            )
            await conn.execute(
                store.insert(m.classifications).on_conflict_do_nothing(index_elements=["item_id"]),
                [
                    {"item_id": o.item.id, "tier": o.cls.tier, "score": o.cls.score, "category": o.cls.category,
                     "rationale": o.cls.rationale, "evidence_urls": list(o.cls.evidence_urls), "model": o.cls.model,
                     "input_tokens": o.cls.input_tokens, "output_tokens": o.cls.output_tokens,
                     "cost_usd": o.cls.cost_usd, "created_at": now}
                    for o in winners
                ],
            )
            by_run: dict[str, list[_Complete]] = {}
            for o in winners:
                by_run.setdefault(o.item.run_id, []).append(o)
            for run_id, group in sorted(by_run.items()):
                await store.append_events(conn, run_id, [
                    ("ITEM_DONE", o.item.id, o.item.company,
                     f"{o.cls.tier} {o.cls.score} {o.cls.category}" + (" (context truncated)" if o.truncated else ""))
                    for o in group
                ])
            _tag_completion(conn, len(winners))
        await _settle_ledger(conn, [o.ledger for o in ops if o.ledger is not None])
        return [(o.item.id, o.item.attempt) in won for o in ops]


@dataclass(frozen=True)
class LedgerSettlement:
    """An attempt's ledger rows, settled in its write-back transaction (:meth:`Store.complete_item`,
    :meth:`Store.fail_item`) instead of one transaction per call: ``completed`` = (idempotency key, billed values as
    :meth:`Store.ledger_complete` takes them) of the calls that answered; ``dropped`` = keys of rows whose call was
    not billed for sure (free, failed before the provider, or never made). Rows of calls with an unknown outcome
    (``unknown``: a deadline, a cancel) are in neither and stay pending (priced at their estimate, if any); search
    rows among them are marked for the reaper, which settles them from the search service's records
    (:meth:`Store.settle_searches`)."""

    completed: tuple[tuple[str, dict[str, Any]], ...] = ()
    dropped: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.completed or self.dropped or self.unknown)


async def _settle_ledger(conn: AsyncConnection, settlements: Sequence[LedgerSettlement]) -> None:
    """Apply ledger settlements: one executemany UPDATE for the completed rows (also rows marked abandoned meanwhile:
    the attempt lost its lease but its calls were paid), one DELETE for the dropped ones (pending or abandoned)."""
    done = [(k, v) for st in settlements for k, v in st.completed]
    dropped = [k for st in settlements for k in st.dropped]
    unknown = [k for st in settlements for k in st.unknown]
    led = m.cost_ledger.c
    if done:
        await _LedgerComplete.execute(conn, done)
    if dropped:
        await conn.execute(
            m.cost_ledger.delete().where(led.idempotency_key.in_(dropped), led.status.in_(("pending", "abandoned")))
        )
    if unknown:  # rare (a deadline, a cancel): no statement on the usual path
        await conn.execute(
            update(m.cost_ledger)
            .where(led.idempotency_key.in_(unknown), led.status == "pending", led.kind == "search")
            .values(unsettled_since=utcnow())
        )


@dataclass(frozen=True)
class _LedgerBegin:
    """:meth:`Store.ledger_begin` as a group-commit operation (one multi-row insert per batch)."""

    store: Store
    rows: tuple[dict[str, Any], ...]

    async def __call__(self, conn: AsyncConnection) -> None:
        await self.run_many(self.store, conn, [self])

    @staticmethod
    async def run_many(store: Store, conn: AsyncConnection, ops: Sequence[_LedgerBegin]) -> list[None]:
        rows = list({r["idempotency_key"]: r for o in ops for r in o.rows}.values())
        if rows:
            await conn.execute(
                store.insert(m.cost_ledger).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows
            )
        return [None] * len(ops)


@dataclass(frozen=True)
class _LedgerComplete:
    """:meth:`Store.ledger_complete` as a group-commit operation (one executemany per batch)."""

    store: Store
    key: str
    values: dict[str, Any]

    async def __call__(self, conn: AsyncConnection) -> None:
        await self.run_many(self.store, conn, [self])

    @staticmethod
    async def run_many(store: Store, conn: AsyncConnection, ops: Sequence[_LedgerComplete]) -> list[None]:
        await _LedgerComplete.execute(conn, [(o.key, o.values) for o in ops])
        return [None] * len(ops)

    @staticmethod
    async def execute(conn: AsyncConnection, done: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Mark these rows (idempotency key, billed values) completed: one executemany UPDATE."""
        led = m.cost_ledger.c
        stmt = (
            update(m.cost_ledger)
            # Two equalities, not IN (…): an expanding IN cannot be used with executemany.
            .where(led.idempotency_key == bindparam("k"), or_(led.status == "pending", led.status == "abandoned"))
            .values(
                units=bindparam("u"), usd=bindparam("d"), input_tokens=bindparam("i"), output_tokens=bindparam("o"),
                provider=func.coalesce(bindparam("p"), led.provider), status="completed",
                cost_estimated=bindparam("e"),
            )
        )
        await conn.execute(stmt, [
            {"k": k, "u": v["units"], "d": v["usd"], "i": v.get("input_tokens", 0), "o": v.get("output_tokens", 0),
             "p": v.get("provider") or None, "e": bool(v.get("cost_estimated"))}
            for k, v in done
        ])


class _GroupCommit:
    """Group commit of small writes (completions, failures, ledger rows) from many item tasks.

    Callers queue an operation and wait for its result; one background task takes everything queued, runs it in ONE
    transaction and answers each caller after the COMMIT. While a transaction commits, the next batch accumulates,
    so batches grow with the load and there is no linger delay when idle. If a batch fails, its operations are run
    again one transaction each, so that one bad operation cannot fail the others. A caller cancelled before its
    operation started has it dropped (nothing written).

    The committer is a task of a TaskGroup (:func:`shared.concurrency.background`) on this object's
    ``AsyncExitStack``: started by the first :meth:`submit` on an event loop, stopped by :meth:`close` (the store's)
    once every queued operation is committed — never cancelled in the middle of a batch before that."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None  # set while nothing is queued or committing
        self._task: asyncio.Task[None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None  # owns the committer's TaskGroup
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # transactions committed (tests and the bench read these)
        self.ops = 0

    async def submit(self, op: Op) -> Any:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            await self._start(loop)
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, fut))
        assert self._wake is not None
        self._wake.set()
        return await fut

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the committer on ``loop``. Entering the TaskGroup does not suspend, so two submits cannot both
        start one. A committer left on another (closed) event loop is dropped: its loop cannot run it any more."""
        old, self._stack = self._stack, None
        if old is not None and self._loop is loop:
            with contextlib.suppress(Exception):  # a committer that ended (it does not): close its group first
                await old.aclose()
        self._loop = loop
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._queue = [(o, f) for o, f in self._queue if not f.done() and f.get_loop() is loop]
        stack = contextlib.AsyncExitStack()
        [self._task] = await stack.enter_async_context(background(self._run()))
        self._task.set_name("store-group-commit")
        self._stack = stack

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._idle.clear()
            try:
                while self._queue:
                    batch = [(o, f) for o, f in self._queue[:GROUP_COMMIT_MAX] if not f.done()]
                    del self._queue[:GROUP_COMMIT_MAX]
                    if batch:
                        await self._commit(batch)
            finally:
                self._idle.set()

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._store._retry(lambda: self._store._write_ops([o for o, _ in batch]), "group_commit")
        except asyncio.CancelledError:
            for _, f in batch:
                if not f.done():
                    f.cancel()
            raise
        except Exception as e:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(e)
                return
            for o, f in batch:  # one at a time: only the failing operation fails
                try:
                    [r] = await self._store._retry(functools.partial(self._store._write_ops, [o]), "group_commit_one")
                except asyncio.CancelledError:
                    raise
                except Exception as e1:
                    if not f.done():
                        f.set_exception(e1)
                else:
                    if not f.done():
                        f.set_result(r)
            return
        self.batches += 1
        self.ops += len(batch)
        for (_, f), r in zip(batch, results, strict=True):
            if not f.done():
                f.set_result(r)

    async def close(self) -> None:
        task, self._task = self._task, None
        stack, self._stack = self._stack, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            if not task.done():
                # Let queued operations finish (callers are waiting for them), then stop.
                assert self._idle is not None
                while self._queue or not self._idle.is_set():
                    await self._idle.wait()
                    await asyncio.sleep(0)
            if stack is not None:
                await stack.aclose()  # cancels the idle committer and awaits it
        elif task is not None and not task.done():  # pragma: no cover - a store carried over from a closed loop
            task.cancel()


# --- the store --------------------------------------------------------------------------------------------------


class Store:
    """The orchestrator's database. Create with :func:`open_store`; ``await store.close()`` at the end."""

    def __init__(self, engine: AsyncEngine, *, retry_seconds: float = DB_RETRY_SECONDS) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite = self.dialect == "sqlite"
        #: Seconds a PostgreSQL operation is retried through transient errors (0 = never).
        self.retry_seconds = retry_seconds
        # One writer at a time on SQLite (see the module docstring); PostgreSQL needs no process-level lock.
        self._write_lock: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if self._sqlite else contextlib.nullcontext()
        )
        self._group = _GroupCommit(self)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._group.close()
        await self.engine.dispose()

    @property
    def group_commit_stats(self) -> tuple[int, int]:
        """(transactions, operations) of the group commit so far: operations / transactions = the batching factor."""
        return self._group.batches, self._group.ops

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (serialised on SQLite)."""
        async with self._write_lock, write_transaction(self.engine) as conn:
            yield conn

    async def _write_ops(self, ops: list[Op]) -> list[Any]:
        """Run a batch of operations in one transaction: the ones whose class has ``run_many`` set-based, per class;
        the others one after the other. Results in the order of ``ops``."""
        results: list[Any] = [None] * len(ops)
        by_kind: dict[type, list[int]] = {}
        for n, op in enumerate(ops):
            by_kind.setdefault(type(op), []).append(n)
        async with self._tx() as conn:
            for kind, idx in by_kind.items():
                many = getattr(kind, "run_many", None)
                if many is not None:
                    outs = await many(self, conn, [ops[n] for n in idx])
                else:
                    outs = [await ops[n](conn) for n in idx]
                for n, out in zip(idx, outs, strict=True):
                    results[n] = out
        return results

    async def _retry(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """``fn()``, retried with exponential back-off (50 ms → 2 s) through transient PostgreSQL errors for up to
        :attr:`retry_seconds`; other errors (and the last transient one) propagate."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        attempt = 0
        while True:
            try:
                return await fn()
            except DBAPIError as e:
                attempt += 1
                if self._sqlite or not is_transient(e) or time.monotonic() + delay > deadline:
                    raise
                log.warning("db_retry", op=what, attempt=attempt, error=str(getattr(e, "orig", e)).strip()[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def insert(self, table: m.Table) -> Any:
        """``INSERT`` of this dialect (PostgreSQL or SQLite), so that ``.on_conflict_do_nothing(…)`` is available."""
        return (sqlite.insert if self._sqlite else postgresql.insert)(table)

    # --- the unit of work: every write of every job goes through one of these ----------------------------------

    async def write(self, op: Op) -> Any:
        """A job's small write — ``op(conn)``, e.g. an item's result, its ledger rows and its events, fenced by the
        item's attempt — through the **group commit**: queued with the other writes of this process and run in ONE
        transaction with them (a failing batch is re-run one operation per transaction, so one bad write fails only
        itself), retried through transient PostgreSQL errors (:meth:`_retry`: a failover or restart within
        ``retry_seconds``), and answered after the COMMIT. Returns ``op``'s result."""
        return await self._group.submit(op)

    async def transaction(self, op: Op, what: str = "transaction") -> Any:
        """``op(conn)`` in a transaction of its own (a bulk write that should not ride with item writes, e.g. a run's
        matrix), serialised with the other writers on SQLite and retried as a whole through transient PostgreSQL
        errors. ``what`` names it in the ``db_retry`` log. Returns ``op``'s result."""

        async def once() -> Any:
            async with self._tx() as conn:
                return await op(conn)

        return await self._retry(once, what)

    async def read(self, op: Op, what: str = "read") -> Any:
        """``op(conn)`` on a read connection, retried through transient PostgreSQL errors like the writes."""

        async def once() -> Any:
            async with self.engine.connect() as conn:
                return await op(conn)

        return await self._retry(once, what)

    # --- runs ---------------------------------------------------------------------------------------------------

    async def create_run(
        self, *, kind: str, name: str, options: dict[str, Any], input_path: str | None = None, status: str = "pending",
        run_id: str | None = None, input_complete: bool = True,
    ) -> RunRow:
        """A new run (``pending``; its heartbeat set, so that no worker takes it while its creator ingests the input;
        not ``detached`` until :meth:`enqueue_run`). ``input_complete=False``: its input is about to be stored —
        no process may execute or resume it until :meth:`mark_input_complete` (run creators: :meth:`Orchestrator.
        create_research_run`, :func:`~services.orchestrator.app.jobs.evaluation.create_eval_run`)."""
        run_id = run_id or new_id()
        now = utcnow()

        async def write() -> None:
            async with self._tx() as conn:
                await conn.execute(
                    self.insert(m.runs).values(
                        id=run_id, kind=kind, status=status, name=name, options=options, input_path=input_path,
                        created_at=now, event_seq=0, heartbeat_at=now, cancel_requested=False, detached=False,
                        input_complete=input_complete,
                    ).on_conflict_do_nothing(index_elements=["id"])
                )

        await self._retry(write, "create_run")
        run = await self.get_run(run_id)
        assert run is not None
        return run

    @_retrying
    async def mark_input_complete(self, run_id: str) -> None:
        """The run's whole input is stored: from now on it may be executed, resumed, taken by workers."""
        async with self._tx() as conn:
            await conn.execute(update(m.runs).where(m.runs.c.id == run_id).values(input_complete=True))

    @_retrying
    async def discard_run(self, run_id: str) -> None:
        """Delete a run whose input could not be stored whole (an interrupted or refused load), with everything that
        refers to it (``ON DELETE CASCADE``)."""
        async with self._tx() as conn:
            await conn.execute(delete(m.runs).where(m.runs.c.id == run_id, m.runs.c.input_complete.is_(False)))

    @_retrying
    async def get_run(self, run_id: str) -> RunRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(m.runs).where(m.runs.c.id == run_id))).mappings().first()
        return _run_row(row) if row else None

    @_retrying
    async def find_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Run ids that are ``prefix`` or start with it (so a user can type the first characters of an id)."""
        prefix = prefix.strip().lower()
        if not prefix or any(ch not in "0123456789abcdef-" for ch in prefix):
            return []
        async with self.engine.connect() as conn:
            exact = (await conn.execute(select(m.runs.c.id).where(m.runs.c.id == prefix))).scalar()
            if exact:
                return [exact]
            rows = await conn.execute(select(m.runs.c.id).where(m.runs.c.id.like(prefix + "%")).limit(limit))
            return [r[0] for r in rows]

    @_retrying
    async def list_runs(self, *, limit: int, offset: int = 0, status: str | None = None) -> list[RunRow]:
        """Newest first."""
        q = select(m.runs).order_by(m.runs.c.created_at.desc(), m.runs.c.id.desc()).limit(limit).offset(offset)
        if status:
            q = q.where(m.runs.c.status == status)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_run_row(r) for r in rows]

    @_retrying
    async def set_run_status(
        self,
        run_id: str,
        status: str,
        *,
        only_from: Iterable[str] | None = None,
        started: bool = False,
        finished: bool = False,
        error: str | None = None,
        owner: str | None = None,
        event: tuple[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Move a run to ``status`` (only from ``only_from`` when given), stamping started/finished times and the
        error, and append ``event`` (type, message) in the same transaction. ``values`` are more columns to set.
        False when the run was not in an allowed state."""
        now = utcnow()
        vals: dict[str, Any] = {"status": status, "error": error, **(values or {})}
        if started:
            vals.update(started_at=now, finished_at=None, heartbeat_at=now)
        if finished:
            vals["finished_at"] = now
        if owner is not None:
            vals["owner"] = owner
        q = update(m.runs).where(m.runs.c.id == run_id).values(**vals)
        if only_from is not None:
            q = q.where(m.runs.c.status.in_(list(only_from)))
        async with self._tx() as conn:
            res = await conn.execute(q)
            if res.rowcount != 1:
                return False
            if event:
                await self.append_events(conn, run_id, [(event[0], None, None, event[1])])
        return True

    @_retrying
    async def join_run(self, run_id: str, owner: str, *, restart: bool) -> str | None:
        """``owner`` starts executing the run: status ``running``, heartbeat now. ``restart`` (a CLI or server
        execution, a resume) starts it afresh — started_at now, finished_at/error cleared, from any state; otherwise
        (a worker joining) only a pending or running run that no cancel was requested for is joined. Appends
        RUN_STARTED when the run was not running, a PROGRESS "joined" event when it was. Returns the status the run
        had, or None when it could not be joined (nor ever is one whose input is incomplete)."""
        now = utcnow()
        r = m.runs.c
        async with self._tx() as conn:
            q = select(r.status, r.cancel_requested, r.started_at, r.input_complete).where(r.id == run_id)
            if not self._sqlite:
                q = q.with_for_update()
            row = (await conn.execute(q)).first()
            if row is None or not row.input_complete:
                return None
            before = str(row.status)
            if not restart and (row.cancel_requested or before not in ("pending", "running")):
                return None
            vals: dict[str, Any] = {"status": "running", "owner": owner, "heartbeat_at": now}
            if restart:
                vals.update(started_at=now, finished_at=None, error=None)
            elif row.started_at is None:
                vals["started_at"] = now
            await conn.execute(update(m.runs).where(r.id == run_id).values(**vals))
            if before == "running" and not restart:
                ev = ("PROGRESS", f"joined by {owner}")
            else:
                ev = ("RUN_STARTED", f"started by {owner}")
            await self.append_events(conn, run_id, [(ev[0], None, None, ev[1])])
        return before

    @_retrying
    async def leave_run(self, run_id: str, owner: str) -> None:
        """``owner`` stopped executing the run (its part is done, or it stopped): clear ``runs.owner`` if it is
        ``owner``. The heartbeat is left to whoever else executes the run (or to go stale)."""
        async with self._tx() as conn:
            await conn.execute(
                update(m.runs).where(m.runs.c.id == run_id, m.runs.c.owner == owner).values(owner=None)
            )

    @_retrying
    async def enqueue_run(self, run_id: str, message: str = "queued for workers") -> bool:
        """Queue a run for ``vantage worker`` processes (``--detach``): status pending, ``detached``, cancel flag and
        finish time cleared, a PROGRESS event. False for an unknown run."""
        async with self._tx() as conn:
            res = await conn.execute(
                update(m.runs)
                .where(m.runs.c.id == run_id)
                .values(status="pending", detached=True, cancel_requested=False, finished_at=None, error=None)
            )
            if res.rowcount != 1:
                return False
            await self.append_events(conn, run_id, [("PROGRESS", None, None, message)])
        return True

    @_retrying
    async def request_cancel(self, run_id: str) -> str | None:
        """CancelRun, first step: set ``cancel_requested`` on a pending or running run (claims of the run are refused
        from now on; processes executing it see the flag on their next control tick, stop and release their items;
        workers no longer pick it up). Returns the run's status before, or None when it was not pending/running.
        :meth:`Orchestrator.cancel` then waits for the holders and marks the run cancelled."""
        r = m.runs.c
        async with self._tx() as conn:
            q = select(r.status).where(r.id == run_id)
            if not self._sqlite:
                q = q.with_for_update()
            before = (await conn.execute(q)).scalar()
            if before not in ("pending", "running"):
                return None
            await conn.execute(update(m.runs).where(r.id == run_id).values(cancel_requested=True))
        return str(before)

    @_retrying
    async def clear_cancel(self, run_id: str) -> None:
        """Before a resume: the run may be claimed again."""
        async with self._tx() as conn:
            await conn.execute(update(m.runs).where(m.runs.c.id == run_id).values(cancel_requested=False))

    @_retrying
    async def run_totals(self, run_id: str) -> RunTotals:
        async with self.engine.connect() as conn:
            counts = {
                s: int(n)
                for s, n in await conn.execute(
                    select(m.run_items.c.status, func.count()).where(m.run_items.c.run_id == run_id).group_by(
                        m.run_items.c.status
                    )
                )
            }
            led = m.cost_ledger.c
            row = (
                await conn.execute(
                    select(
                        func.coalesce(func.sum(led.usd), 0),
                        func.coalesce(func.sum(case((led.unit_type == "credits", led.units), else_=0)), 0),
                        func.coalesce(func.sum(led.input_tokens), 0),
                        func.coalesce(func.sum(led.output_tokens), 0),
                    ).where(led.run_id == run_id)
                )
            ).one()
        return RunTotals(
            counts={s: counts.get(s, 0) for s in m.ITEM_STATUSES},
            cost_usd=float(row[0]),
            credits=int(row[1]),
            input_tokens=int(row[2]),
            output_tokens=int(row[3]),
        )

    # --- items --------------------------------------------------------------------------------------------------

    async def add_items(self, run_id: str, rows: Iterable[InputRow]) -> IngestReport:
        """Store the input rows of a run as items, ``INGEST_BATCH`` at a time (the input is consumed as a stream).

        Skipped rows (blank, no company) and duplicates (same company key as an earlier row, case-insensitive) are
        stored as ``skipped`` items with the reason in ``last_error``, under a synthetic key ``#<seq>``.
        """
        report = IngestReport()
        batch: list[InputRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= INGEST_BATCH:
                await self._add_batch(run_id, batch, report)
                batch = []
        if batch:
            await self._add_batch(run_id, batch, report)
        return report

    @_retrying
    async def _add_batch(self, run_id: str, batch: list[InputRow], report: IngestReport) -> None:
        now = utcnow()
        first_in_batch: dict[str, InputRow] = {}
        candidates: list[InputRow] = []
        skipped: list[tuple[InputRow, str]] = []
        for row in batch:
            if row.skip_reason:
                skipped.append((row, row.skip_reason))
            elif row.key in first_in_batch:
                first = first_in_batch[row.key]
                skipped.append((row, f"duplicate of row {first.seq} ({first.company})"))
            else:
                first_in_batch[row.key] = row
                candidates.append(row)

        def item(row: InputRow, status: str, key: str, error: str | None = None) -> dict[str, Any]:
            return {
                "id": new_id(), "run_id": run_id, "seq": row.seq, "key": key, "company": row.company,
                "domain": row.domain, "status": status, "attempts": 0, "last_error": error, "truncated": False,
                "updated_at": now,
            }

        item_rows = {r.key: item(r, "pending", r.key) for r in candidates}
        skipped_rows: dict[int, dict[str, Any]] = {}
        async with self._tx() as conn:
            # Ingest counts as the run's heartbeat: no worker takes a run whose creator is still storing its input.
            await conn.execute(update(m.runs).where(m.runs.c.id == run_id).values(heartbeat_at=now))
            inserted: set[str] = set()
            if candidates:
                stmt = (
                    self.insert(m.run_items)
                    .values(list(item_rows.values()))
                    .on_conflict_do_nothing(index_elements=["run_id", "key"])
                    .returning(m.run_items.c.key)
                )
                inserted = {r[0] for r in await conn.execute(stmt)}
            dupes = [r for r in candidates if r.key not in inserted]
            if dupes:
                # Duplicates of rows stored by an earlier batch: name the row they repeat. A row whose stored seq is
                # its own was inserted by an earlier try of this very batch (a commit whose answer was lost).
                earlier = dict(
                    (await conn.execute(
                        select(m.run_items.c.key, m.run_items.c.seq).where(
                            m.run_items.c.run_id == run_id, m.run_items.c.key.in_([r.key for r in dupes])
                        )
                    )).all()
                )
                inserted |= {r.key for r in dupes if earlier.get(r.key) == r.seq}
                skipped.extend(
                    (r, f"duplicate of row {earlier.get(r.key, '?')}") for r in dupes if earlier.get(r.key) != r.seq
                )
            if skipped:
                skipped.sort(key=lambda s: s[0].seq)
                for r, reason in skipped:
                    skipped_rows[r.seq] = item(r, "skipped", f"#{r.seq}", reason)
                await conn.execute(
                    self.insert(m.run_items)
                    .values(list(skipped_rows.values()))
                    .on_conflict_do_nothing(index_elements=["run_id", "key"])
                )
        report.queued += len(inserted)
        for r, reason in skipped:
            report.skip(r.seq, r.company, reason)

    @_retrying
    async def claim_items(self, run_id: str, owner: str, limit: int, lease_seconds: float) -> list[ClaimedItem]:
        """Claim up to ``limit`` claimable items of a run, in input order: pending ones, and running ones whose lease
        has expired (their holder died or stalled). ``UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP
        LOCKED) RETURNING …`` on PostgreSQL: concurrent claimers never wait for each other nor take the same item.
        Each claim bumps ``attempts`` (the new fencing token), marks the pending ledger rows of the superseded attempt
        ``abandoned`` and appends an ITEM_STARTED event. Nothing is claimed from a run whose cancel was requested."""
        if limit <= 0:
            return []
        now = utcnow()
        it = m.run_items.c
        pick = (
            select(it.id)
            .where(
                it.run_id == run_id,
                or_(it.status == "pending", and_(it.status == "running", it.lease_expires_at < now)),
            )
            .order_by(it.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(m.run_items)
            .where(it.id.in_(pick.scalar_subquery()))
            .values(
                status="running", attempts=it.attempts + 1, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now,
            )
            .returning(it.id, it.seq, it.company, it.domain, it.attempts)
        )
        async with self._tx() as conn:
            flags = (
                await conn.execute(select(m.runs.c.cancel_requested).where(m.runs.c.id == run_id))
            ).first()
            if flags is None or flags[0]:
                return []
            rows = (await conn.execute(claim)).all()
            claimed = sorted(
                (ClaimedItem(r.id, run_id, r.seq, r.company, r.domain, r.attempts) for r in rows), key=lambda c: c.seq
            )
            if claimed:
                retaken = [c.id for c in claimed if c.attempt > 1]
                if retaken:
                    await self._abandon_calls(conn, retaken)
                await self.append_events(
                    conn,
                    run_id,
                    [("ITEM_STARTED", c.id, c.company, f"attempt {c.attempt}") for c in claimed],
                )
        return claimed

    async def _abandon_calls(self, conn: AsyncConnection, item_ids: Sequence[str]) -> int:
        """Pending ledger rows of these items' earlier attempts → ``abandoned`` (their outcome will never be
        recorded by the attempt that made them, unless it is still alive: :meth:`ledger_complete` accepts them).
        Only rows that carry their attempt: a row without one belongs to work that outlives an attempt (a provider
        batch re-polled by its snapshot id on resume) and stays pending for whoever completes it.

        An abandoned row keeps the price :meth:`ledger_begin` gave it (a Tavily search's known credits: the provider
        bills a search it answered even when the caller died before reading the answer — issue 17: 2,012 credits in
        the ledger vs 2,018 billed after SIGKILLs when such rows counted 0) and is flagged ``cost_estimated`` when it
        has one: the call may also have been cut before the provider billed it. A search row is marked
        ``unsettled_since`` now: :meth:`settle_searches` replaces that bound with what the search service recorded
        (issue 17), once its replicas have recorded past this time."""
        if not item_ids:
            return 0
        led = m.cost_ledger.c
        res = await conn.execute(
            update(m.cost_ledger)
            .where(led.item_id.in_(list(item_ids)), led.status == "pending", led.attempt.is_not(None))
            .values(status="abandoned", cost_estimated=or_(led.cost_estimated, led.units > 0, led.usd > 0),
                    unsettled_since=case((led.kind == "search", utcnow()), else_=led.unsettled_since))
        )
        return int(res.rowcount or 0)

    @_retrying
    async def settle_searches(self, *, limit: int = REAP_BATCH) -> int:
        """Settle search rows of unknown outcome (``unsettled_since`` set: their attempt died or its call ended in a
        deadline / cancel) from the search service's records in this database (:mod:`shared.call_records`; issue 17):

        - the search replicas recorded past the row → exact: completed at the credits recorded for its key, or
          deleted when none were billed (never sent, or never reached a search replica);
        - a replica that may have taken the call died before recording it, or the records' tables are not here (the
          search service records nothing: no database URL) → the upper bound, the row's known price plus what was
          recorded, flagged ``cost_estimated``;
        - a live replica has not recorded that far yet → left for the next pass.

        One indexed SELECT when nothing is to settle (the partial index holds only marked rows); otherwise two
        SELECTs of the records and one write transaction. Returns the rows settled."""
        led = m.cost_ledger.c
        pick = (
            select(led.id, led.idempotency_key, led.created_at, led.unsettled_since, led.units, led.usd)
            .where(led.unsettled_since.is_not(None), led.status.in_(("pending", "abandoned")))
            .order_by(led.unsettled_since)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(pick)).all()
            if not rows:
                return 0
            begun = {r.id: (aware(r.created_at) or utcnow()).timestamp() for r in rows}
            if await call_records.tables_exist(conn):
                replicas, records = await call_records.read(
                    conn, [r.idempotency_key for r in rows],
                    since=min(begun.values()) - call_records.CLOCK_SLACK_SECONDS,
                )
            else:
                replicas, records = [], {}
        now = time.time()
        decisions = []
        for r in rows:
            d = call_records.decide(
                begun_at=begun[r.id], due_at=(aware(r.unsettled_since) or utcnow()).timestamp(), now=now,
                replicas=replicas, records=records.get(r.idempotency_key, []), estimate_units=int(r.units or 0),
                estimate_usd=float(r.usd or 0),
            )
            if d.verdict is not call_records.Verdict.WAIT:
                decisions.append((r, d))
        if not decisions:
            return 0
        marked = and_(led.unsettled_since.is_not(None), led.status.in_(("pending", "abandoned")))
        settled = 0
        async with self._tx() as conn:
            for r, d in decisions:
                where = and_(led.id == r.id, marked)
                if d.verdict is call_records.Verdict.EXACT and d.units == 0 and d.usd == 0:
                    res = await conn.execute(delete(m.cost_ledger).where(where))
                elif d.verdict is call_records.Verdict.EXACT:
                    res = await conn.execute(update(m.cost_ledger).where(where).values(
                        status="completed", units=d.units, usd=d.usd, cost_estimated=False, unsettled_since=None))
                else:
                    res = await conn.execute(update(m.cost_ledger).where(where).values(
                        units=d.units, usd=d.usd, cost_estimated=True, unsettled_since=None))
                settled += int(res.rowcount or 0)
        log.info("searches_settled", rows=settled, exact=sum(d.verdict is call_records.Verdict.EXACT for _, d in decisions),
                 upper_bound=sum(d.verdict is call_records.Verdict.UPPER_BOUND for _, d in decisions),
                 waiting=len(rows) - len(decisions))
        return settled

    @_retrying
    async def renew_leases(self, owner: str, lease_seconds: float) -> int:
        """Push back the lease of every item ``owner`` is running. Returns how many. (:meth:`heartbeat` is the
        executor's heartbeat: it renews only the items the process knows it holds.)"""
        now = utcnow()
        async with self._tx() as conn:
            res = await conn.execute(
                update(m.run_items)
                .where(m.run_items.c.lease_owner == owner, m.run_items.c.status == "running")
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
        return int(res.rowcount or 0)

    @_retrying
    async def heartbeat(
        self, owner: str, run_ids: Sequence[str], items: dict[str, int] | None, lease_seconds: float
    ) -> HeartbeatResult:
        """The executor's heartbeat, one transaction: renew the run heartbeat of ``run_ids`` and read each run's
        status and cancel flag; when ``items`` (item id → attempt, the claims this process knows it holds) is given,
        renew their leases and report the ones that are no longer this owner's attempt (``lost``).

        Renewing only known items (not "every item of the owner") lets a claim whose commit answer was lost (it may
        have committed) simply expire and be reclaimed. Items locked by a concurrent write are skipped on
        PostgreSQL (``SKIP LOCKED``; the write is completing or failing them) and are not reported lost."""
        now = utcnow()
        out = HeartbeatResult()
        r, it = m.runs.c, m.run_items.c
        async with self._tx() as conn:
            if run_ids:
                # The runs first: a concurrent completion locks its item, then the run (events); taking the run row
                # first and skipping locked items below can never wait in a cycle with it.
                rows = await conn.execute(
                    update(m.runs)
                    .where(r.id.in_(list(run_ids)))
                    .values(heartbeat_at=now)
                    .returning(r.id, r.status, r.cancel_requested)
                )
                out.runs = {x.id: RunControl(str(x.status), bool(x.cancel_requested)) for x in rows}
            if items:
                ids = list(items)
                pick = select(it.id).where(
                    it.id.in_(ids), it.lease_owner == owner, it.status == "running"
                ).with_for_update(skip_locked=True)
                renewed = await conn.execute(
                    update(m.run_items)
                    .where(it.id.in_(pick.scalar_subquery()))
                    .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                    .returning(it.id, it.attempts)
                )
                out.held = {x.id for x in renewed if items.get(x.id) == x.attempts}
                missing = [i for i in ids if i not in out.held]
                if missing:
                    current = await conn.execute(
                        select(it.id, it.lease_owner, it.attempts, it.status).where(it.id.in_(missing))
                    )
                    for x in current:
                        mine = x.lease_owner == owner and x.attempts == items[x.id] and x.status == "running"
                        if not mine:
                            out.lost.add(x.id)
        return out

    @_retrying
    async def release_items(self, run_id: str, owner: str | None = None) -> int:
        """Put running items back to pending (those of ``owner``, or all of the run's when None): after a cancel,
        a shutdown, or before a forced resume takes over a run. ``attempts`` is kept, so the fencing token of a
        holder that is still alive somewhere goes stale at the next claim (its write-back is rejected)."""
        it = m.run_items.c
        q = (
            update(m.run_items)
            .where(it.run_id == run_id, it.status == "running")
            .values(status="pending", lease_owner=None, lease_expires_at=None, updated_at=utcnow())
        )
        if owner is not None:
            q = q.where(it.lease_owner == owner)
        async with self._tx() as conn:
            res = await conn.execute(q)
        return int(res.rowcount or 0)

    @_retrying
    async def takeover_items(self, run_id: str, *, force: bool = False) -> tuple[int, int]:
        """Before a resume: running items whose holder is certainly gone go back to pending — an expired lease, or
        an owner that is a dead process of this host (:func:`owner_is_dead_here`); with ``force``, every running
        item (live holders are then fenced out). Returns (released, still held by live leases)."""
        it = m.run_items.c
        now = utcnow()
        async with self._tx() as conn:
            owners = [
                o for (o,) in await conn.execute(
                    select(it.lease_owner).where(it.run_id == run_id, it.status == "running").distinct()
                )
            ]
            dead = [o for o in owners if o and owner_is_dead_here(o)]
            q = update(m.run_items).where(it.run_id == run_id, it.status == "running")
            if not force:
                q = q.where(
                    or_(it.lease_expires_at.is_(None), it.lease_expires_at < now, it.lease_owner.in_(dead or [""]))
                )
            res = await conn.execute(
                q.values(status="pending", lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            left = (
                await conn.execute(
                    select(func.count()).select_from(m.run_items).where(it.run_id == run_id, it.status == "running")
                )
            ).scalar_one()
        return int(res.rowcount or 0), int(left)

    @_retrying
    async def requeue_failed(self, run_id: str) -> int:
        """Failed items back to pending (``vantage retry-failed``). Returns how many."""
        async with self._tx() as conn:
            res = await conn.execute(
                update(m.run_items)
                .where(m.run_items.c.run_id == run_id, m.run_items.c.status == "failed")
                .values(status="pending", updated_at=utcnow())
            )
        return int(res.rowcount or 0)

    async def complete_item(
        self, item: ClaimedItem, search: SearchRecord, cls: ClassificationRecord, *, truncated: bool,
        ledger: LedgerSettlement | None = None,
    ) -> bool:
        """Persist an item's results and mark it done, in one transaction (group-committed, set-based with the other
        completions of the batch), only if ``item.attempt`` is still the current attempt. False (no result written)
        for a stale attempt. ``ledger``: the attempt's ledger rows settled in the same transaction (also for a stale
        attempt: its calls were paid)."""
        return bool(await self._group.submit(_Complete(self, item, search, cls, truncated, ledger or None)))

    async def settle_ledger(self, ledger: LedgerSettlement) -> None:
        """Settle an attempt's ledger rows alone (the attempt ended without a write-back: cancelled)."""
        if ledger:

            async def op(conn: AsyncConnection) -> None:
                await _settle_ledger(conn, [ledger])

            await self._group.submit(op)

    async def fail_item(
        self, item: ClaimedItem, error: str, *, truncated: bool = False, ledger: LedgerSettlement | None = None
    ) -> bool:
        """Mark an item failed with ``error`` (fenced and group-committed like :meth:`complete_item`, ``ledger``
        settled in the same transaction whatever the fence says)."""

        async def op(conn: AsyncConnection) -> bool:
            if ledger:
                await _settle_ledger(conn, [ledger])
            it = m.run_items.c
            res = await conn.execute(
                update(m.run_items)
                .where(it.id == item.id, it.attempts == item.attempt, it.status == "running")
                .values(
                    status="failed", last_error=error, truncated=truncated, lease_owner=None, lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
            if res.rowcount != 1:  # stale attempt: nothing was written
                return False
            await self.append_events(conn, item.run_id, [("ITEM_FAILED", item.id, item.company, error)])
            _tag_completion(conn)
            return True

        return bool(await self._group.submit(op))

    @_retrying
    async def page_items(
        self, run_id: str, *, after_seq: int = 0, limit: int = 500, statuses: Sequence[str] | None = None
    ) -> list[ItemView]:
        """Items of a run in input order, with results and ledger sums, ``limit`` at a time after ``after_seq``."""
        it, sr, cl, led = m.run_items.c, m.search_results.c, m.classifications.c, m.cost_ledger.c
        costs = (
            select(
                led.item_id.label("item_id"),
                func.sum(led.usd).label("usd"),
                func.sum(case((led.unit_type == "credits", led.units), else_=0)).label("credits"),
                func.sum(led.input_tokens).label("in_tok"),
                func.sum(led.output_tokens).label("out_tok"),
            )
            .where(led.run_id == run_id)
            .group_by(led.item_id)
            .subquery()
        )
        q = (
            select(
                it.id, it.seq, it.company, it.domain, it.status, it.attempts, it.last_error, it.truncated,
                cl.tier, cl.score, cl.category, cl.rationale, cl.evidence_urls, cl.model,
                sr.returned_count, sr.kept_count,
                costs.c.usd, costs.c.credits, costs.c.in_tok, costs.c.out_tok,
            )
            .select_from(
                m.run_items.outerjoin(m.search_results, sr.item_id == it.id)
                .outerjoin(m.classifications, cl.item_id == it.id)
                .outerjoin(costs, costs.c.item_id == it.id)
            )
            .where(it.run_id == run_id, it.seq > after_seq)
            .order_by(it.seq)
            .limit(limit)
        )
        if statuses:
            q = q.where(it.status.in_(list(statuses)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            ItemView(
                id=r.id, seq=r.seq, company=r.company, domain=r.domain, status=r.status, attempts=r.attempts,
                error=r.last_error, truncated=bool(r.truncated), tier=r.tier, score=r.score, category=r.category,
                rationale=r.rationale, evidence_urls=list(r.evidence_urls or []), model=r.model,
                returned_count=r.returned_count, kept_count=r.kept_count, credits=int(r.credits or 0),
                input_tokens=int(r.in_tok or 0), output_tokens=int(r.out_tok or 0), cost_usd=float(r.usd or 0.0),
            )
            for r in rows
        ]

    async def iter_items(self, run_id: str, *, page: int = 500, statuses: Sequence[str] | None = None
                         ) -> AsyncIterator[ItemView]:
        """Every item of a run, paged from the database (memory bounded by ``page``)."""
        after = 0
        while True:
            rows = await self.page_items(run_id, after_seq=after, limit=page, statuses=statuses)
            for r in rows:
                yield r
            if len(rows) < page:
                return
            after = rows[-1].seq

    # --- cost ledger --------------------------------------------------------------------------------------------

    async def ledger_begin(
        self, *, run_id: str, item_id: str | None, provider: str, kind: str, key: str, unit_type: str,
        attempt: int | None = None, estimate_units: int = 0, estimate_usd: float = 0.0,
    ) -> None:
        """Record a paid call before it is made (status pending; committed before this returns, group-committed with
        other writes). ``key`` is the call's idempotency key (``run:item:provider:attempt[:n]``), ``attempt`` the item
        attempt making it. Writing the same key again is a no-op.

        ``estimate_units`` / ``estimate_usd``: what the call costs when its price is known before it is made (a Tavily
        search: 1 credit basic, 2 advanced). The pending row carries that price with ``cost_estimated`` set, so that a
        call whose outcome is never recorded (its process died: the row stays pending or becomes abandoned) still
        counts in the run's totals; :meth:`ledger_complete` replaces it with the billed figures, :meth:`ledger_discard`
        drops the row. 0 = price unknown before the answer (LLM tokens): the row counts 0."""
        await self.ledger_begin_many([ledger_call(
            run_id=run_id, item_id=item_id, provider=provider, kind=kind, key=key, unit_type=unit_type,
            attempt=attempt, estimate_units=estimate_units, estimate_usd=estimate_usd,
        )])

    async def ledger_begin_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`ledger_begin` of several calls in one operation (one transaction, one executemany), e.g. every
        paid call an item attempt is about to make; ``rows`` from :func:`ledger_call`."""
        if rows:
            await self._group.submit(_LedgerBegin(self, tuple(rows)))

    async def ledger_complete(
        self, key: str, *, units: int, usd: float, input_tokens: int = 0, output_tokens: int = 0, provider: str = "",
        cost_estimated: bool = False,
    ) -> None:
        """The call answered: record what it cost (units, USD) and mark the row completed — also when the row was
        marked abandoned meanwhile (the attempt lost its lease but was still alive: the call was paid all the same).
        ``cost_estimated``: the USD is an estimate (the model is missing from the model catalogue)."""
        values = {"units": units, "usd": usd, "input_tokens": input_tokens, "output_tokens": output_tokens,
                  "provider": provider, "cost_estimated": cost_estimated}
        await self._group.submit(_LedgerComplete(self, key, values))

    async def ledger_discard(self, key: str) -> None:
        """The call was not billed (it failed before the provider, or was answered from a cache): drop its row."""

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(
                m.cost_ledger.delete().where(
                    m.cost_ledger.c.idempotency_key == key, m.cost_ledger.c.status.in_(("pending", "abandoned"))
                )
            )

        await self._group.submit(op)

    @_retrying
    async def ledger_rows(self, run_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(m.cost_ledger).where(m.cost_ledger.c.run_id == run_id).order_by(m.cost_ledger.c.id)
            )
            return [dict(r) for r in rows.mappings()]

    @_retrying
    async def repeated_calls(self, run_id: str) -> RepeatedCalls:
        """Paid calls of the run made by superseded attempts: ledger rows whose ``attempt`` is below the item's
        current attempt (the item was claimed again after a crash, an expired lease, a resume or a retry of a failed
        item), by status. Rows of the current attempt are not repeats; rows without an attempt are not counted."""
        led, it = m.cost_ledger.c, m.run_items.c
        q = (
            select(led.status, func.count())
            .select_from(m.cost_ledger.join(m.run_items, it.id == led.item_id))
            .where(led.run_id == run_id, led.attempt.is_not(None), led.attempt < it.attempts)
            .group_by(led.status)
        )
        async with self.engine.connect() as conn:
            counts = {str(st): int(n) for st, n in await conn.execute(q)}
        return RepeatedCalls(
            completed=counts.get("completed", 0), abandoned=counts.get("abandoned", 0) + counts.get("pending", 0)
        )

    # --- workers: finding work, rescuing expired leases ----------------------------------------------------------

    @_retrying
    async def find_work(
        self, *, stale_seconds: float, limit: int, exclude: Sequence[str] = (), only: str | None = None,
    ) -> list[str]:
        """Runs a worker may execute, oldest first: pending or running, no cancel requested, queued for workers
        (``detached``) or abandoned by their executor (run heartbeat older than ``stale_seconds``, or cleared by the
        reaper), with at least one claimable item (pending, or running with an expired lease) — or with nothing left
        to do but their completion (an executor died right after the last item; the worker's execution completes
        them, including an org evaluation's final step). ``only``: just that run (``vantage worker --run ID``),
        whatever its heartbeat."""
        r, it = m.runs.c, m.run_items.c
        now = utcnow()
        claimable = exists().where(
            it.run_id == r.id,
            or_(it.status == "pending", and_(it.status == "running", it.lease_expires_at < now)),
        )
        unfinished = exists().where(it.run_id == r.id, it.status.in_(("pending", "running")))
        idle = and_(~unfinished, exists().where(it.run_id == r.id))
        q = select(r.id).where(
            r.status.in_(("pending", "running")), not_(r.cancel_requested), r.input_complete, or_(claimable, idle)
        )
        if only is not None:
            q = q.where(r.id == only)
        else:
            stale = now - timedelta(seconds=stale_seconds)
            q = q.where(or_(r.detached, r.heartbeat_at.is_(None), r.heartbeat_at < stale))
        if exclude:
            q = q.where(r.id.not_in(list(exclude)))
        q = q.order_by(r.created_at, r.id).limit(limit)
        async with self.engine.connect() as conn:
            return [x[0] for x in await conn.execute(q)]

    @_retrying
    async def reap(self, *, stale_seconds: float, limit: int = REAP_BATCH) -> ReapReport:
        """The rescuer, run periodically by every worker and by the server (any number of them at once):

        1. running items whose lease expired go back to pending (attempts kept: the next claim bumps the fencing
           token), their pending ledger rows become ``abandoned``, a PROGRESS event says so;
        2. running runs whose heartbeat is older than ``stale_seconds`` get it cleared ("interrupted": nobody
           executes them; workers take them — :meth:`find_work` —, WatchRun stops waiting) with a PROGRESS event.

        Sources: River's job rescuer (``RescueStuckJobsAfter``), graphile-worker's sweep of stale locks,
        procrastinate's ``retry_stalled_jobs`` — shared/reference/performance.md §4.3."""
        now = utcnow()
        report = ReapReport()
        it, r = m.run_items.c, m.runs.c
        pick = (
            select(it.id)
            .where(it.status == "running", it.lease_expires_at < now)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    update(m.run_items)
                    .where(it.id.in_(pick.scalar_subquery()))
                    .values(status="pending", lease_owner=None, lease_expires_at=None, updated_at=now)
                    .returning(it.id, it.run_id, it.company, it.attempts)
                )
            ).all()
            if rows:
                report.expired = len(rows)
                report.abandoned_calls = await self._abandon_calls(conn, [x.id for x in rows])
                by_run: dict[str, list[Any]] = {}
                for x in rows:
                    by_run.setdefault(x.run_id, []).append(x)
                for run_id, xs in sorted(by_run.items()):
                    await self.append_events(
                        conn, run_id,
                        [("PROGRESS", x.id, x.company, f"lease of attempt {x.attempts} expired; back to pending")
                         for x in sorted(xs, key=lambda x: x.id)],
                    )
        stale = now - timedelta(seconds=stale_seconds)
        async with self._tx() as conn:
            gone = (
                await conn.execute(
                    update(m.runs)
                    .where(r.status == "running", r.heartbeat_at < stale)
                    .values(heartbeat_at=None, owner=None)
                    .returning(r.id)
                )
            ).all()
            for (run_id,) in sorted(gone):
                report.interrupted.append(run_id)
                await self.append_events(
                    conn, run_id,
                    [("PROGRESS", None, None, f"interrupted: no process renewed the run for {stale_seconds:g} s; "
                                              "a worker or a resume continues it")],
                )
        # 3. search rows of unknown outcome: settled from the search service's records (issue 17).
        report.settled_calls = await self.settle_searches(limit=limit)
        return report

    @_retrying
    async def finish_run(self, run_id: str, *, only_from: Sequence[str] = ("pending", "running")) -> bool:
        """Mark the run completed (RUN_FINISHED with its totals) if none of its items is left to do. False when some
        are, or the run was not in ``only_from``."""
        totals = await self.run_totals(run_id)
        if totals.unfinished:
            return False
        c = totals.counts
        msg = f"{c['done']} done, {c['failed']} failed, {c['skipped']} skipped; ${totals.cost_usd:.4f}"
        return await self.set_run_status(
            run_id, "completed", only_from=only_from, finished=True, event=("RUN_FINISHED", msg),
            values={"owner": None, "cancel_requested": False},
        )

    # --- events -------------------------------------------------------------------------------------------------

    @_retrying
    async def add_event(
        self, run_id: str, type_: str, message: str = "", *, item_id: str | None = None, item_key: str | None = None
    ) -> int:
        async with self._tx() as conn:
            return await self.append_events(conn, run_id, [(type_, item_id, item_key, message)])

    async def append_events(
        self, conn: AsyncConnection, run_id: str, events: list[tuple[str, str | None, str | None, str]]
    ) -> int:
        """Append events with the next sequence numbers of the run; returns the last one."""
        last = (
            await conn.execute(
                update(m.runs)
                .where(m.runs.c.id == run_id)
                .values(event_seq=m.runs.c.event_seq + len(events))
                .returning(m.runs.c.event_seq)
            )
        ).scalar_one()
        now = utcnow()
        first = last - len(events) + 1
        await conn.execute(
            m.run_events.insert(),
            [
                {"run_id": run_id, "seq": first + n, "type": t, "item_id": i, "item_key": k, "message": msg,
                 "created_at": now}
                for n, (t, i, k, msg) in enumerate(events)
            ],
        )
        return int(last)

    @_retrying
    async def events_after(self, run_id: str, after_seq: int, limit: int = 500) -> list[EventRow]:
        ev = m.run_events.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(m.run_events).where(ev.run_id == run_id, ev.seq > after_seq).order_by(ev.seq).limit(limit)
            )
            return [
                EventRow(r.run_id, r.seq, r.type, r.item_id, r.item_key, r.message, aware(r.created_at))  # type: ignore[arg-type]
                for r in rows
            ]


def ledger_call(
    *, run_id: str, item_id: str | None, provider: str, kind: str, key: str, unit_type: str,
    attempt: int | None = None, estimate_units: int = 0, estimate_usd: float = 0.0,
) -> dict[str, Any]:
    """The pending ``cost_ledger`` row of a paid call about to be made (see :meth:`Store.ledger_begin`)."""
    return {
        "run_id": run_id, "item_id": item_id, "provider": provider, "kind": kind, "idempotency_key": key,
        "units": estimate_units, "unit_type": unit_type, "input_tokens": 0, "output_tokens": 0,
        "usd": estimate_usd, "status": "pending", "created_at": utcnow(), "attempt": attempt,
        "cost_estimated": estimate_units > 0 or estimate_usd > 0,
    }


def _tag_completion(conn: AsyncConnection, n: int = 1) -> None:
    """Count the item completions of the transaction on its connection (``db.COMPLETIONS_KEY``), for the crash-test
    commit hook (:func:`services.orchestrator.store.db.install_crash_hook`); inert otherwise."""
    info = conn.sync_connection.info if conn.sync_connection is not None else None
    if info is not None:
        info[COMPLETIONS_KEY] = info.get(COMPLETIONS_KEY, 0) + n


def _run_row(r: Any) -> RunRow:
    return RunRow(
        id=r["id"], kind=r["kind"], status=r["status"], name=r["name"] or "", options=dict(r["options"] or {}),
        input_path=r["input_path"], created_at=aware(r["created_at"]),  # type: ignore[arg-type]
        started_at=aware(r["started_at"]), finished_at=aware(r["finished_at"]), error=r["error"], owner=r["owner"],
        heartbeat_at=aware(r.get("heartbeat_at")), cancel_requested=bool(r.get("cancel_requested")),
        detached=bool(r.get("detached")), input_complete=bool(r.get("input_complete", True)),
    )


async def open_store(url: str, *, auto_upgrade_empty: bool = True) -> Store:
    """Engine for ``url`` plus the schema check (:func:`~services.orchestrator.store.db.ensure_schema`).

    Raises :class:`~services.orchestrator.store.db.SchemaOutOfDate`, or ``OSError``-like driver errors when the
    database cannot be reached (callers turn those into one-line messages)."""
    engine = create_engine(url)
    try:
        await ensure_schema(engine, auto_upgrade_empty=auto_upgrade_empty)
    except BaseException:
        await engine.dispose()
        raise
    return Store(engine)


__all__ = [
    "ClaimedItem",
    "ClassificationRecord",
    "EventRow",
    "HeartbeatResult",
    "IngestReport",
    "ItemView",
    "ReapReport",
    "RepeatedCalls",
    "RunControl",
    "RunRow",
    "RunTotals",
    "SearchRecord",
    "Store",
    "display_url",
    "is_sqlite",
    "is_transient",
    "make_owner",
    "open_store",
    "owner_is_dead_here",
]
