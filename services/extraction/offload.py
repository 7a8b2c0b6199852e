"""Large extraction work in a recycled worker process, so the event loop and the service's own heap stay small.

Extraction is CPU-bound pure Python. A large request (a 200k-character answer costs ~3 s of CPU) run on the
service's event loop stalls health checks; run on a thread it still shares the GIL, and either way the millions of
short-lived objects it makes fragment the service's heap. :class:`Offload` runs such work in a
``ProcessPoolExecutor`` whose workers exit after ``tasks_per_child`` tasks, so whatever a worker's heap grew to goes
back to the OS when it is replaced, and the main process only parses the request and builds the response. (The
service's 2.0x RSS after the large RPC fuzz, issue 11 item 8, was something else: refused requests kept alive by a
reference cycle in the error boundary until a full gc pass — fixed in ``shared.grpc_server``; memray showed the live
upb arenas and request strings, not heap fragmentation.)

- Start method ``forkserver`` with :mod:`services.extraction.warm` preloaded: each worker is forked from a server
  that already holds the word lists (copy-on-write), so a recycled worker starts in milliseconds, not the ~1.4 s of
  :func:`core.warm_up`; the fork server is a fresh interpreter, so no gRPC threads or sockets are forked.
  (Python 3.11 refuses ``fork`` with ``max_tasks_per_child``: docs.python.org/3.11/library/concurrent.futures.html.)
- Bounded: at most ``max_pending`` calls are submitted at a time; further callers wait (asyncio, no thread held).
- A worker that dies (killed, out of memory) breaks the pool: the call is retried once on a new pool, and the
  pool is replaced for the next calls.
- A worker exits when the service process is gone (:func:`_watch_service`): pool workers hold both ends of their
  task pipe, so they never see EOF, and a SIGKILLed service would otherwise leave them (and, through the alive pipe
  they inherit, the fork server) running for ever.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

#: Tasks a worker runs before it is replaced (its heap returned to the OS). A large request costs 10 ms-3 s of CPU
#: and a forkserver fork ~10 ms, so recycling after 20 adds well under 1 % to large requests.
TASKS_PER_CHILD = 20
#: Calls submitted to the pool at a time (the rest wait on a semaphore in the event loop).
MAX_PENDING = 8


#: How often a worker checks that the service process still exists (s).
WATCH_INTERVAL_S = 1.0


def _service_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the pid was reused): treat as gone
        return False
    return True


def _watch_service(pid: int) -> None:
    """Worker initializer: a daemon thread that ends this worker once process ``pid`` (the service) is gone."""

    def watch() -> None:
        while _service_alive(pid):
            time.sleep(WATCH_INTERVAL_S)  # a liveness poll: a process's death has no notification to wait on here
        os._exit(0)

    threading.Thread(target=watch, name="watch-service", daemon=True).start()


def default_workers() -> int:
    """Worker processes: the CPUs this process may use minus one for the event loop (at least 1, at most 4)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus - 1))


class Offload:
    """Runs picklable module-level functions in recycled worker processes (see the module docstring)."""

    def __init__(self, workers: int | None = None, tasks_per_child: int = TASKS_PER_CHILD,
                 max_pending: int = MAX_PENDING) -> None:
        self._workers = workers or default_workers()
        self._tasks_per_child = tasks_per_child
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["services.extraction.warm"])
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(max_pending)
        self._closed = False

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("the extraction worker pool is closed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=self._ctx, max_tasks_per_child=self._tasks_per_child,
                initializer=_watch_service, initargs=(os.getpid(),),
            )
        return self._pool

    def start(self) -> None:
        """Start the fork server and a first worker and wait for it (blocking: call it from a thread before the
        service is SERVING). The fork server imports and warms the word lists (~2 s); started lazily, the first
        large request would hold the event loop that long while ``submit`` waits for the first fork."""
        self._get_pool().submit(os.getpid).result()

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker process; its exceptions are raised here. ``fn`` and its arguments
        must pickle. Raises ``RuntimeError`` after :meth:`close`."""
        call = functools.partial(fn, *args, **kwargs)
        async with self._slots:
            for attempt in (1, 2):
                pool = self._get_pool()
                try:
                    return await asyncio.wrap_future(pool.submit(call))
                except BrokenProcessPool:
                    self._drop(pool)
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the workers now: queued calls are cancelled and running ones killed (SIGTERM), because the
        interpreter joins a pool's workers at exit and a 3 s task would otherwise hold up the service's shutdown."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to stop running tasks before Python 3.14 (terminate_workers).
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
