"""Implementations of the ``vantage`` run commands (research, lookup, status, resume, retry-failed, export, runs,
db). :mod:`services.orchestrator.cli` declares the commands and calls :func:`run_command` on these coroutines.

The CLI *is* an orchestrator: it executes the run in its own process against the services at
``settings.addr(...)``, writes the database itself, and is resumable from any point (kill it, then
``vantage resume RUN_ID``).

Errors never reach the user as tracebacks: :func:`run_command` turns each into one line on stderr and an exit code
(0 ok, 1 items failed, 2 usage/input, 3 infrastructure: services or database unreachable, schema out of date).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.orchestrator.inputs import CsvFile, InputError, at_most, rows_from_pairs
from services.orchestrator.report import (
    company_card,
    hints,
    item_record,
    make_console,
    printable,
    results_table,
    run_panel,
    run_record,
    runs_table,
    totals_lines,
    write_csv,
    write_json,
)
from services.orchestrator.research import Clients, ResearchOptions, SetupError
from services.orchestrator.runs import Orchestrator
from services.orchestrator.store import ClaimedItem, SchemaOutOfDate, Store, open_store
from services.orchestrator.store.db import (
    create_engine,
    current_revision,
    display_url,
    head_revision,
    upgrade,
)
from shared.config import Settings
from shared.errors import FailedPrecondition, InvalidArgument, NotFound, RetryableError, VantageError
from shared.grpc_client import Channels

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Rows per printed table (a long run prints several tables rather than building one huge one in memory).
TABLE_PAGE = 500


class CliError(Exception):
    """A one-line error for the user, with the process exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Session:
    settings: Settings
    store: Store
    orch: Orchestrator


@contextlib.asynccontextmanager
async def session(settings: Settings) -> AsyncIterator[Session]:
    """Database (schema checked; an empty database is created) + channels to the services + an Orchestrator."""
    try:
        store = await open_store(settings.database_url)
    except (OperationalError, InterfaceError, DBAPIError, OSError) as e:
        raise CliError(
            f"database not reachable at {display_url(settings.database_url)}: {_first_line(e)}", EXIT_UNAVAILABLE
        ) from None
    channels = Channels(settings)
    try:
        yield Session(settings, store, Orchestrator(store, Clients(channels, settings), settings))
    finally:
        await channels.close()
        await store.close()


