"""In-memory result cache for the search service: TTL + LRU, with single-flight coalescing.

:class:`TTLCache` keeps at most ``max_entries`` values for ``ttl_seconds`` each, and at most ``max_weight`` of their
weight — bytes, with :func:`deep_sizeof` — evicting the least recently used first: a cache bounded by entries alone
grows with the size of what it holds (hostile or huge answers), one bounded by bytes does not.
:class:`CachedFlight` puts it in front of a fetch function with the shared
:class:`~shared.concurrency.SingleFlight`, so that concurrent identical requests cause one fetch: the first caller
(the *leader*) fetches, the others await its result. A follower whose leader is cancelled (its RPC went away) does
not inherit the cancellation: it retries and becomes the leader itself. A leader's error is shared with the
followers waiting at that moment (same request, same answer) and never cached.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.concurrency import SingleFlight

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def deep_sizeof(obj: object, _depth: int = 0) -> int:
    """Bytes ``obj`` holds in memory: ``sys.getsizeof`` of it and, recursively, of the strings, bytes, numbers,
    containers and dataclass fields it references (shared objects counted each time: an upper bound). Depth ≤ 8."""
    size = sys.getsizeof(obj)
    if _depth >= 8 or isinstance(obj, str | bytes | bytearray | int | float | bool | type(None)):
        return size
    if isinstance(obj, dict):
        return size + sum(deep_sizeof(k, _depth + 1) + deep_sizeof(v, _depth + 1) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return size + sum(deep_sizeof(v, _depth + 1) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return size + sum(deep_sizeof(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj))
    return size


@dataclass
class CacheStats:
    """Counters since start: lookups that hit / missed, entries evicted (LRU) or expired (TTL), fetches coalesced."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    coalesced: int = 0
    fetches: int = 0


class TTLCache(Generic[K, V]):
    """A bounded mapping whose entries expire ``ttl_seconds`` after they were stored.

    Bounded by count (``max_entries``) and, when ``weigh`` is given, by total weight (``max_weight``; the search
    engine weighs pages in bytes with :func:`services.search.engine.page_bytes`, a page's :func:`deep_sizeof`
    summed without the generic walk): least recently used entries go first; a single value heavier than
    ``max_weight`` is not stored.
    ``max_entries <= 0`` or ``ttl_seconds <= 0`` disables storage (every lookup misses). ``clock`` returns seconds
    (monotonic by default; tests pass a fake).
    """

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        *,
        max_weight: int = 0,
        weigh: Callable[[V], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.max_weight = max_weight
        self._weigh = weigh if max_weight > 0 else None
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V, int]] = OrderedDict()
        self.weight = 0
        self.stats = CacheStats()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.ttl_seconds > 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        """The fresh value under ``key`` (now most recently used), or None."""
        item = self._data.get(key)
        if item is None:
            self.stats.misses += 1
            return None
        expires, value, _ = item
        if self._clock() >= expires:
            self._remove(key)
            self.stats.expirations += 1
            self.stats.misses += 1
            return None
        self._data.move_to_end(key)
        self.stats.hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` for ``ttl_seconds``, evicting the least recently used entries beyond ``max_entries``."""
        if not self.enabled:
            return
        w = self._weigh(value) if self._weigh else 0
        if key in self._data:
            self._remove(key)
        if self._weigh and w > self.max_weight:
            return
        self._data[key] = (self._clock() + self.ttl_seconds, value, w)
        self.weight += w
        while len(self._data) > self.max_entries or (self._weigh and self.weight > self.max_weight):
            oldest = next(iter(self._data))
            self._remove(oldest)
            self.stats.evictions += 1

    def _remove(self, key: K) -> None:
        _, _, w = self._data.pop(key)
        self.weight -= w

    def clear(self) -> None:
        self._data.clear()
        self.weight = 0


class Origin(enum.Enum):
    """Where a value came from: this call fetched it, the cache had it, or another in-flight call fetched it."""

    FETCHED = "fetched"
    HIT = "hit"
    COALESCED = "coalesced"


class CachedFlight(Generic[K, V]):
    """A :class:`TTLCache` in front of a :class:`shared.concurrency.SingleFlight`: a fresh cached value, else the
    fetch already in flight for the key, else a fetch of this call's own (then cached)."""

    def __init__(self, cache: TTLCache[K, V]) -> None:
        self.cache = cache
        self._flight: SingleFlight[K, V] = SingleFlight()

    @property
    def in_flight(self) -> int:
        """Fetches running now."""
        return self._flight.in_flight

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]], *, refresh: bool = False) -> tuple[V, Origin]:
        """The value for ``key``: from the cache, from a fetch already in flight, or from ``fetch()`` (then cached).

        ``refresh=True`` skips both the cache and any fetch in flight, fetches anew and stores the fresh value.
        Raises what ``fetch`` raised (errors are shared with the callers waiting for it, never cached).
        """
        if not refresh:
            value = self.cache.get(key)
            if value is not None:
                return value, Origin.HIT

        async def fetch_and_store() -> V:
            self.cache.stats.fetches += 1
            fetched = await fetch()
            self.cache.put(key, fetched)  # before the flight ends, so a caller arriving after it finds the value
            return fetched

        value, shared = await self._flight.do(key, fetch_and_store, fresh=refresh)
        if shared:
            self.cache.stats.coalesced += 1
            return value, Origin.COALESCED
        return value, Origin.FETCHED
