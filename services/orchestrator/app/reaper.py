"""The reaper: returns expired item leases to pending and flags abandoned runs, every third of the lease.

One loop for every process that executes runs from the shared database — the OrchestratorService (a task of its
``build()`` TaskGroup) and ``vantage worker`` (a task of :meth:`Worker.run`'s) — so that a crashed process's items
are taken over within lease + one tick (River's rescuer, graphile-worker's sweep: shared/reference/performance.md
§4.3). Each pass is :meth:`Store.reap` with ``stale_seconds = lease_seconds`` (the ``lease_seconds`` setting); it
ends by settling the search rows of unknown outcome — a killed worker's, or calls ended in a deadline or a cancel —
from the search service's records (:meth:`Store.settle_searches`, :mod:`shared.call_records`: exact when the search
replicas recorded past them, the upper bound when one died with the outcome; issue 17).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

import structlog

from services.orchestrator.store import Store
from services.orchestrator.store.repo import ReapReport

log = structlog.get_logger("vantage.orchestrator")


def reap_interval(lease_seconds: float) -> float:
    """Seconds between passes: a third of ``lease_seconds``, at least 0.05."""
    return max(0.05, lease_seconds / 3)


async def reap_forever(
    store: Store, lease_seconds: float, *, on_pass: Callable[[ReapReport], None] | None = None
) -> NoReturn:
    """Reap at once, then every :func:`reap_interval` seconds, until cancelled. ``on_pass`` is called with each
    pass's report (the worker counts the leases it returned). A database error is logged (type and message, at most
    300 characters) and the pass skipped; nothing is raised, so the loop can be a child of a server's TaskGroup."""
    while True:
        try:
            rep = await store.reap(stale_seconds=lease_seconds)
        except Exception as e:  # the database is away (the store already retried): next pass
            log.warning("reap_failed", error=f"{type(e).__name__}: {e}"[:300])
        else:
            if on_pass is not None:
                on_pass(rep)
            if rep.expired or rep.interrupted or rep.settled_calls:
                log.info("reaped", expired=rep.expired, abandoned_calls=rep.abandoned_calls,
                         interrupted=rep.interrupted, settled_calls=rep.settled_calls)
        await asyncio.sleep(reap_interval(lease_seconds))


__all__ = ["reap_forever", "reap_interval"]
