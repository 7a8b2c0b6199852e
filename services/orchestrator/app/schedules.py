"""Scheduled sweeps (issue 14 item 5): ``vantage schedule add … --every 7d`` stores a schedule; every ``vantage
worker`` runs a :class:`Scheduler` that starts each due sweep **exactly once**, however many workers run.

Periods: a schedule with period ``every`` (s) and anchor ``anchor_at`` is in period
``p = floor((now − anchor_at) / every)`` (period 0 is due at once); period ``p`` is due from
``anchor_at + p × every``. A worker's tick looks at the **latest** due period of each active schedule only, so a
worker that was down for five periods starts one catch-up sweep (the current period), never a burst of the missed
ones; a paused schedule starts nothing, and on resume the current period is started if nobody has.

Exactly once: to start period ``p`` a worker creates the sweep's ORG_EVAL run with the code ``vantage evaluate``
uses (:func:`services.orchestrator.app.jobs.evaluation.create_eval_run`; the run is a *candidate*: input
``schedule:<id>``, not queued), then claims ``(schedule_id, p)`` by INSERT into ``schedule_sweeps`` (its primary
key) in the transaction that makes the candidate the period's sweep (:meth:`ScheduleStore.claim`: options
``schedule_id`` / ``schedule_period``, queued for workers). The insert of a second worker conflicts, and that worker
deletes its candidate. A candidate whose creator died before the claim is deleted by the next tick (before its
heartbeat could go stale and a worker execute it). The sweep itself is then executed by any worker, like a
``--detach``-ed run.

Which schedule and period a run belongs to is in its options (``schedule_id``, ``schedule_period``) — the run's own
record of what it is, read by ``vantage history`` and ``status`` without a join, and no new column on ``runs`` —
and in ``schedule_sweeps.run_id`` (the claim).

Clocks: each worker reads its own clock (UTC); workers whose clocks disagree by δ may start a period up to δ early
or late, never twice (the claim is in the database).
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from services.orchestrator.app.jobs.base import JobContext
from services.orchestrator.app.jobs.evaluation import DEFAULT_SAMPLES, create_eval_run
from services.orchestrator.store.repo import utcnow
from services.orchestrator.store.schedule_repo import ScheduleRow, ScheduleStore, schedule_input
from shared.errors import InvalidArgument, VantageError

log = structlog.get_logger("vantage.schedules")

#: Shortest and longest period accepted (s): 1 second … 366 days.
MIN_EVERY_SECONDS = 1
MAX_EVERY_SECONDS = 366 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,9})([smhdw])")
#: Longest a scheduler waits between ticks (s) when no schedule is due sooner (and at most the worker's poll).
MAX_TICK_SECONDS = 1.0
#: Shortest wait between ticks (s): a tick right at a period's start may see the previous period by a hair.
MIN_TICK_SECONDS = 0.05


def parse_every(text: str, *, field: str = "every") -> int:
    """``"2s"``, ``"10m"``, ``"6h"``, ``"7d"``, ``"2w"`` → seconds (an integer; units s, m, h, d, w, one number and
    one unit, no sign). Raises :class:`InvalidArgument` naming ``field`` for anything else, or a period outside
    1 s … 366 d."""
    t = text.strip().lower()
    mt = _DURATION.fullmatch(t)
    if mt is None:
        raise InvalidArgument(f"{field}: {text[:40]!r} is not a duration such as 2s, 10m, 6h, 7d or 2w",
                              field=field)
    seconds = int(mt.group(1)) * _UNITS[mt.group(2)]
    if not MIN_EVERY_SECONDS <= seconds <= MAX_EVERY_SECONDS:
        raise InvalidArgument(f"{field}: must be between 1s and 366d, got {text.strip()[:40]}", field=field)
    return seconds


def format_every(seconds: int) -> str:
    """Seconds → the largest exact unit: 604800 → ``"7d"``, 90 → ``"90s"``."""
    for unit, n in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def due_period(now: datetime, anchor: datetime, every_seconds: int) -> int | None:
    """The latest due period at ``now``: ``floor((now − anchor) / every)``; None before the anchor."""
    elapsed = (now - anchor).total_seconds()
    if elapsed < 0:
        return None
    return math.floor(elapsed / every_seconds)


def period_start(anchor: datetime, every_seconds: int, period: int) -> datetime:
    """When ``period`` is due: ``anchor + period × every``."""
    return anchor + timedelta(seconds=period * every_seconds)


def next_due(now: datetime, anchor: datetime, every_seconds: int) -> datetime:
    """When the next period after the one due at ``now`` starts (the anchor itself before it)."""
    p = due_period(now, anchor, every_seconds)
    return anchor if p is None else period_start(anchor, every_seconds, p + 1)


@dataclass(frozen=True)
class StartedSweep:
    """A sweep this worker started: the schedule, the period and the sweep's run."""

    schedule_id: str
    period: int
    run_id: str