def run_command(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` on a fresh event loop; map every failure to one line on stderr and an exit code."""
    err = make_console(stderr=True)
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        err.print("interrupted", style="yellow")
        return EXIT_INTERRUPTED
    except BaseException as e:  # the user gets one line, never a traceback
        leaf = _leaf(e)
        if isinstance(leaf, SystemExit | KeyboardInterrupt):
            raise
        if isinstance(leaf, BrokenPipeError):
            # `vantage export … | head`: the reader left; stop quietly (and keep Python from complaining at exit).
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        message, code = describe_error(leaf)
        err.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
        return code


def describe_error(e: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception that ended a command."""
    if isinstance(e, CliError):
        return e.message, e.code
    if isinstance(e, SchemaOutOfDate):
        return e.message, EXIT_UNAVAILABLE
    if isinstance(e, SetupError):
        code = EXIT_UNAVAILABLE if isinstance(e.cause, RetryableError) else EXIT_USAGE
        return e.message, code
    if isinstance(e, InputError | InvalidArgument | NotFound | FailedPrecondition):
        return e.message, EXIT_USAGE
    if isinstance(e, RetryableError):
        return e.message, EXIT_UNAVAILABLE
    if isinstance(e, OperationalError | InterfaceError | DBAPIError):
        return f"database error: {_first_line(e)}", EXIT_UNAVAILABLE
    if isinstance(e, VantageError):
        return e.message, EXIT_FAILED_ITEMS
    return f"internal error: {type(e).__name__}: {_first_line(e)}", EXIT_FAILED_ITEMS


def _leaf(e: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from task groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


async def resolve_run(store: Store, run_id: str) -> str:
    """A full run id from an id or its unique prefix; CliError (exit 2) otherwise."""
    ids = await store.find_run_ids(run_id)
    if not ids:
        raise CliError(f"run {run_id!r} not found")
    if len(ids) > 1:
        raise CliError(f"run id prefix {run_id!r} is ambiguous; give more characters")
    return ids[0]


# --- progress ---------------------------------------------------------------------------------------------------


class ProgressView:
    """Item-by-item progress on stderr: a rich progress bar on a terminal, one plain line per item otherwise,
    nothing with ``--quiet``."""

    def __init__(self, total: int, already: int, *, quiet: bool, label: str = "researching") -> None:
        self.total = total
        self.label = label
        self.count = already
        self.console = make_console(stderr=True)
        self.mode = "quiet" if quiet else ("bar" if sys.stdout.isatty() and self.console.is_terminal else "lines")
        self._bar: Progress | None = None
        self._task: object = None

    def __enter__(self) -> ProgressView:
        if self.mode == "bar":
            self._bar = Progress(
                TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.description}"), console=self.console, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=self.total, completed=self.count)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def item(self, item: ClaimedItem, ok: bool, message: str) -> None:
        self.count += 1
        if self.mode == "bar" and self._bar is not None:
            company = escape(printable(item.company))  # a company name is text, never rich markup
            label = f"{company}: {escape(printable(message))}" if ok else f"[red]{company}: failed[/red]"
            self._bar.update(self._task, advance=1, description=label)  # type: ignore[arg-type]
        elif self.mode == "lines":
            state = "done  " if ok else "FAILED"
            self.console.print(
                f"[{self.count}/{self.total}] {state} {item.company}: {message}", markup=False, highlight=False,
                soft_wrap=True,
            )


@contextlib.contextmanager
def stop_on_signals(orch: Orchestrator, run_id: str) -> Iterator[dict[str, bool]]:
    """First Ctrl-C / SIGTERM: stop the run cooperatively (in-flight items go back to pending, resumable). A second
    one: interrupt at once."""
    loop = asyncio.get_running_loop()
    state = {"stopped": False}
    main = asyncio.current_task()

    def handler() -> None:
        if state["stopped"] and main is not None:
            main.cancel()
            return
        state["stopped"] = True
        make_console(stderr=True).print("stopping… (again to force)", style="yellow")
        orch.stop(run_id)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield state
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# --- commands ---------------------------------------------------------------------------------------------------


async def research(
    settings: Settings, path: Path, *, model: str | None, name: str | None, output: str, quiet: bool,
    no_cache: bool = False, detach: bool = False,
) -> int:
    started = time.monotonic()
    input_path = str(path)  # made absolute by the command (no blocking path calls on the loop)
    # Missing file, bad header (missing or repeated) → InputError (exit 2) before anything else; a malformed row
    # (unterminated quote, over-long name, too many rows) fails the load naming its line, and no run is left.
    with CsvFile(path, max_name_chars=settings.max_name_chars) as src:
        async with session(settings) as s:
            await s.orch.clients.check()
            opts = ResearchOptions(model=model or settings.research_model, no_cache=no_cache)
            run, report = await s.orch.create_research_run(
                at_most(src.rows(), settings.max_run_items, field=str(path)), name=name or path.name, options=opts,
                input_path=input_path,
            )
            src.close()  # ingested: the file is no longer needed while the run executes
            note = make_console(stderr=True)
            if not quiet:
                note.print(
                    f"run {run.id}: {report.queued} companies from {path}"
                    + (f", {report.skipped} rows skipped" if report.skipped else "")
                    + f" · model {opts.model}",
                    markup=False, highlight=False, soft_wrap=True,
                )
                for msg in report.skip_messages:
                    note.print(f"  skipped {msg}", markup=False, highlight=False, soft_wrap=True, style="dim")
            if detach:
                return await detach_run(s, run.id, quiet=quiet)
            return await _execute_and_report(s, run.id, output=output, quiet=quiet, started=started)


async def detach_run(s: Session, run_id: str, *, quiet: bool = False) -> int:
    """``--detach``: queue the run for ``vantage worker`` processes (the shared run-start path of ``research`` and
    ``evaluate``), print its id on stdout and return 0 without executing it."""
    await s.store.enqueue_run(run_id)
    sys.stdout.write(run_id + "\n")
    if not quiet:
        make_console(stderr=True).print(
            f"run {run_id} queued for workers (start one with: vantage worker); follow it with: vantage status "
            f"{run_id}", markup=False, highlight=False, soft_wrap=True,
        )
    return EXIT_OK


async def lookup(settings: Settings, company: str, *, domain: str, model: str | None, output: str) -> int:
    async with session(settings) as s:
        await s.orch.clients.check()
        opts = ResearchOptions(model=model or settings.research_model)
        run, _ = await s.orch.create_research_run(
            rows_from_pairs([(company, domain)]), name=f"lookup: {company}", options=opts
        )
        await _execute(s, run.id)
        items = await s.store.page_items(run.id, limit=1)
        it = items[0]
        if output == "json":
            print_json({"run_id": run.id, **item_record(it)})
        else:
            out = make_console()
            out.print(company_card(it))
            out.print(f"run {run.id}", style="dim", markup=False, highlight=False)
        return EXIT_OK if it.status == "done" else EXIT_FAILED_ITEMS


async def status(settings: Settings, run_id: str, *, output: str = "table") -> int:
    async with session(settings) as s:
        rid = await resolve_run(s.store, run_id)
        summ = await s.orch.summary(rid)
        if output == "json":
            rep = await s.store.repeated_calls(rid)
            failed = await s.store.page_items(rid, limit=20, statuses=("failed",))
            print_json({
                "run": run_record(summ.run, summ.totals),
                "repeated_paid_calls": {"total": rep.total, "billed": rep.completed, "unknown": rep.abandoned},
                "failed_items": [item_record(it) for it in failed],
            })
            return EXIT_OK
        out = make_console()
        out.print(run_panel(summ.run, summ.totals))
        failed = await s.store.page_items(rid, limit=20, statuses=("failed",))
        if failed:
            out.print(results_table(failed, title="failed items" + (" (first 20)" if len(failed) == 20 else "")))
        rep = await s.store.repeated_calls(rid)
        out.print(
            f"repeated paid calls: {rep.total} ({rep.completed} billed, {rep.abandoned} of unknown outcome) — calls "
            "of attempts superseded by a crash, an expired lease, a resume or a retry",
            markup=False, highlight=False, soft_wrap=True,
        )
        if summ.run.status == "running":
            age = summ.run.heartbeat_age()
            who = "nobody (interrupted)" if age is None or age > settings.lease_seconds else \
                f"a live process (heartbeat {age:.0f} s ago)"
            out.print(f"executed by: {who}", markup=False, highlight=False)
        for line in hints(summ.run, summ.totals)[1:]:
            out.print(line, markup=False, highlight=False)
        return EXIT_OK


async def resume(
    settings: Settings, run_id: str, *, output: str, quiet: bool, failed_only: bool = False, force: bool = False,
    detach: bool = False,
) -> int:
    """``vantage resume`` / ``retry-failed``: take back the items whose holder is gone (expired lease, or a dead
    process of this host; every running item with ``force``), then execute the run here — waiting for items live
    workers hold — or, with ``detach``, queue it for workers."""
    started = time.monotonic()
    async with session(settings) as s:
        rid = await resolve_run(s.store, run_id)
        if failed_only:
            run, todo = await s.orch.prepare_retry(rid)
        else:
            run, todo = await s.orch.prepare_resume(rid, force=force)
        if todo and detach:
            return await detach_run(s, rid, quiet=quiet)
        if todo == 0:
            what = "no failed items to retry" if failed_only else "nothing left to do"
            make_console(stderr=True).print(f"run {rid} ({run.status}): {what}", markup=False, highlight=False)
            await s.orch.finalize(rid)
            return await _report(s, rid, output=output, started=None)
        await s.orch.clients.check()
        if not quiet:
            make_console(stderr=True).print(
                f"run {rid}: {todo} items to do", markup=False, highlight=False
            )
        return await _execute_and_report(s, rid, output=output, quiet=quiet, started=started)


async def cancel(settings: Settings, run_id: str) -> int:
    """``vantage cancel``: :meth:`Orchestrator.cancel` (the cancel flag reaches the process executing the run; exit 2
    for a run that is already over)."""
    async with session(settings) as s:
        rid = await resolve_run(s.store, run_id)
        run = await s.orch.cancel(rid)
        totals = await s.store.run_totals(rid)
        make_console(stderr=True).print(
            f"run {rid} {run.status}: {totals.counts['done']} done, {totals.unfinished} left; resume with: "
            f"vantage resume {rid}", markup=False, highlight=False, soft_wrap=True,
        )
        return EXIT_OK


# --- remote: the run created and executed by an orchestrator service ------------------------------------------

#: Inputs up to this size travel inline (input_csv / questions_text); larger ones through UploadInput, in chunks.
INLINE_INPUT_BYTES = 1024 * 1024
UPLOAD_CHUNK_BYTES = 1024 * 1024


def read_local_input(path: Path, max_bytes: int) -> bytes:
    """The bytes of a local input file for a remote run, at most ``max_bytes`` (``VANTAGE_MAX_INPUT_BYTES``, the
    server's bound too). :class:`InputError` (exit 2) otherwise."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path}: larger than {max_bytes} bytes (VANTAGE_MAX_INPUT_BYTES)", field="input")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", field="input") from None
    except IsADirectoryError:
        raise InputError(f"{path}: not a file", field="input") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}", field="input") from None


async def remote_run(
    settings: Settings, request: object, data: bytes, *, content_field: str, filename: str, quiet: bool,
    detach: bool, output: str,
) -> int:
    """``--remote``: send the input's content to the orchestrator at ``settings.addr("orchestrator")`` —
    ``content_field`` (``input_csv`` / ``questions_text``) of the StartRunRequest ``request`` when it is at most
    :data:`INLINE_INPUT_BYTES`, else an ``UploadInput`` stream and its ``upload_id`` — so that the server reads no
    file of its own; then (unless ``detach``) follow the run with WatchRun and print its totals. The database is
    the server's: this process opens none. Exit 0, 1 (items failed), 2 (refused input), 3 (unreachable)."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from shared.errors import from_rpc_error
    from vantage.orchestrator.v1 import orchestrator_pb2 as opb
    from vantage.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc

    assert isinstance(request, opb.StartRunRequest)
    addr = settings.addr("orchestrator")
    channels = Channels(settings)
    stub = opb_grpc.OrchestratorServiceStub(channels.for_service("orchestrator"))
    note = make_console(stderr=True)
    try:
        if len(data) <= INLINE_INPUT_BYTES:
            try:
                setattr(request, content_field, data.decode("utf-8-sig"))
            except UnicodeDecodeError:
                raise InputError(f"{filename}: not UTF-8 text", field="input") from None
        else:
            chunks = [opb.UploadInputRequest(data=data[i:i + UPLOAD_CHUNK_BYTES])
                      for i in range(0, len(data), UPLOAD_CHUNK_BYTES)]
            chunks[0].filename = filename
            up = await stub.UploadInput(iter(chunks), timeout=settings.rpc_timeout_seconds)
            request.upload_id = up.upload_id
        request.detach = detach
        run = await stub.StartRun(request, timeout=settings.rpc_timeout_seconds)
        if not quiet:
            note.print(f"run {run.run_id} at the orchestrator {addr}: {run.counts.total} items", markup=False,
                       highlight=False, soft_wrap=True)
        if detach:
            sys.stdout.write(run.run_id + "\n")
            return EXIT_OK
        done = 0
        async for ev in stub.WatchRun(opb.WatchRunRequest(run_id=run.run_id)):
            if ev.type in (opb.RunEvent.ITEM_DONE, opb.RunEvent.ITEM_FAILED):
                done += 1
                if not quiet:
                    state = "done  " if ev.type == opb.RunEvent.ITEM_DONE else "FAILED"
                    note.print(f"[{done}/{run.counts.total}] {state} {ev.item_key}: {ev.message}", markup=False,
                               highlight=False, soft_wrap=True)
        final = await stub.GetRun(opb.GetRunRequest(run_id=run.run_id), timeout=settings.rpc_timeout_seconds)
    except grpc.aio.AioRpcError as e:
        err = from_rpc_error(e)
        if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise CliError(f"orchestrator not reachable at {addr}: {err.message}", EXIT_UNAVAILABLE) from None
        if err.code == grpc.StatusCode.PERMISSION_DENIED:
            raise CliError(err.message) from None
        raise err from None
    finally:
        await channels.close()
    if output == "json":
        print_json(MessageToDict(final, preserving_proto_field_name=True))
    else:
        c = final.counts
        out = make_console()
        out.print(f"run {final.run_id} ({opb.Run.Status.Name(final.status).lower()}): done {c.done} · failed "
                  f"{c.failed} · skipped {c.skipped} · Tavily credits {final.credits:,} · total "
                  f"${final.cost_usd:,.4f}", markup=False, highlight=False, soft_wrap=True)
        if final.error:
            out.print(f"error: {final.error}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_FAILED_ITEMS if final.counts.failed or final.status == opb.Run.FAILED else EXIT_OK


async def remote_research(
    settings: Settings, path: Path, *, model: str | None, name: str | None, output: str, quiet: bool,
    no_cache: bool = False, detach: bool = False,
) -> int:
    """``vantage research FILE --remote``: the CSV checked here (header, size), its content sent to the orchestrator
    service (:func:`remote_run`)."""
    from vantage.orchestrator.v1 import orchestrator_pb2 as opb

    with CsvFile(path, max_name_chars=settings.max_name_chars):  # a bad header: exit 2 before connecting
        pass
    data = read_local_input(path, settings.max_input_bytes)
    req = opb.StartRunRequest(kind=opb.RESEARCH, name=name or path.name, no_cache=no_cache,
                              research_options=opb.ResearchOptions(model=model or ""))
    return await remote_run(settings, req, data, content_field="input_csv", filename=path.name, quiet=quiet,
                            detach=detach, output=output)


async def export(settings: Settings, run_id: str, *, fmt: str, out_path: Path | None) -> int:
    async with session(settings) as s:
        rid = await resolve_run(s.store, run_id)
        summ = await s.orch.summary(rid)
        with _open_out(out_path) as fh:
            if summ.run.kind == "org_eval":  # question runs (+ the visibility report in JSON)
                from services.orchestrator.visibility_report import export_eval

                n = await export_eval(s.store, rid, fmt, fh)
            else:
                items = s.store.iter_items(rid)
                n = await (write_csv(items, fh) if fmt == "csv" else write_json(summ.run, summ.totals, items, fh))
        if out_path is not None:
            make_console(stderr=True).print(f"wrote {n} items to {out_path}", markup=False, highlight=False)
        return EXIT_OK


async def list_runs(settings: Settings, *, limit: int, status_filter: str | None, output: str = "table") -> int:
    async with session(settings) as s:
        runs = await s.store.list_runs(limit=limit, status=status_filter)
        rows = [(r, await s.store.run_totals(r.id)) for r in runs]
        if output == "json":
            print_json([run_record(r, t) for r, t in rows])
            return EXIT_OK
        out = make_console()
        if not rows:
            out.print("no runs yet: vantage research FILE.csv", markup=False, highlight=False)
        else:
            out.print(runs_table(rows))
        return EXIT_OK


async def db_upgrade(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        before, after = await upgrade(engine)
    except (OperationalError, InterfaceError, DBAPIError, OSError) as e:
        raise CliError(
            f"database not reachable at {display_url(settings.database_url)}: {_first_line(e)}", EXIT_UNAVAILABLE
        ) from None
    finally:
        await engine.dispose()
    where = display_url(settings.database_url)
    if before == after:
        print(f"{where}: already at {after} (head)")
    else:
        print(f"{where}: upgraded {before or 'empty'} → {after} (head)")
    return EXIT_OK


async def db_current(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        rev = await current_revision(engine)
    except (OperationalError, InterfaceError, DBAPIError, OSError) as e:
        raise CliError(
            f"database not reachable at {display_url(settings.database_url)}: {_first_line(e)}", EXIT_UNAVAILABLE
        ) from None
    finally:
        await engine.dispose()
    head = head_revision()
    state = "up to date" if rev == head else "run `vantage db upgrade`"
    print(f"{display_url(settings.database_url)}: at {rev or 'empty'}, code needs {head} ({state})")
    return EXIT_OK


async def db_prune_cache(settings: Settings, *, older_than: float | None = None) -> int:
    """``vantage db prune-cache``: the response cache is the inference service's data, so this runs its own
    maintenance command, ``python -m services.inference prune-cache [--older-than S]`` (:mod:`services.inference.admin`:
    expired rows — and with ``older_than`` seconds every row stored at least that long ago — deleted in bounded
    batches, the count printed), on ``settings.database_url``, and returns its exit code (0 done, 2 bad option, 3
    database unreachable)."""
    args = ["prune-cache"] + ([] if older_than is None else ["--older-than", repr(float(older_than))])
    env = {**os.environ, "VANTAGE_DATABASE_URL": settings.database_url}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.inference", *args, env=env)
    return await proc.wait()


# --- shared steps -----------------------------------------------------------------------------------------------


async def _execute(s: Session, run_id: str, *, view: ProgressView | None = None) -> bool:
    """Execute the run in this process. Returns True when it was stopped by a signal (and is resumable)."""
    with stop_on_signals(s.orch, run_id) as sig:
        await s.orch.execute(run_id, listener=view.item if view else None)
    return sig["stopped"]


async def _execute_and_report(s: Session, run_id: str, *, output: str, quiet: bool, started: float) -> int:
    totals = await s.store.run_totals(run_id)
    run = await s.store.get_run(run_id)
    label = "evaluating" if run is not None and run.kind == "org_eval" else "researching"
    with ProgressView(totals.total - totals.counts["skipped"], totals.counts["done"] + totals.counts["failed"],
                      quiet=quiet, label=label) as view:
        stopped = await _execute(s, run_id, view=view)
    if stopped:
        # Interrupted by the user: the run is cancelled (not left "running"), resumable like any cancelled run.
        with contextlib.suppress(FailedPrecondition):
            await s.orch.cancel(run_id)
        summ = await s.orch.summary(run_id)
        make_console(stderr=True).print(
            f"stopped: {summ.totals.unfinished} items left; resume with: vantage resume {run_id}",
            style="yellow", markup=False, highlight=False,
        )
        return EXIT_INTERRUPTED
    return await _report(s, run_id, output=output, started=started)


async def _report(s: Session, run_id: str, *, output: str, started: float | None) -> int:
    """Print the run's results (table + totals, or JSON/CSV) and return the exit code (1 if any item failed)."""
    summ = await s.orch.summary(run_id)
    wall = time.monotonic() - started if started is not None else None
    if summ.run.kind == "org_eval":  # the AI-visibility report (services/orchestrator/visibility_report.py)
        from services.orchestrator.visibility_report import output_report

        await output_report(s.store, run_id, output=output, wall_seconds=wall)
        return EXIT_FAILED_ITEMS if summ.totals.counts["failed"] else EXIT_OK
    if output == "json":
        await write_json(summ.run, summ.totals, s.store.iter_items(run_id), sys.stdout)
    elif output == "csv":
        await write_csv(s.store.iter_items(run_id), sys.stdout)
    else:
        out = make_console()
        page: list = []
        async for it in s.store.iter_items(run_id):
            page.append(it)
            if len(page) >= TABLE_PAGE:
                out.print(results_table(page))
                page = []
        if page or summ.totals.total == 0:
            out.print(results_table(page))
        for line in totals_lines(summ.run, summ.totals, wall):
            out.print(line, markup=False, highlight=False)
        for line in hints(summ.run, summ.totals):
            out.print(line, markup=False, highlight=False, style="dim")
    if output != "table":
        make_console(stderr=True).print(f"run {run_id} ({summ.run.status})", markup=False, highlight=False)
    return EXIT_FAILED_ITEMS if summ.totals.counts["failed"] else EXIT_OK


def print_json(obj: object) -> None:
    import json

    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@contextlib.contextmanager
def _open_out(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        fh = open(path, "w", encoding="utf-8", newline="")
    except OSError as e:
        raise CliError(f"{path}: cannot write: {e.strerror}") from None
    with fh:
        yield fh


def cli_log_level() -> str:
    """The CLI logs warnings and errors only, unless VANTAGE_LOG_LEVEL asks for more (stdout is for results)."""
    return os.environ.get("VANTAGE_LOG_LEVEL", "WARNING")
