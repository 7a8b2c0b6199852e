"""Memo caches of the extraction service's pure helpers, bounded by bytes rather than by entries.

``functools.lru_cache(maxsize=65_536)`` bounds a cache by entry count, so hostile or merely varied input (long
names, long URLs, long Markdown fragments) grows each cache to its full count of large entries: about 20 such caches
took the service from 252 to 493 MB of RSS under the RPC fuzz (issue 11 item 8). :func:`memo` keeps each function's
results in a FIFO cache whose bound is a byte budget, each entry costed by an estimate (key + value + per-entry
overhead), so an entry's cost grows with its size and the total stays bounded.

FIFO rather than LRU: a hit then only reads a dict, with no reordering and so no lock — these helpers are called
~300 times per answer. The cache is a plain ``dict`` (insertion-ordered, so its first key is the oldest) rather
than ``cachetools.FIFOCache(maxsize, getsizeof)``, which it replaced: the same policy, but a hit is one C-level
``dict.get`` instead of two Python-level calls (``Cache.__getitem__``), which were 15 % of a typical answer's CPU
(cProfile, issue 16 item 5).

All memo caches share one budget, ``Settings.extraction_cache_max_bytes`` (``VANTAGE_EXTRACTION_CACHE_MAX_BYTES``),
split evenly among them; :func:`configure` applies it (the servicer calls it at start). Writes are serialised by a
per-cache lock because a process may call the helpers from several threads (the tests, ``asyncio.to_thread``).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_BYTES = 48 * 1024 * 1024
"""Default total budget of all memo caches (bytes); the same as the setting's default."""

# Dict slot of the data dict plus the (value, size) tuple each entry is stored as (measured with cachetools' three
# containers: ~270 bytes per entry in all against ~490 estimated with this overhead, so the budget errs high).
ENTRY_OVERHEAD = 320
_MISS = object()
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


def _key_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Estimated bytes of a cache key. A (frozen)set argument is a shared configuration object (the generic-term
    set, ~1,000 strings, passed to every call of ``classify``): the key holds a reference to it, not a copy, so it
    counts as one pointer. Walking it on every miss was 65 % of the CPU of a 100k-character answer (cProfile)."""
    size = sys.getsizeof(args) + (sys.getsizeof(kwargs) if kwargs else 0)
    for a in (*args, *kwargs.values()):
        size += 8 if isinstance(a, frozenset | set) else approx_size(a)
    return size


class _Memo:
    """One memoised function's byte-bounded FIFO cache: ``data`` maps key → (value, estimated bytes)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.lock = threading.Lock()
        self.data: dict[Any, tuple[Any, int]] = {}
        self.currsize = 0
        self.maxsize = share_bytes()

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        """Keep ``value`` under ``key``, evicting the oldest entries to stay within :attr:`maxsize`; an entry larger
        than the whole budget is not kept."""
        if nbytes > self.maxsize:
            return
        with self.lock:
            data = self.data
            if key in data:
                return
            while data and self.currsize + nbytes > self.maxsize:
                oldest = next(iter(data))
                self.currsize -= data.pop(oldest)[1]
            data[key] = (value, nbytes)
            self.currsize += nbytes

    def resize(self) -> None:
        with self.lock:
            self.data = {}
            self.currsize = 0
            self.maxsize = share_bytes()

    def clear(self) -> None:
        with self.lock:
            self.data = {}
            self.currsize = 0


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
        # Lock-free: one dict read (atomic under the GIL); writers hold the lock among themselves, and a reader
        # that sees the dict just replaced by clear() only misses.
        hit = state.data.get(key, _MISS)
        if hit is not _MISS:
            return hit[0]  # type: ignore[index]
        value = fn(*args, **kwargs)
        state.put(key, value, _key_size(args, kwargs) + approx_size(value) + ENTRY_OVERHEAD)
        return value

    wrapper.cache_clear = state.clear  # type: ignore[attr-defined]
    wrapper.cache_bytes = lambda: state.currsize  # type: ignore[attr-defined]
    wrapper.cache_len = lambda: len(state.data)  # type: ignore[attr-defined]
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
    return sum(state.currsize for state in _registry)


def clear_all() -> None:
    """Empty every memo cache."""
    for state in _registry:
        state.clear()
