"""Records of keyed search calls in the shared database (issue 17; the contract is :mod:`shared.call_records`).

:class:`CallRecorder` keeps the calls that carry an ``idempotency_key`` while they run (their start times hold this
replica's watermark back) and, once they end, writes their outcomes in batches: one transaction per flush — one
multi-row INSERT of every record finished since the last flush and one UPDATE of this replica's row (``seen_at``,
``watermark``) — at most every :data:`~shared.call_records.FLUSH_SECONDS` while records wait, and at once for a call
whose caller went away (the orchestrator's reaper is about to ask). With nothing to write the replica's row is still
renewed every :data:`~shared.call_records.HEARTBEAT_SECONDS`, so a live replica's watermark follows the clock.

A flush that fails (the database away) keeps its records for the next one and does not move the watermark: the
reaper waits, then (past the replica's heartbeat) counts the calls at their upper bound, never at 0. On a clean stop
(:meth:`CallRecorder.aclose`) the last flush marks the replica stopped: every call it took is recorded.

Costs: no statement on a call's path (a call only appends to a list); a flush per
:data:`~shared.call_records.FLUSH_SECONDS` under load carries every record of that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.search.store import CHAIN
from shared.call_records import (
    FLUSH_SECONDS,
    HEARTBEAT_SECONDS,
    RETENTION_SECONDS,
    search_call_records,
    search_replicas,
)
from shared.db import create_engine, display_url, write_transaction
from shared.logging import first_line, register_url_password

log = structlog.get_logger("vantage.search.records")

#: Seconds start-up waits for the database (schema check, first replica row) before serving without records.
OPEN_TIMEOUT_S = 10.0


def replica_name() -> str:
    """``host:pid:random`` of this process (a pod's host name; the random part because every container's pid is 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:255]


@dataclass(eq=False, slots=True)
class KeyedCall:
    """A keyed call while it runs: its key, start (Unix s) and what the Tavily backend did for it — ``sent``
    requests sent, ``cut`` of them whose outcome is unknown (a timeout or a cancel after sending)."""

    key: str
    started_at: float
    sent: int = 0
    cut: int = 0
    seq: int = 0
    #: The caller went away: the record is written at once.
    orphaned: bool = False


class CallRecorder:
    """Outcomes of keyed calls of this replica, written to ``engine`` in batches (module docstring). ``clock``
    returns Unix seconds. Use :meth:`open`; :meth:`aclose` writes the last records and marks the replica stopped."""

    def __init__(self, engine: AsyncEngine, *, replica: str | None = None,
                 clock: Any = time.time, owns_engine: bool = False) -> None:
        self.engine = engine
        self.replica = replica or replica_name()
        self._clock = clock
        self._owns_engine = owns_engine
        self._running: dict[int, KeyedCall] = {}
        self._seq = itertools.count(1)
        self._done: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.flushes = 0  # transactions written (tests read it)
        self.failed_flushes = 0

    @classmethod
    async def open(cls, database_url: str) -> CallRecorder | None:
        """A recorder on ``database_url`` with the search chain at its head and this replica's row written, its
        flusher running; None (logged) when the URL is empty or the database cannot serve within
        :data:`OPEN_TIMEOUT_S` — the service then serves without records (the reaper counts upper bounds)."""
        if not database_url:
            return None
        register_url_password(database_url)  # its password never reaches a log line
        engine = create_engine(database_url, pool_size=2)
        rec = cls(engine, owns_engine=True)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                await CHAIN.ensure_schema(engine)
                await rec._register()
        except Exception as e:
            log.error("search_records_disabled", database=display_url(database_url),
                      error=first_line(e))
            await engine.dispose()
            return None
        rec.start()
        return rec

    async def _register(self) -> None:
        now = self._clock()
        async with write_transaction(self.engine) as conn:
            await conn.execute(insert(search_replicas).values(
                replica=self.replica, started_at=now, seen_at=now, watermark=now, stopped_at=None))
            # Retention: what no reaper will read again (it waits at most MAX_WAIT_SECONDS for a row).
            old = now - RETENTION_SECONDS
            await conn.execute(delete(search_call_records).where(search_call_records.c.finished_at < old))
            await conn.execute(delete(search_replicas).where(search_replicas.c.seen_at < old))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="search-records")

    # --- the call path: no I/O ----------------------------------------------------------------------------------

    def begin(self, key: str) -> KeyedCall:
        """A keyed call starts: it holds the watermark back until :meth:`finish`."""
        call = KeyedCall(key, self._clock(), seq=next(self._seq))
        self._running[call.seq] = call
        return call

    def finish(self, call: KeyedCall, *, state: str, credits: int = 0, usd: float = 0.0, urgent: bool = False) -> None:
        """``call`` ended (``state`` one of :data:`shared.call_records.STATES`; ``credits`` / ``usd`` billed): its
        record is written by the next flush — at once when ``urgent`` (its caller went away)."""
        if self._running.pop(call.seq, None) is None:
            return  # finished already
        self._done.append({
            "idempotency_key": call.key, "replica": self.replica, "state": state, "credits": int(credits),
            "usd": float(usd), "uncertain": int(call.cut), "started_at": call.started_at,
            "finished_at": self._clock(),
        })
        if urgent or len(self._done) >= 500:
            self._wake.set()

    def wake(self) -> None:
        """Flush now (records of callers gone away are waiting)."""
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._running)

    # --- the flusher --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        last = self._clock()
        while True:
            wait = FLUSH_SECONDS if self._done else HEARTBEAT_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            if self._done or self._clock() - last >= HEARTBEAT_SECONDS * 0.9:
                await self.flush()
                last = self._clock()

    async def flush(self, *, stopping: bool = False) -> bool:
        """Write the finished records and this replica's row in one transaction. The watermark is the start of the
        oldest call still running (now when none is), taken with the batch, so every call started before it is in
        this batch or an earlier one. False (logged, records kept) when the database refused."""
        rows, self._done = self._done, []
        now = self._clock()
        watermark = min((c.started_at for c in self._running.values()), default=now)
        values: dict[str, Any] = {"seen_at": now, "watermark": watermark}
        if stopping and not self._running:
            values["stopped_at"] = now
        try:
            async with write_transaction(self.engine) as conn:
                if rows:
                    await conn.execute(insert(search_call_records), rows)
                res = await conn.execute(
                    update(search_replicas).where(search_replicas.c.replica == self.replica).values(**values))
                if not res.rowcount:  # our row was purged (a very long pause): write it again
                    await conn.execute(insert(search_replicas).values(replica=self.replica, started_at=now,
                                                                      stopped_at=None, **values))
        except asyncio.CancelledError:
            self._done[:0] = rows
            raise
        except Exception as e:
            self._done[:0] = rows
            self.failed_flushes += 1
            log.warning("search_records_flush_failed", records=len(rows),
                        error=first_line(e))
            return False
        self.flushes += 1
        return True

    async def aclose(self) -> None:
        """Stop the flusher, write what is left and mark the replica stopped (when no call is running any more)."""
        if self._closing:
            return
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.flush(stopping=True)
        if self._owns_engine:
            await self.engine.dispose()


__all__ = ["CallRecorder", "KeyedCall", "replica_name"]
