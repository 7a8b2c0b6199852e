"""``python -m bench.research_child OUT.json research FILE.csv …``: run the ``vantage`` CLI (the orchestrator, in this
process) with measurement hooks, and write what was measured to ``OUT.json`` at exit.

Measured, without touching the orchestrator's code:

- database statements, counted with SQLAlchemy's ``before_cursor_execute`` event on every ``Engine`` (async engines
  run on a sync ``Engine`` underneath), by verb (INSERT, UPDATE, DELETE, SELECT, …), plus the rows of
  ``executemany`` batches, the ``commit`` events (transactions), and the pool's connections opened and checkouts;
- the execution window: ``Orchestrator.execute`` is wrapped to record wall time, process CPU time and the
  statement counts at its start and end, so ingesting the CSV and printing the report are not charged to the
  pipeline;
- the process's peak RSS (``ru_maxrss``) and CPU time (``getrusage``) at exit;
- with ``BENCH_TIMELINE=1``, every budget slot held and every claim / write-back (:func:`_wrap_timeline`), from which
  :func:`bench.pipeline.breakdown` tells where a run's makespan went.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import time
from collections import Counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

COUNTS: Counter[str] = Counter()
WINDOW: dict[str, Any] = {}
T0 = time.monotonic()


@event.listens_for(Engine, "before_cursor_execute")
def _statement(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    COUNTS[verb] += 1
    if verb in ("INSERT", "UPDATE", "DELETE"):
        COUNTS["write_statements"] += 1
        COUNTS["write_rows_sent"] += len(parameters) if executemany and parameters else 1


@event.listens_for(Engine, "commit")
def _commit(conn: Any) -> None:
    COUNTS["COMMIT"] += 1


@event.listens_for(Pool, "connect")
def _connect(dbapi_conn: Any, record: Any) -> None:
    COUNTS["db_connections_opened"] += 1


@event.listens_for(Pool, "checkout")
def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
    COUNTS["db_checkouts"] += 1


def _snapshot() -> dict[str, Any]:
    return {"t": time.monotonic(), "cpu": time.process_time(), "counts": dict(COUNTS)}


def _wrap_execute() -> None:
    """Record a snapshot around ``Orchestrator.execute`` (the run's whole execution)."""
    try:
        from services.orchestrator.app.runs import Orchestrator
    except ImportError:  # the orchestrator moved: only whole-process figures then
        return
    inner = Orchestrator.execute

    async def execute(self: Any, run_id: str, **kw: Any) -> Any:
        WINDOW["start"] = _snapshot()
        WINDOW["run_id"] = run_id
        try:
            return await inner(self, run_id, **kw)
        finally:
            WINDOW["end"] = _snapshot()

    Orchestrator.execute = execute  # type: ignore[method-assign]


#: ``BENCH_TIMELINE=1``: when each budget slot was asked for, got and given back, and when each claim and item
#: write-back ran (monotonic seconds, the clock of the window): [(kind, asked, start, end)].
TIMELINE: list[tuple[str, float, float, float]] = []


def _wrap_timeline() -> None:
    """Record every :meth:`Budget.slot` hold (search, inference, extraction) and every claim / write-back
    (``Store.claim_items``, ``complete_item``, ``fail_item``) as (kind, asked, start, end), without touching their
    code: wrappers installed on the classes before the CLI starts."""
    import contextlib

    from services.orchestrator.app.pipeline import Budget
    from services.orchestrator.store import Store

    slot = Budget.slot

    @contextlib.asynccontextmanager
    async def timed_slot(self: Any) -> Any:
        asked = time.monotonic()
        async with slot(self):
            start = time.monotonic()
            try:
                yield
            finally:
                TIMELINE.append((self.name, asked, start, time.monotonic()))

    Budget.slot = timed_slot  # type: ignore[method-assign]

    def timed(name: str) -> None:
        inner = getattr(Store, name)

        async def call(self: Any, *a: Any, **kw: Any) -> Any:
            start = time.monotonic()
            try:
                return await inner(self, *a, **kw)
            finally:
                TIMELINE.append((name, start, start, time.monotonic()))

        setattr(Store, name, call)

    for name in ("claim_items", "complete_item", "fail_item"):
        timed(name)


def _dump(path: str) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "wall_s": time.monotonic() - T0,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "max_rss_mib": ru.ru_maxrss / 1024,  # Linux reports KiB
        "counts": dict(COUNTS),
        "window": WINDOW,
    }
    if TIMELINE:
        out["timeline"] = TIMELINE
    with open(path, "w") as f:
        json.dump(out, f)


def _profile(path: str) -> None:
    """With ``BENCH_PROFILE=FILE``: cProfile the whole command, write the top functions by own time to FILE."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()

    def stop() -> None:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(40)
        with open(path, "w") as f:
            f.write(buf.getvalue())

    atexit.register(stop)


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    atexit.register(_dump, out)
    if os.environ.get("BENCH_PROFILE"):
        _profile(os.environ["BENCH_PROFILE"])
    _wrap_execute()
    if os.environ.get("BENCH_TIMELINE"):
        _wrap_timeline()
    from services.orchestrator.cli import main as cli_main

    sys.argv = ["vantage", *args]
    cli_main()


if __name__ == "__main__":
    main()
