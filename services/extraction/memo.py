"""Memo caches of the extraction service's pure helpers, bounded by bytes rather than by entries.

``functools.lru_cache(maxsize=65_536)`` bounds a cache by entry count, so hostile or merely varied input (long
names, long URLs, long Markdown fragments) grows each cache to its full count of large entries: about 20 such caches
took the service from 252 to 493 MB of RSS under the RPC fuzz (issue 11 item 8). :func:`memo` keeps each function's
results in a ``cachetools.FIFOCache`` whose ``maxsize`` is a byte budget and whose ``getsizeof`` is an estimate of
the entry (key + value + per-entry overhead), so an entry's cost grows with its size and the total stays bounded.
FIFO rather than LRU: a hit then only reads a dict, with no reordering and so no lock — these helpers are called
~300 times per answer and a locked LRU hit cost ~4x a ``functools.lru_cache`` hit (+~13% per answer); a hot entry
that falls out is recomputed in microseconds.

All memo caches share one budget, ``Settings.extraction_cache_max_bytes`` (``VANTAGE_EXTRACTION_CACHE_MAX_BYTES``),
split evenly among them; :func:`configure` applies it (the servicer calls it at start). Writes are serialised by a
per-cache lock because the servicer runs large requests on a worker thread while small ones run on the event loop's
thread.
Source: cachetools ``Cache(maxsize, getsizeof)`` — https://cachetools.readthedocs.io/en/stable/#cachetools.Cache
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any, ParamSpec, TypeVar

import cachetools

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_BYTES = 48 * 1024 * 1024
"""Default total budget of all memo caches (bytes); the same as the setting's default."""

# Dict slot of the data dict, the size dict and the OrderedDict (with its link node) in cachetools.FIFOCache, plus the
# (value, size) tuple each entry is stored as. tracemalloc on CPython 3.11, 20,000 clean_name entries: ~270 bytes
# per entry in all (containers + the new value string) against ~490 estimated, so the budget errs high.
ENTRY_OVERHEAD = 320

_ENTRY_SIZE = itemgetter(1)
_registry: list[_Memo] = []
_registry_lock = threading.Lock()
_total_bytes = DEFAULT_MAX_BYTES


def approx_size(obj: object) -> int:
    """Bytes of ``obj`` as ``sys.getsizeof`` reports them, descending into tuples, lists and (frozen)sets of
    scalars/strings (the shapes the memoised helpers take and return). Shared objects count every time they appear,
    so the estimate errs high."""
    size = sys.getsizeof(obj)
    if isinstance(obj, tuple | list | frozenset | set):
        size += sum(approx_size(item) for item in obj)
    return size


class _Memo:
    """One memoised function's byte-bounded FIFO cache."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.lock = threading.Lock()
        self.cache: cachetools.FIFOCache[Any, tuple[Any, int]] = self._new_cache()

    def _new_cache(self) -> cachetools.FIFOCache[Any, tuple[Any, int]]:
        return cachetools.FIFOCache(maxsize=share_bytes(), getsizeof=_ENTRY_SIZE)

    def resize(self) -> None:
        with self.lock:
            self.cache = self._new_cache()

    def clear(self) -> None:
        with self.lock:
            self.cache.clear()


def share_bytes() -> int:
    """Byte budget of each memo cache: the total budget split evenly among the registered caches."""
    return _total_bytes // max(1, len(_registry))


def memo(fn: Callable[P, R]) -> Callable[P, R]:
    """Memoise the pure function ``fn`` (hashable arguments, immutable result) in a byte-bounded FIFO cache.

    Like ``functools.lru_cache``, calls that differ in how arguments are passed (positional vs keyword, a default
    spelled out) are cached separately. A result whose entry alone exceeds the cache's budget is returned but not
    kept. ``wrapper.cache_clear()`` empties the cache; ``wrapper.cache_bytes()`` is its current estimated size.
    """
    state = _Memo(fn)
    with _registry_lock:
        _registry.append(state)
        for other in _registry:
            other.resize()

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key: Any = (args, tuple(kwargs.items())) if kwargs else args
        try:  # lock-free: a FIFO lookup only reads one dict (atomic), writers hold the lock among themselves
            return state.cache[key][0]  # type: ignore[no-any-return]
        except KeyError:
            pass
        value = fn(*args, **kwargs)
        nbytes = approx_size(key) + approx_size(value) + ENTRY_OVERHEAD
        with state.lock:
            try:
                state.cache[key] = (value, nbytes)
            except ValueError:  # this one entry is larger than the whole budget
                pass
        return value

    wrapper.cache_clear = state.clear  # type: ignore[attr-defined]
    wrapper.cache_bytes = lambda: state.cache.currsize  # type: ignore[attr-defined]
    wrapper.cache_len = lambda: len(state.cache)  # type: ignore[attr-defined]
    return wrapper


def configure(total_bytes: int) -> None:
    """Set the total byte budget of all memo caches (split evenly) and empty them. ``total_bytes`` ≥ 0; 0 disables
    memoisation. Raises ``ValueError`` on a negative budget."""
    global _total_bytes
    if total_bytes < 0:
        raise ValueError("total_bytes must be non-negative")
    with _registry_lock:
        if total_bytes == _total_bytes:
            return
        _total_bytes = total_bytes
        for state in _registry:
            state.resize()


def total_bytes() -> int:
    """Estimated bytes held by all memo caches now."""
    return sum(state.cache.currsize for state in _registry)


def clear_all() -> None:
    """Empty every memo cache."""
    for state in _registry:
        state.clear()
