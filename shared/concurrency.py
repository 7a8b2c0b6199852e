"""Concurrency primitives the services share.

:class:`SingleFlight` coalesces concurrent identical calls within one process (Go's
``golang.org/x/sync/singleflight``): the first caller of a key (the *leader*) runs the call, callers that arrive
while it is in flight (*followers*) await its outcome instead of making their own. The search service puts it in
front of Tavily (:mod:`services.search.cache`), the inference service in front of its providers
(:mod:`services.inference.cache`).

:func:`background` runs coroutines as tasks of an ``asyncio.TaskGroup`` for the lifetime of a block, so a service's
periodic jobs (the heap trimmer of :func:`shared.grpc_server.run_service`, a cache purge) have an owner instead of a
bare ``asyncio.create_task``: they are cancelled and awaited when the block ends, and one that fails ends the block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _LeaderGone(Exception):
    """Set on a flight whose leader was cancelled: its followers make their own call."""


class SingleFlight(Generic[K, V]):
    """At most one in-flight call per key in this process.

    - The leader's result is shared with every follower waiting at that moment; so is its error (same request,
      same answer). Nothing is kept once the call ends: caching is the caller's business (do it inside ``fn``, so a
      caller arriving just after the flight ends finds the stored value).
    - A follower that is cancelled (its RPC went away) does not cancel the leader (``asyncio.shield``).
    - A follower whose leader is cancelled does not inherit the cancellation: it retries, and one of the followers
      becomes the new leader.
    """

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}

    @property
    def in_flight(self) -> int:
        """Calls running now (one per key)."""
        return len(self._flights)

    async def do(self, key: K, fn: Callable[[], Awaitable[V]], *, fresh: bool = False) -> tuple[V, bool]:
        """``(value, shared)``: ``fn()``'s value, or the value of the call already in flight for ``key`` (then
        ``shared`` is True). ``fresh=True`` never joins a call in flight — this one runs ``fn`` and later callers
        join it instead. Raises what ``fn`` raised (a follower: what the leader's ``fn`` raised)."""
        while not fresh:
            fut = self._flights.get(key)
            if fut is None:
                break
            try:
                return await asyncio.shield(fut), True
            except _LeaderGone:
                continue
        fut = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            value = await fn()
        except asyncio.CancelledError:
            fut.set_exception(_LeaderGone())
            raise
        except BaseException as e:
            fut.set_exception(e)
            raise
        else:
            fut.set_result(value)
            return value, False
        finally:
            if self._flights.get(key) is fut:  # a fresh call may have replaced this flight
                del self._flights[key]
            if not fut.cancelled():
                fut.exception()  # mark retrieved: no "exception was never retrieved" when nobody waited


@contextlib.asynccontextmanager
async def background(*jobs: Coroutine[Any, Any, Any]) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run ``jobs`` as tasks of one ``asyncio.TaskGroup`` while the block runs; yield the tasks. On exit they are
    cancelled and awaited (jobs are expected to run until cancelled).

    Errors: a job that fails cancels the block, and the group raises ``ExceptionGroup`` with its error (the
    ``TaskGroup`` rule). An exception of the block itself is re-raised as it is, not wrapped in a group, so a caller
    that catches ``OSError`` from a server's start-up inside the block still sees an ``OSError``."""
    failure: Exception | None = None
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(job) for job in jobs]
        try:
            yield tasks
        except Exception as e:  # re-raised below, once the jobs are gone (CancelledError & co. pass through)
            failure = e
        finally:
            for t in tasks:
                t.cancel()
    if failure is not None:
        raise failure


__all__ = ["SingleFlight", "background"]
