"""``vantage worker``: a process that executes queued and abandoned runs from the shared database.

Any number of workers, on any number of machines, share the runs of one PostgreSQL (on SQLite: one worker, next to
the CLI). No broker and no cluster: PostgreSQL is the coordination point (ARCHITECTURE.md "Scale-out").

A worker loops:

1. every ``worker_poll_seconds`` it looks for runs to execute (:meth:`Store.find_work`): runs queued for workers
   (``vantage research --detach``, StartRun/ResumeRun ``detach``) and runs nobody executes any more (their run
   heartbeat is older than the lease: a crashed CLI, server or worker) that have claimable items — pending ones, or
   running ones whose lease expired — or nothing left but their completion;
2. it executes up to ``worker_max_runs`` of them at once, sharing one set of concurrency budgets, each through
   :meth:`Orchestrator.execute` with ``join=True`` (several workers on one run each claim their own items with
   ``SELECT … FOR UPDATE SKIP LOCKED`` leases) and ``wait_for_others=False`` (items another worker holds are left
   to it: the last one to finish completes the run);
3. every third of the lease its reaper (:mod:`services.orchestrator.app.reaper`, the one the server runs too)
   returns expired leases to pending, so that a crashed worker's items are taken over within lease + one poll.
4. its :class:`~services.orchestrator.app.schedules.Scheduler` starts the due sweeps of scheduled evaluations
   (each period exactly once across workers; not with ``--once`` or ``--run``).

SIGTERM / SIGINT: stop claiming, give in-flight items ``grace_seconds`` to finish, cancel the rest and release them
(their lease is cleared: another worker claims them at once), exit 0. A second signal cancels at once.

Exit codes: 0 (stopped, or ``--once`` found nothing left to do), 3 (database unreachable or schema out of date —
one line saying what to run — or, with ``--once``, services unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import structlog

from services.orchestrator.app.jobs.base import SetupError
from services.orchestrator.app.reaper import reap_forever
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.app.schedules import Scheduler
from services.orchestrator.clients import Clients
from services.orchestrator.store import Store
from services.orchestrator.store.repo import ReapReport
from shared.concurrency import background
from shared.config import OrchestratorSettings
from shared.errors import FailedPrecondition, Unavailable

log = structlog.get_logger("vantage.worker")

#: Seconds a worker waits after the services failed a health check before it looks for work again.
UNHEALTHY_BACKOFF = 2.0
#: Seconds a health check stays valid (a worker does not check before every run).
HEALTH_TTL = 10.0
#: Seconds a run whose execution just ended in this worker is not taken again.
COOLDOWN = 0.3


@dataclass
class WorkerStats:
    """What a worker did: run executions started and finished, items it processed (done or failed), expired leases
    its reaper returned to pending."""

    executions: int = 0
    finished: int = 0
    items: int = 0
    reaped: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    """Executes runs found in the database until :meth:`request_stop` (or, with ``once``, until nothing is left).

    ``run_id``: only that run (``--run``), whatever its heartbeat. ``max_runs``: runs executed at once."""

    def __init__(
        self,
        store: Store,
        clients: Clients,
        settings: OrchestratorSettings,
        *,
        once: bool = False,
        run_id: str | None = None,
        max_runs: int | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.orch = Orchestrator(store, clients, settings)
        # Starts the due sweeps of scheduled evaluations (app/schedules.py), except in a --once or --run worker.
        self.scheduler = Scheduler(self.orch) if run_id is None and not once else None
        self.once = once
        self.run_id = run_id
        self.max_runs = max(1, max_runs or settings.worker_max_runs)
        self.stats = WorkerStats()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # a stop was requested or an execution ended
        self._tg: asyncio.TaskGroup | None = None  # of Worker.run: owns the executions
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._healthy_until = 0.0
        self._recent: dict[str, float] = {}  # run id → when its execution here ended (monotonic s)

    @property
    def owner(self) -> str:
        return self.orch.owner

    def request_stop(self) -> None:
        """Stop claiming; in-flight items get ``grace_seconds`` to finish (SIGTERM)."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> int:
        """The worker's loop. Returns the exit code (0). The reaper and every run execution are tasks of one
        TaskGroup (:func:`~services.orchestrator.app.reaper.reap_forever` cancelled last); an error of the loop
        itself (with ``once``: services unreachable) is raised as it is, after the executions were stopped."""
        s = self.settings
        log.info("worker_started", owner=self.owner, max_runs=self.max_runs, run=self.run_id, once=self.once,
                 lease_seconds=s.lease_seconds)
        error: Exception | None = None
        reaper = reap_forever(self.store, s.lease_seconds, on_pass=self._count_reaped)
        ticker = [] if self.scheduler is None else [self.scheduler.run()]
        async with background(reaper, *ticker), asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                while not self._stop.is_set():
                    found = await self._take_work()
                    if self.once and not self._tasks and not found:
                        break
                    # Wake at a stop, when an execution ends (a slot is free), or after a poll interval.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(s.worker_poll_seconds):
                            await self._wake.wait()
                    self._wake.clear()
                    self._collect()
            except Exception as e:  # re-raised below, outside the TaskGroup (not wrapped in an ExceptionGroup)
                error = e
            finally:
                log.info("worker_stopping", owner=self.owner, runs=list(self._tasks))
                await self.orch.stop_all(grace=s.grace_seconds if self._stop.is_set() else 0.0)
                if self._tasks:
                    await asyncio.gather(*self._tasks.values(), return_exceptions=True)
                self._collect()
                self._tg = None
        commits, writes = self.store.group_commit_stats
        log.info("worker_stopped", owner=self.owner, executions=self.stats.executions, items=self.stats.items,
                 reaped=self.stats.reaped, group_commits=commits, group_committed_writes=writes)
        if error is not None:
            raise error
        return 0

    def _count_reaped(self, rep: ReapReport) -> None:
        self.stats.reaped += rep.expired

    async def _take_work(self) -> int:
        """Start executing runs found in the database (up to the free slots). Returns how many were started."""
        free = self.max_runs - len(self._tasks)
        if free <= 0:
            return 0
        now = time.monotonic()
        # A run whose execution just ended here is not taken again at once (no spinning on a run another process
        # is about to finish); after COOLDOWN it is, if work is left.
        self._recent = {r: t for r, t in self._recent.items() if now - t < COOLDOWN}
        try:
            ids = await self.store.find_work(
                stale_seconds=self.settings.lease_seconds, limit=free, exclude=[*self._tasks, *self._recent],
                only=self.run_id,
            )
        except Exception as e:  # the database is away: the store already retried; try again next poll
            log.warning("find_work_failed", error=f"{type(e).__name__}: {e}"[:300])
            return 0
        if not ids:
            return 0
        if not await self._services_healthy():
            return 0
        assert self._tg is not None, "_take_work runs inside Worker.run"
        for run_id in ids:
            task = self._tg.create_task(self._execute(run_id), name=f"worker-run-{run_id}")
            task.add_done_callback(lambda _t: self._wake.set())
            self._tasks[run_id] = task
        return len(ids)

    async def _services_healthy(self) -> bool:
        """Health-check the downstream services (cached for :data:`HEALTH_TTL`): a run is not started while they are
        down (its set-up would fail the run). With ``once``, unreachable services end the worker (exit 3)."""
        if time.monotonic() < self._healthy_until:
            return True
        try:
            await self.orch.clients.check()
        except Unavailable as e:
            if self.once:
                raise
            log.warning("services_unavailable", error=e.message)
            await asyncio.sleep(UNHEALTHY_BACKOFF)
            return False
        self._healthy_until = time.monotonic() + HEALTH_TTL
        return True

    async def _execute(self, run_id: str) -> None:
        self.stats.executions += 1
        n = 0

        def count(*_: object) -> None:
            nonlocal n
            n += 1

        log_ = log.bind(run_id=run_id, owner=self.owner)
        try:
            summary = await self.orch.execute(run_id, listener=count, join=True, wait_for_others=False)
        except FailedPrecondition as e:  # finished or cancelled meanwhile, or another execution of it here
            log_.info("run_not_joined", reason=e.message)
            return
        except SetupError as e:
            log_.warning("run_setup_failed", error=e.message)
            self.stats.errors.append(e.message)
            return
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # a database outage longer than the store's retries: the run stays resumable
            message = f"{type(e).__name__}: {e}"[:300]
            log_.error("run_execution_failed", error=message)
            self.stats.errors.append(message)
            await asyncio.sleep(min(5.0, self.settings.worker_poll_seconds * 2))
            return
        finally:
            self.stats.items += n
        if summary.run.status == "completed":
            self.stats.finished += 1
        log_.info("run_part_done", status=summary.run.status, items=n, unfinished=summary.totals.unfinished)

    def _collect(self) -> None:
        for run_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[run_id]
                self._recent[run_id] = time.monotonic()
                if not task.cancelled() and task.exception() is not None:
                    log.error("run_task_failed", run_id=run_id, error=repr(task.exception())[:300])


__all__ = ["Worker", "WorkerStats"]
