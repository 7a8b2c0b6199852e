"""Runs: create one from its input, execute it in this process, cancel, resume, retry the failed items. Used by the
``vantage`` CLI (in the foreground) and by the OrchestratorService (as background tasks of the server).

State machine of a run (``runs.status``)::

    pending ──execute──► running ──all items done/failed/skipped──► completed
                            │ ╲──setup failed / database error──► failed
                            ╰──CancelRun──► cancelled
    completed | cancelled | failed | running (interrupted) ──resume / retry-failed──► running

Cancel is cooperative: stop claiming, cancel the in-flight calls (an item inside a database write finishes it),
put the interrupted items back to pending, mark the run cancelled. A resumed run claims pending items (and running
ones whose holder is gone); a write-back from an older attempt is rejected by its fencing token.

Several processes may execute one run at once (the CLI, the server, any number of ``vantage worker`` processes on
PostgreSQL): each claims items with a lease and a fencing attempt (``Store.claim_items``). While a process executes
runs, one *keeper* (:meth:`Orchestrator._keeper`) ticks every ``control_poll_seconds`` (≤ lease/3) — a task of each
execution's TaskGroup, of which one at a time holds the keeper lock and ticks (the next takes over when it ends):

- it renews the run heartbeat (``runs.heartbeat_at``) and reads each run's status and cancel flag — a CancelRun
  issued anywhere (``runs.cancel_requested``) stops the run here within one tick;
- every third of the lease it renews the leases of the items this process holds (Payload CMS PR #17220: renew at
  ⅓ of the lease; only the holder of the current token may write back) and cancels the items whose lease was lost
  (reclaimed elsewhere after expiring): their write-back would be rejected, their next paid call would be a repeat.

A run is completed by whichever process sees no item left pending or running; the others just leave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from services.orchestrator.app.jobs.base import Job, JobFactory, SetupError
from services.orchestrator.app.jobs.registry import JOBS
from services.orchestrator.app.pipeline import Budgets, Inflight, stream_items
from services.orchestrator.clients import Clients
from services.orchestrator.store import ClaimedItem, RunRow, RunTotals, Store
from services.orchestrator.store.models import TERMINAL_RUN_STATUSES
from services.orchestrator.store.repo import make_owner
from shared.concurrency import background
from shared.config import OrchestratorSettings
from shared.errors import FailedPrecondition, NotFound

log = structlog.get_logger("vantage.orchestrator")

#: Called after each item: (item, done?, summary or failure reason).
ItemListener = Callable[[ClaimedItem, bool, str], None]


def process_owner() -> str:
    """Lease owner id of this process: ``host#pidns:pid:nonce`` (:func:`~services.orchestrator.store.repo.make_owner`;
    the nonce tells a restarted pid apart)."""
    return make_owner()


@dataclass
class _Active:
    """A run executing in this process: its in-flight tasks, the items it holds (id → attempt, the fencing token)
    and their tasks (for the keeper), and whether it waits for items other processes hold before finishing."""

    inflight: Inflight = field(default_factory=Inflight)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    items: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[object]] = field(default_factory=dict)
    wait_for_others: bool = False
    cancelled: bool = False  # stopped because a cancel was requested (or the run ended elsewhere)


@dataclass(frozen=True)
class RunSummary:
    run: RunRow
    totals: RunTotals


class Orchestrator:
    """Executes runs in this process against the search, inference and extraction services.

    ``budgets`` are long-lived and shared by every run of the process, so two runs together still respect one
    budget per downstream service. ``jobs`` maps a run kind to its job (:mod:`services.orchestrator.app.jobs.registry`);
    the orchestrator is the :class:`~services.orchestrator.app.jobs.base.JobContext` of every job it runs.
    """

    def __init__(
        self, store: Store, clients: Clients, settings: OrchestratorSettings, *, owner: str | None = None,
        jobs: Mapping[str, JobFactory] = JOBS,
    ) -> None:
        self.store = store
        self.clients = clients
        self.settings = settings
        self.jobs = jobs
        self.owner = owner or process_owner()
        self.budgets = Budgets.from_settings(settings)
        self._active: dict[str, _Active] = {}
        self._changed = asyncio.Event()
        # One keeper ticks for all the runs executing here: each execution runs one in its TaskGroup (_keep), and
        # the one holding this lock ticks; when its execution ends the next waiting one takes over.
        self._keeper_lock = asyncio.Lock()
        self._last_renew = time.monotonic()  # when the keeper last renewed the item leases held here
        self.lost_leases = 0  # items cancelled here because another process took them over (tests read it)

    # --- watchers -----------------------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everyone waiting in :meth:`wait_for_change` (WatchRun streams)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, seconds: float) -> None:
        """Return at the next event written by this process, or after ``seconds`` (events written by other
        processes are only seen by polling)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    def is_active(self, run_id: str) -> bool:
        return run_id in self._active

    # --- lookups ------------------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRow:
        """The run, or NotFound."""
        run = await self.store.get_run(run_id) if _looks_like_id(run_id) else None
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        return run

    async def summary(self, run_id: str) -> RunSummary:
        run = await self.get(run_id)
        return RunSummary(run, await self.store.run_totals(run_id))

    # --- execute ------------------------------------------------------------------------------------------------

    async def begin(self, run_id: str, *, join: bool = False, wait_for_others: bool = True) -> RunRow:
        """Mark the run running in this process (RUN_STARTED); :meth:`execute` keeps it. :meth:`execute` does it when it
        has not been done; the server calls it first so that StartRun/ResumeRun answer with the run already RUNNING.
        ``join`` (a worker): only a pending or running run without a cancel request is joined, its start time kept.
        ``wait_for_others``: the execution waits for items other processes hold before it ends (the CLI and the
        server, which report the whole run), rather than leaving them (a worker). Raises FailedPrecondition when the
        run is already executing here, or cannot be joined."""
        _check_complete(await self.get(run_id))
        if run_id in self._active:
            raise FailedPrecondition(f"run {run_id} is already running")
        self._active[run_id] = _Active(wait_for_others=wait_for_others)
        try:
            before = await self.store.join_run(run_id, self.owner, restart=not join)
            if before is None:
                raise FailedPrecondition(f"run {run_id} cannot be joined (finished, or a cancel was requested)")
        except BaseException:
            self._active.pop(run_id).done.set()
            raise
        self._notify()
        return await self.get(run_id)

    async def execute(
        self, run_id: str, *, listener: ItemListener | None = None, join: bool = False,
        wait_for_others: bool = True,
    ) -> RunSummary:
        """Process every claimable item of the run until none is left (or :meth:`stop` / :meth:`cancel`), then mark
        it completed. With ``wait_for_others`` (the default: the CLI and the server), items other processes hold are
        waited for — and taken over when their lease expires — so that the run is complete when this returns; a worker
        passes False (and ``join``) and leaves them. The run's kind picks its job (:attr:`jobs`): set-up, then each
        item through :meth:`Job.process`, then :meth:`Job.finish`. Raises SetupError when the per-run RPCs fail (the
        run is marked failed), FailedPrecondition when the run is already executing here. A database error propagates
        after the run's items are released."""
        if run_id not in self._active:
            await self.begin(run_id, join=join, wait_for_others=wait_for_others)
        active = self._active[run_id]
        log_ = log.bind(run_id=run_id)
        # The keeper (heartbeat, cancel requests, leases) runs while this execution does: a task of its TaskGroup,
        # cancelled and awaited when the block ends (shared.concurrency.background).
        async with background(self._keep()):
            job: Job | None = None
            try:
                run = await self.get(run_id)
                job = self._job(run, active.inflight)
                if not active.inflight.stopping:
                    try:
                        await job.setup()
                    except SetupError as e:
                        await self.store.set_run_status(
                            run_id, "failed", only_from=("running",), finished=True, error=e.message,
                            event=("RUN_FINISHED", f"failed: {e.message}"),
                        )
                        raise
                    await self._stream(run_id, job, active, listener, max_in_flight=job.max_in_flight)
                if active.inflight.stopping:
                    log_.info("run_stopped")
                else:
                    await job.finish()
                    await self._finish(run_id)
            except BaseException as e:
                if not isinstance(e, SetupError | asyncio.CancelledError):
                    log_.error("run_error", error=f"{type(e).__name__}: {e}")
                raise
            finally:
                if job is not None:
                    with contextlib.suppress(Exception):
                        await job.aclose()
                # Whatever happened, nothing of this process stays 'running': interrupted items go back to pending (at
                # once claimable by another process), and the run is no longer this process's.
                with contextlib.suppress(Exception):
                    await self.store.release_items(run_id, self.owner)
                with contextlib.suppress(Exception):
                    await self.store.leave_run(run_id, self.owner)
                del self._active[run_id]
                active.done.set()
                self._notify()
        return await self.summary(run_id)

    def _job(self, run: RunRow, inflight: Inflight) -> Job:
        factory = self.jobs.get(run.kind)
        if factory is None:
            raise FailedPrecondition(f"run {run.id} is of kind {run.kind!r}, which this version cannot execute")
        return factory(self, run, inflight)

    async def _stream(
        self, run_id: str, job: Job, active: _Active, listener: ItemListener | None, *,
        max_in_flight: int | None = None,
    ) -> None:
        """Claim and process the run's items with ``job.process(item) -> (done?, message)``; at most
        ``max_in_flight`` items at once (default: ``settings.max_items_in_flight`` or the budgets' sum)."""
        s = self.settings

        async def claim(n: int) -> list[ClaimedItem]:
            items = await self.store.claim_items(run_id, self.owner, n, s.lease_seconds)
            for it in items:  # known to the keeper from now on: its lease is renewed
                active.items[it.id] = it.attempt
            if items:
                self._notify()
            return items

        async def process(item: ClaimedItem) -> None:
            task = asyncio.current_task()
            if task is not None:
                active.tasks[item.id] = task
            try:
                ok, message = await job.process(item)
            finally:
                if active.items.get(item.id) == item.attempt:
                    del active.items[item.id]
                    active.tasks.pop(item.id, None)
            self._notify()
            if listener is not None:
                listener(item, ok, message)

        while True:
            await stream_items(
                claim, process, max_in_flight=max_in_flight or s.max_items_in_flight or self.budgets.total,
                claim_batch=max(1, s.claim_batch_size), inflight=active.inflight,
            )
            if active.inflight.stopping or not active.wait_for_others:
                return
            # Nothing claimable is left. Items other processes hold are waited for (and taken over by the next claim
            # when their lease expires), so that the run is complete when this returns.
            if not (await self.store.run_totals(run_id)).unfinished:
                return
            await asyncio.sleep(self._tick())

    async def _finish(self, run_id: str) -> None:
        # Items still leased by another process (a worker sharing the run): the last one to finish completes it.
        await self.store.finish_run(run_id, only_from=("running",))

    # --- keeper: run heartbeat, cancel requests, item leases -----------------------------------------------------

    def _tick(self) -> float:
        """Seconds between keeper ticks: ``control_poll_seconds``, at most a third of the lease."""
        s = self.settings
        return max(0.02, min(s.control_poll_seconds, s.lease_seconds / 3))

    async def _keep(self) -> None:
        """Run by every execution until it ends: the one holding the keeper lock ticks (:meth:`_keeper`), the others
        wait for it; so one keeper ticks for all the runs of the process, and another execution takes over at once
        when the ticking one ends."""
        async with self._keeper_lock:
            await self._keeper()

    async def _keeper(self) -> None:
        """While runs execute here: every tick renew their run heartbeat and stop those whose cancel was requested
        (or that ended elsewhere); every third of the lease renew the leases of the items held here and cancel the
        ones whose lease was lost. A database error skips a tick (leases are three ticks long)."""
        s = self.settings
        renew_every = s.lease_seconds / 3
        while self._active:
            await asyncio.sleep(self._tick())
            renew = time.monotonic() - self._last_renew >= renew_every * 0.9
            known: dict[str, int] = {}
            for a in list(self._active.values()):
                known.update(a.items)
            try:
                hb = await self.store.heartbeat(
                    self.owner, list(self._active), known if renew else None, s.lease_seconds
                )
            except Exception as e:  # the database is away: try again next tick
                log.warning("heartbeat_failed", owner=self.owner, error=f"{type(e).__name__}: {e}"[:300])
                continue
            if renew:
                self._last_renew = time.monotonic()
            for run_id, a in list(self._active.items()):
                ctl = hb.runs.get(run_id)
                if (ctl is None or ctl.should_stop) and not a.inflight.stopping:
                    log.info("run_stop_requested", run_id=run_id, status=ctl.status if ctl else "gone")
                    a.cancelled = True
                    a.inflight.stop()
                for item_id in hb.lost & set(a.items):
                    task = a.tasks.get(item_id)
                    if task is not None and a.inflight.cancel(task):
                        self.lost_leases += 1
                        log.warning("lease_lost", run_id=run_id, item_id=item_id, attempt=a.items.get(item_id))

    async def finalize(self, run_id: str) -> RunRow:
        """Mark a run completed when none of its items is left to do (an execution that was interrupted right after
        its last item). Returns the run."""
        if run_id not in self._active:
            await self.store.finish_run(run_id, only_from=("pending", "running", "cancelled"))
        return await self.get(run_id)

    # --- control ------------------------------------------------------------------------------------------------

    def stop(self, run_id: str) -> bool:
        """Cooperatively stop a run executing here (status unchanged, items back to pending). False if not here."""
        active = self._active.get(run_id)
        if active is None:
            return False
        active.inflight.stop()
        return True

    async def stop_all(self, grace: float = 0.0) -> None:
        """Stop every run of this process and wait for them (server or worker shutdown: runs stay resumable).
        ``grace`` seconds: first stop claiming and let in-flight items finish, then cancel what is left; their items go
        back to pending (released: another process claims them at once)."""
        actives = list(self._active.values())
        if grace > 0 and actives:
            for a in actives:
                a.inflight.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(a.done.wait() for a in actives)), grace)
        for a in actives:
            a.inflight.stop()
        for a in actives:
            await a.done.wait()

    async def cancel(self, run_id: str) -> RunRow:
        """CancelRun: FailedPrecondition for a finished run; otherwise stop it (if it runs here), put its running
        items back to pending and mark it cancelled. It can be resumed later."""
        run = await self.get(run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            raise FailedPrecondition(f"run {run_id} is already {run.status}; nothing to cancel")
        if await self.store.request_cancel(run_id) is None:  # it just finished
            run = await self.get(run_id)
            raise FailedPrecondition(f"run {run_id} is already {run.status}; nothing to cancel")
        active = self._active.get(run_id)
        if active is not None:
            active.inflight.stop()
            await active.done.wait()
        # Other processes executing the run (workers) see the cancel flag within one keeper tick, cancel their
        # in-flight calls and release their items: wait for that, then take back what dead holders left.
        await self._wait_released(run_id, 3 * self.settings.control_poll_seconds + 2.0)
        await self.store.takeover_items(run_id)
        # What the provider still runs for it (an evaluation's snapshots; their members are re-asked on resume).
        await self._job(run, Inflight()).cancel()
        totals = await self.store.run_totals(run_id)
        await self.store.set_run_status(
            run_id, "cancelled", only_from=("pending", "running"), finished=True,
            event=("RUN_CANCELLED", f"cancelled; {totals.unfinished} items left to do"),
            values={"owner": None},
        )
        self._notify()
        return await self.get(run_id)

    async def _wait_released(self, run_id: str, seconds: float) -> None:
        """Poll until no item of the run is held any more (holders release theirs on the cancel flag), or
        ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not (await self.store.run_totals(run_id)).counts.get("running", 0):
                return
            await asyncio.sleep(0.1)

    async def prepare_resume(self, run_id: str, *, force: bool = False) -> tuple[RunRow, int]:
        """Before ResumeRun: clear a cancel request and take back the items whose holder is certainly gone (an
        expired lease, or a dead process of this host) — never a live lease: items a live worker holds stay its own
        (the resumed execution waits for them). ``force``: take every running item (their holders' write-backs are
        then rejected). Returns (run, items left to do). FailedPrecondition when the run is executing here."""
        run = await self.get(run_id)
        _check_complete(run)
        if run_id in self._active:
            raise FailedPrecondition(f"run {run_id} is already running")
        await self.store.clear_cancel(run_id)
        await self.store.takeover_items(run_id, force=force)
        totals = await self.store.run_totals(run_id)
        return run, totals.unfinished

    async def prepare_retry(self, run_id: str) -> tuple[RunRow, int]:
        """Before RetryFailed: failed items back to pending. Returns (run, items now to do)."""
        run = await self.get(run_id)
        _check_complete(run)
        if run_id in self._active:
            raise FailedPrecondition(f"run {run_id} is running; retry its failed items when it has finished")
        await self.store.clear_cancel(run_id)
        await self.store.takeover_items(run_id)
        await self.store.requeue_failed(run_id)
        totals = await self.store.run_totals(run_id)
        return run, totals.unfinished


def _check_complete(run: RunRow) -> None:
    if not run.input_complete:
        raise FailedPrecondition(
            f"run {run.id} is incomplete: loading its input was interrupted, so it holds only part of it and cannot "
            "be executed or resumed; start a new run from the input"
        )


def _looks_like_id(run_id: str) -> bool:
    try:
        uuid.UUID(run_id)
    except ValueError:
        return False
    return True