class Scheduler:
    """Starts the due sweeps of every active schedule (one :meth:`tick`), and :meth:`run` ticks until stopped.

    ``ctx``: the worker's job context (store, clients, settings, budgets — :class:`Orchestrator`); the sweeps are
    created through it exactly as ``vantage evaluate`` creates a run."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.schedules = ScheduleStore(ctx.store)
        self.started: list[StartedSweep] = []  # sweeps this scheduler started (tests and logs read it)
        self.lost_claims = 0  # periods another worker claimed first (its candidate run deleted)
        self._refused: set[tuple[str, int]] = set()  # (schedule, period) refused here: not tried again every tick

    async def tick(self, now: datetime | None = None) -> float:
        """Start the latest due period of each active schedule that nobody has started. Returns the seconds until
        the next period of any active schedule starts (at most :data:`MAX_TICK_SECONDS` and the worker's poll)."""
        now = now or utcnow()
        poll = max(MIN_TICK_SECONDS, min(MAX_TICK_SECONDS, self.ctx.settings.worker_poll_seconds))
        # Candidates of a creator that died before its claim: gone before their heartbeat could look abandoned.
        orphans = await self.schedules.discard_orphans(
            heartbeat_before=now - timedelta(seconds=self.ctx.settings.lease_seconds / 2))
        if orphans:
            log.info("schedule_orphans_discarded", runs=orphans)
        wait = poll
        for sched in await self.schedules.list_schedules(active_only=True):
            p = due_period(now, sched.anchor_at, sched.every_seconds)
            if p is not None and (sched.last_period is None or sched.last_period < p):
                await self._start(sched, p)
            wait = min(wait, (next_due(now, sched.anchor_at, sched.every_seconds) - utcnow()).total_seconds())
        return max(MIN_TICK_SECONDS, wait)

    async def _start(self, sched: ScheduleRow, period: int) -> StartedSweep | None:
        log_ = log.bind(schedule_id=sched.id, period=period)
        if (sched.id, period) in self._refused or await self.schedules.has_sweep(sched.id, period):
            return None
        try:
            run, _report = await create_eval_run(
                self.ctx, org_name=sched.org_name, org_domain=sched.org_domain, questions=sched.questions,
                models=sched.models, locations=sched.locations, name=sweep_name(sched, period),
                input_path=schedule_input(sched.id),
                samples=DEFAULT_SAMPLES if sched.samples is None else sched.samples,
            )
        except VantageError as e:  # e.g. a limit lowered since the schedule was added: say so on the schedule
            log_.warning("schedule_sweep_refused", error=e.message)
            self._refused.add((sched.id, period))
            await self.schedules.set_error(sched.id, f"period {period}: {e.message}")
            return None
        if not await self.schedules.claim(sched.id, period, run.id):
            self.lost_claims += 1
            await self.schedules.discard_candidate(run.id)
            log_.info("schedule_period_taken", candidate=run.id)
            return None
        started = StartedSweep(sched.id, period, run.id)
        self.started.append(started)
        log_.info("schedule_sweep_started", run_id=run.id)
        return started

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Tick until ``stop`` is set (or the task is cancelled): after each tick wait until the next period of any
        schedule starts, at most :data:`MAX_TICK_SECONDS` (new and resumed schedules are seen within that). A
        failing tick (the database away longer than the store's retries) is logged and tried again."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                wait = await self.tick()
            except Exception as e:
                log.warning("schedule_tick_failed", error=f"{type(e).__name__}: {e}"[:300])
                wait = MAX_TICK_SECONDS
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass


def sweep_name(sched: ScheduleRow, period: int) -> str:
    """The run name of a sweep: ``"<schedule name> #<period>"`` (the org's name when the schedule has none)."""
    return f"{sched.name or sched.org_name + ' visibility'} #{period}"


__all__ = ["MAX_EVERY_SECONDS", "MIN_EVERY_SECONDS", "Scheduler", "StartedSweep", "due_period", "format_every",
           "next_due", "parse_every", "period_start", "sweep_name"]
