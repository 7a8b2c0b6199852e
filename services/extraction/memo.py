"""Memo caches of the extraction service's pure helpers, bounded by bytes rather than by entries.

``functools.lru_cache(maxsize=65_536)`` bounds a cache by entry count, so hostile or merely varied input (long
names, long URLs, long Markdown fragments) grows each cache to its full count of large entries: about 20 such caches
took the service from 252 to 493 MB of RSS under the RPC fuzz (issue 11 item 8). :func:`memo` keeps each function's
results in a FIFO cache whose bound is a byte budget, each entry costed by an estimate (key + value + per-entry
overhead), so an entry's cost grows with its size and the total stays bounded.

FIFO rather than LRU: a hit then only reads a dict, with no reordering and so no lock — these helpers are called
~300 times per answer. The cache is a ``dict`` (insertion-ordered, so its first key is the oldest) rather
than ``cachetools.FIFOCache(maxsize, getsizeof)``, which it replaced: the same policy, but a hit is one C-level
``dict`` lookup instead of two Python-level calls (``Cache.__getitem__``), which were 15 % of a typical answer's CPU
(cProfile, issue 16 item 5). For a function of one argument the cache object is itself the memoised function
(``__call__`` is ``dict.__getitem__``, a miss goes to ``__missing__``), so a hit runs no Python frame at all.

All memo caches share one budget, ``Settings.extraction_cache_max_bytes`` (``VANTAGE_EXTRACTION_CACHE_MAX_BYTES``),
split evenly among them; :func:`configure` applies it (the servicer calls it at start). Writes are serialised by a
per-cache lock because a process may call the helpers from several threads (the tests, ``asyncio.to_thread``).
"""

from __future__ import annotations

import functools
import inspect
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


class _Memo(dict):
    """One memoised function's byte-bounded FIFO cache: the dict itself maps key → value, :attr:`sizes` key →
    estimated bytes.

    For a function of one positional argument the instance *is* the memoised function: ``__call__`` is
    ``dict.__getitem__``, so a hit is one C-level lookup with no Python frame, and a miss reaches
    :meth:`__missing__`, which computes, stores and returns the value (the key is the argument itself). A plain
    ``functools.wraps`` wrapper with ``*args, **kwargs`` cost ~0.6 µs per hit against ~0.25 µs for this, on the
    ~300 calls a typical answer makes (cProfile / py-spy of ``Extract``, issue 16 item 5). Functions of several
    arguments get a Python wrapper over the same cache (key = the arguments tuple).
    """

    __call__ = dict.__getitem__
    # A cache is a function to its callers: identity equality and hashing, always true, never its contents.
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        self.lock = threading.Lock()
        self.sizes: dict[Any, int] = {}
        self.currsize = 0
        self.maxsize = share_bytes()

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<memoised {getattr(self.fn, '__qualname__', self.fn)!r}>"

    def __missing__(self, key: Any) -> Any:
        """A miss of the one-argument form: ``fn(key)``, kept if it fits."""
        value = self.fn(key)
        self.put(key, value, _key_size((key,), {}) + approx_size(value) + ENTRY_OVERHEAD)
        return value

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        """Keep ``value`` under ``key``, evicting the oldest entries to stay within :attr:`maxsize`; an entry larger
        than the whole budget is not kept."""
        if nbytes > self.maxsize:
            return
        with self.lock:
            if key in self.sizes:
                return
            sizes = self.sizes
            while sizes and self.currsize + nbytes > self.maxsize:
                oldest = next(iter(sizes))  # both dicts are in insertion order: the same oldest key
                self.currsize -= sizes.pop(oldest)
                dict.pop(self, oldest, None)
            dict.__setitem__(self, key, value)
            sizes[key] = nbytes
            self.currsize += nbytes

    def resize(self) -> None:
        with self.lock:
            dict.clear(self)
            self.sizes.clear()
            self.currsize = 0
            self.maxsize = share_bytes()

    def clear(self) -> None:
        # In place: readers hold no lock, and a lookup racing a clear only misses (each dict operation is atomic
        # under the GIL).
        with self.lock:
            dict.clear(self)
            self.sizes.clear()
            self.currsize = 0


def share_bytes() -> int:
    """Byte budget of each memo cache: the total budget split evenly among the registered caches."""
    return _total_bytes // max(1, len(_registry))


def _one_positional(fn: Callable[..., Any]) -> bool:
    """Does ``fn`` take exactly one argument, positional, without a default (so every call spells it the same)?"""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return (
        len(params) == 1
        and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)
        and params[0].default is params[0].empty
    )


def memo(fn: Callable[P, R]) -> Callable[P, R]:
    """Memoise the pure function ``fn`` (hashable arguments, immutable result) in a byte-bounded FIFO cache.

    Like ``functools.lru_cache``, calls that differ in how arguments are passed (positional vs keyword, a default
    spelled out) are cached separately. A function of one argument must be called with it positionally (the
    memoised function is then the cache itself, see :class:`_Memo`; a keyword raises ``TypeError``). A result
    whose entry alone exceeds the cache's budget is returned but not kept. ``wrapper.cache_clear()`` empties the
    cache; ``wrapper.cache_bytes()`` is its current estimated size.
    """
    state = _Memo(fn)
    with _registry_lock:
        _registry.append(state)
        for other in _registry:
            other.resize()
    wrapper: Any
    if _one_positional(fn):
        wrapper = state
        functools.update_wrapper(wrapper, fn)
    else:
        get = state.get

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key: Any = (args, tuple(kwargs.items())) if kwargs else args
            # Lock-free: one dict read (atomic under the GIL); writers hold the lock among themselves.
            hit = get(key, _MISS)
            if hit is not _MISS:
                return hit
            value = fn(*args, **kwargs)
            state.put(key, value, _key_size(args, kwargs) + approx_size(value) + ENTRY_OVERHEAD)
            return value

    wrapper.cache_clear = state.clear
    wrapper.cache_bytes = lambda: state.currsize
    wrapper.cache_len = lambda: len(state.sizes)
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
