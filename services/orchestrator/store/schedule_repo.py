"""Scheduled sweeps in the database (issue 14 item 5): the ``schedules`` and ``schedule_sweeps`` tables.

Every statement goes through the store's public unit of work (:meth:`Store.transaction` for writes, :meth:`Store.read`
for reads: serialised with the other writers on SQLite, retried through transient PostgreSQL errors).

Exactly-once start of a period: the worker that wants to start period ``p`` of a schedule first creates the sweep's
evaluation run as a *candidate* (``input_path = "schedule:<schedule id>"``, not ``detached``, not started), then
:meth:`ScheduleStore.claim` inserts ``(schedule_id, p)`` into ``schedule_sweeps`` — the primary key — and, in the
same transaction, turns the candidate into the period's sweep: its options get ``schedule_id`` and
``schedule_period`` and it is queued for workers (``detached``, a PROGRESS event). A conflicting insert (another
worker has the period) changes nothing and the caller deletes its candidate (:meth:`ScheduleStore.discard_candidate`).
A candidate whose creator died before its claim is deleted by :meth:`ScheduleStore.discard_orphans` before its run
heartbeat goes stale (so no worker ever executes an unclaimed sweep).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.orchestrator.store import models as m
from services.orchestrator.store.repo import Store, aware, new_id, utcnow

#: ``runs.input_path`` of a sweep started by a schedule: where its questions came from.
INPUT_PREFIX = "schedule:"


def schedule_input(schedule_id: str) -> str:
    """The ``runs.input_path`` recorded for a sweep of ``schedule_id``."""
    return f"{INPUT_PREFIX}{schedule_id}"


@dataclass(frozen=True)
class ScheduleRow:
    """A stored schedule. ``every_seconds``: the period (s); ``anchor_at``: when period 0 is due (UTC);
    ``samples``: asks per question × model × location (None = ``vantage evaluate``'s default); ``sweeps``: periods
    started so far; ``last_period`` / ``last_run_id`` / ``last_started_at``: the latest of them (None: none yet)."""

    id: str
    name: str
    org_name: str
    org_domain: str
    questions: list[str]
    models: list[str]
    locations: list[str]
    samples: int | None
    every_seconds: int
    anchor_at: datetime
    paused: bool
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sweeps: int = 0
    last_period: int | None = None
    last_run_id: str | None = None
    last_started_at: datetime | None = None


@dataclass(frozen=True)
class SweepRow:
    """One claimed period of a schedule: its run (None once the run was deleted) and when it was started (UTC)."""

    schedule_id: str
    period: int
    run_id: str | None
    started_at: datetime


class _Lost(Exception):
    """Raised inside a claim transaction to roll it back: the candidate run is gone (deleted as an orphan)."""


def _schedule(r: Any, stats: Any = None) -> ScheduleRow:
    return ScheduleRow(
        id=r.id, name=r.name, org_name=r.org_name, org_domain=r.org_domain, questions=list(r.questions or []),
        models=list(r.models or []), locations=list(r.locations or []), samples=r.samples,
        every_seconds=int(r.every_seconds), anchor_at=aware(r.anchor_at),  # type: ignore[arg-type]
        paused=bool(r.paused), last_error=r.last_error, created_at=aware(r.created_at),  # type: ignore[arg-type]
        updated_at=aware(r.updated_at),  # type: ignore[arg-type]
        sweeps=int(stats.n) if stats is not None else 0,
        last_period=int(stats.last) if stats is not None and stats.last is not None else None,
        last_run_id=getattr(stats, "run_id", None), last_started_at=aware(getattr(stats, "started_at", None)),
    )


class ScheduleStore:
    """The queries of scheduled sweeps over a :class:`Store` (its unit of work)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- schedules ----------------------------------------------------------------------------------------------

    async def add(self, *, name: str, org_name: str, org_domain: str, questions: Sequence[str],
                  models: Sequence[str], locations: Sequence[str], samples: int | None, every_seconds: int,
                  anchor_at: datetime | None = None) -> ScheduleRow:
        """Store a new schedule (validated by the caller); period 0 is due at ``anchor_at`` (default now)."""
        sid = new_id()
        now = utcnow()

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(m.schedules.insert().values(
                id=sid, name=name, org_name=org_name, org_domain=org_domain, questions=list(questions),
                models=list(models), locations=list(locations), samples=samples, every_seconds=every_seconds,
                anchor_at=anchor_at or now, paused=False, last_error=None, created_at=now, updated_at=now))

        await self.store.transaction(op, "schedule_add")
        row = await self.get(sid)
        assert row is not None
        return row

    async def list_schedules(self, *, active_only: bool = False) -> list[ScheduleRow]:
        """Every schedule (oldest first) with its sweep count and latest sweep; ``active_only``: not paused."""
        s, w = m.schedules.c, m.schedule_sweeps.c
        stats = (select(w.schedule_id, func.count().label("n"), func.max(w.period).label("last"))
                 .group_by(w.schedule_id).subquery())
        latest = m.schedule_sweeps.alias("latest")
        q = (select(m.schedules, stats.c.n, stats.c.last, latest.c.run_id, latest.c.started_at)
             .select_from(m.schedules.outerjoin(stats, stats.c.schedule_id == s.id)
                          .outerjoin(latest, and_(latest.c.schedule_id == s.id, latest.c.period == stats.c.last)))
             .order_by(s.created_at, s.id))
        if active_only:
            q = q.where(s.paused.is_(False))

        async def op(conn: AsyncConnection) -> list[ScheduleRow]:
            out = []
            for r in await conn.execute(q):
                st = r if r.n is not None else None
                out.append(_schedule(r, st))
            return out

        return await self.store.read(op, "schedule_list")

    async def get(self, schedule_id: str) -> ScheduleRow | None:
        return next((r for r in await self.list_schedules() if r.id == schedule_id), None)

    async def find_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Schedule ids that are ``prefix`` or start with it (hex digits and dashes only, else none)."""
        prefix = prefix.strip().lower()
        if not prefix or any(ch not in "0123456789abcdef-" for ch in prefix):
            return []
        c = m.schedules.c

        async def op(conn: AsyncConnection) -> list[str]:
            if (await conn.execute(select(c.id).where(c.id == prefix))).scalar():
                return [prefix]
            return [r[0] for r in await conn.execute(select(c.id).where(c.id.like(prefix + "%")).limit(limit))]

        return await self.store.read(op, "schedule_find")

    async def set_paused(self, schedule_id: str, paused: bool) -> bool:
        """Pause or resume a schedule (periods due while paused are never started; on resume the current one is).
        False for an unknown schedule."""
        async def op(conn: AsyncConnection) -> bool:
            res = await conn.execute(update(m.schedules).where(m.schedules.c.id == schedule_id)
                                     .values(paused=paused, updated_at=utcnow()))
            return bool(res.rowcount == 1)

        return await self.store.transaction(op, "schedule_pause")

    async def remove(self, schedule_id: str) -> bool:
        """Delete a schedule and its claimed periods (its sweeps' runs stay; their options still name it). False
        for an unknown schedule."""
        async def op(conn: AsyncConnection) -> bool:
            await conn.execute(delete(m.schedule_sweeps).where(m.schedule_sweeps.c.schedule_id == schedule_id))
            res = await conn.execute(delete(m.schedules).where(m.schedules.c.id == schedule_id))
            return bool(res.rowcount == 1)

        return await self.store.transaction(op, "schedule_remove")

    async def set_error(self, schedule_id: str, error: str | None) -> None:
        """Record why the due sweep could not be started (None clears it)."""
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(update(m.schedules).where(m.schedules.c.id == schedule_id)
                               .values(last_error=error[:500] if error else None))

        await self.store.transaction(op, "schedule_error")

    # --- sweeps -------------------------------------------------------------------------------------------------

    async def has_sweep(self, schedule_id: str, period: int) -> bool:
        w = m.schedule_sweeps.c

        async def op(conn: AsyncConnection) -> bool:
            q = select(w.period).where(w.schedule_id == schedule_id, w.period == period)
            return (await conn.execute(q)).first() is not None

        return await self.store.read(op, "schedule_has_sweep")

    async def claim(self, schedule_id: str, period: int, run_id: str) -> bool:
        """Claim ``period`` of the schedule for the candidate run ``run_id`` and, in the same transaction, make the
        run that period's sweep (options ``schedule_id`` / ``schedule_period``, queued for workers, an event).
        False, with nothing changed, when the period is already claimed (another worker started it) or the
        candidate is gone (deleted as an orphan: the caller may try again)."""
        now = utcnow()
        r = m.runs.c

        async def op(conn: AsyncConnection) -> bool:
            options = (await conn.execute(select(r.options).where(r.id == run_id))).scalar()
            if options is None:  # deleted as an orphan: no claim (its run_id would break the foreign key)
                raise _Lost
            ins = (self.store.insert(m.schedule_sweeps)
                   .values(schedule_id=schedule_id, period=period, run_id=run_id, started_at=now)
                   .on_conflict_do_nothing(index_elements=["schedule_id", "period"])
                   .returning(m.schedule_sweeps.c.period))  # (rowcount is -1 here on psycopg)
            if (await conn.execute(ins)).first() is None:
                return False
            # (Started already: a worker took the candidate for abandoned — its storing outlasted the lease — and
            # executes it; it is this period's sweep all the same.)
            res = await conn.execute(
                update(m.runs).where(r.id == run_id)
                .values(options={**options, "schedule_id": schedule_id, "schedule_period": period}, detached=True))
            if res.rowcount != 1:
                raise _Lost
            await self.store.append_events(conn, run_id, [
                ("PROGRESS", None, None, f"sweep {period} of schedule {schedule_id}: queued for workers")])
            await conn.execute(update(m.schedules).where(m.schedules.c.id == schedule_id).values(last_error=None))
            return True

        try:
            return await self.store.transaction(op, "schedule_claim")
        except _Lost:
            return False

    async def discard_candidate(self, run_id: str) -> bool:
        """Delete a candidate sweep run that lost its claim (never queued nor started; everything of it cascades).
        True when it was deleted."""
        r = m.runs.c

        async def op(conn: AsyncConnection) -> bool:
            res = await conn.execute(delete(m.runs).where(
                r.id == run_id, r.detached.is_(False), r.started_at.is_(None), r.input_path.like(INPUT_PREFIX + "%"),
                ~exists().where(m.schedule_sweeps.c.run_id == r.id)))
            return bool(res.rowcount == 1)

        return await self.store.transaction(op, "schedule_discard")

    async def discard_orphans(self, *, heartbeat_before: datetime) -> int:
        """Delete candidate sweep runs whose creator died between creating and claiming them (no claim refers to
        them, never queued nor started, input stored — one still being stored is its creator's, and no worker runs
        it —, run heartbeat older than ``heartbeat_before``). Returns how many."""
        r = m.runs.c

        async def op(conn: AsyncConnection) -> int:
            res = await conn.execute(delete(m.runs).where(
                r.input_path.like(INPUT_PREFIX + "%"), r.detached.is_(False), r.started_at.is_(None),
                r.status == "pending", r.input_complete.is_(True), r.heartbeat_at < heartbeat_before,
                ~exists().where(m.schedule_sweeps.c.run_id == r.id)))
            return int(res.rowcount or 0)

        return await self.store.transaction(op, "schedule_orphans")

    async def sweeps(self, schedule_id: str | None = None) -> list[SweepRow]:
        """Claimed periods (of one schedule, or all), by schedule and period."""
        w = m.schedule_sweeps.c
        q = select(w.schedule_id, w.period, w.run_id, w.started_at).order_by(w.schedule_id, w.period)
        if schedule_id is not None:
            q = q.where(w.schedule_id == schedule_id)

        async def op(conn: AsyncConnection) -> list[SweepRow]:
            return [SweepRow(a, int(p), rid, aware(t)) for a, p, rid, t in await conn.execute(q)]  # type: ignore[arg-type]

        return await self.store.read(op, "schedule_sweeps")

    async def sweeps_of_runs(self, run_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """run id → (schedule id, period) for those of ``run_ids`` that a schedule started."""
        if not run_ids:
            return {}
        w = m.schedule_sweeps.c

        async def op(conn: AsyncConnection) -> dict[str, tuple[str, int]]:
            q = select(w.run_id, w.schedule_id, w.period).where(w.run_id.in_(list(run_ids)))
            return {rid: (sid, int(p)) for rid, sid, p in await conn.execute(q)}

        return await self.store.read(op, "schedule_sweeps_of_runs")


__all__ = ["INPUT_PREFIX", "ScheduleRow", "ScheduleStore", "SweepRow", "schedule_input"]
