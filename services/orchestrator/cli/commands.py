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
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.orchestrator.app.inputs import CsvFile, InputError, at_most, rows_from_pairs
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.worker import Worker
from services.orchestrator.cli.common import (
    EXIT_FAILED_ITEMS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    first_line,
    open_out,
    print_json,
)
from services.orchestrator.cli.session import (
    ProgressView,
    Session,
    on_signals,
    resolve_run,
    session,
    stop_on_signals,
)
from services.orchestrator.domain import InputRow
from services.orchestrator.reports.tables import (
    company_card,
    hints,
    item_record,
    make_console,
    results_table,
    run_panel,
    run_record,
    runs_table,
    totals_lines,
    write_csv,
    write_json,
)
from services.orchestrator.store.db import (
    create_engine,
    current_revision,
    display_url,
    head_revision,
    upgrade,
)
from shared.config import Settings
from shared.errors import FailedPrecondition

# --- commands ---------------------------------------------------------------------------------------------------
from shared.grpc_client import Channels

#: Rows per printed table (a long run prints several tables rather than building one huge one in memory).
log = structlog.get_logger("vantage.worker")
TABLE_PAGE = 500



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
            # Ctrl-C while the file is stored: the next row read raises KeyboardInterrupt, so the load stops and
            # atomic_input deletes the partial run — whatever await the signal lands in (exit 130, no run left).
            with on_signals(lambda: None) as sig:
                run, report = await create_research_run(s.orch,
                    _until_signalled(at_most(src.rows(), settings.max_run_items, field=str(path)), sig),
                    name=name or path.name, options=opts, input_path=input_path,
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
            return await execute_and_report(s, run.id, output=output, quiet=quiet, started=started)


def _until_signalled(rows: Iterable[InputRow], state: dict[str, bool]) -> Iterator[InputRow]:
    """``rows``, until :func:`~services.orchestrator.cli.session.on_signals` saw a signal: then KeyboardInterrupt."""
    for row in rows:
        if state["stopped"]:
            raise KeyboardInterrupt
        yield row


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
        run, _ = await create_research_run(s.orch,
            rows_from_pairs([(company, domain)]), name=f"lookup: {company}", options=opts
        )
        await execute_run(s, run.id)
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
            return await report_run(s, rid, output=output, started=None)
        await s.orch.clients.check()
        if not quiet:
            make_console(stderr=True).print(
                f"run {rid}: {todo} items to do", markup=False, highlight=False
            )
        return await execute_and_report(s, rid, output=output, quiet=quiet, started=started)


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
        with open_out(out_path) as fh:
            if summ.run.kind == "org_eval":  # question runs (+ the visibility report in JSON)
                from services.orchestrator.reports.visibility import export_eval

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
            f"database not reachable at {display_url(settings.database_url)}: {first_line(e)}", EXIT_UNAVAILABLE
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
            f"database not reachable at {display_url(settings.database_url)}: {first_line(e)}", EXIT_UNAVAILABLE
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


async def execute_run(s: Session, run_id: str, *, view: ProgressView | None = None) -> bool:
    """Execute the run in this process. Returns True when it was stopped by a signal (and is resumable)."""
    with stop_on_signals(s.orch, run_id) as sig:
        await s.orch.execute(run_id, listener=view.item if view else None)
    return sig["stopped"]


async def execute_and_report(s: Session, run_id: str, *, output: str, quiet: bool, started: float,
                             seed: int = 0) -> int:
    totals = await s.store.run_totals(run_id)
    run = await s.store.get_run(run_id)
    label = "evaluating" if run is not None and run.kind == "org_eval" else "researching"
    with ProgressView(totals.total - totals.counts["skipped"], totals.counts["done"] + totals.counts["failed"],
                      quiet=quiet, label=label) as view:
        stopped = await execute_run(s, run_id, view=view)
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
    return await report_run(s, run_id, output=output, started=started, seed=seed)


async def report_run(s: Session, run_id: str, *, output: str, started: float | None, seed: int = 0) -> int:
    """Print the run's results (table + totals, or JSON/CSV) and return the exit code (1 if any item failed).
    ``seed``: of the bootstrap intervals of an ORG_EVAL run's report."""
    summ = await s.orch.summary(run_id)
    wall = time.monotonic() - started if started is not None else None
    if summ.run.kind == "org_eval":  # the AI-visibility report (services/orchestrator/reports/visibility.py)
        from services.orchestrator.reports.visibility import output_report

        await output_report(s.store, run_id, output=output, wall_seconds=wall, seed=seed)
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


async def run_worker(
    settings: Settings, *, once: bool = False, run_id: str | None = None, max_runs: int | None = None,
) -> int:
    """``vantage worker``: open the database (schema checked, one-line refusal when out of date), the channels, and
    run a :class:`Worker` until SIGTERM/SIGINT (or, with ``once``, until nothing is left to do)."""
    async with session(settings) as s:
        if run_id is not None:
            run_id = await resolve_run(s.store, run_id)
        if once:
            await s.orch.clients.check()
        worker = Worker(s.store, s.orch.clients, settings, once=once, run_id=run_id, max_runs=max_runs)

        def drain() -> None:
            log.info("worker_signal", action="drain", grace_seconds=settings.grace_seconds)
            worker.request_stop()

        with on_signals(drain):
            return await worker.run()
