"""Concurrency primitives the services share.

:class:`SingleFlight` coalesces concurrent identical calls within one process (Go's
``golang.org/x/sync/singleflight``): the first caller of a key (the *leader*) runs the call, callers that arrive
while it is in flight (*followers*) await its outcome instead of making their own. The search service puts it in
front of Tavily (:mod:`services.search.cache`), the inference service in front of its providers
(:mod:`services.inference.cache`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

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


__all__ = ["SingleFlight"]
