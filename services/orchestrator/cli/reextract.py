"""``vantage reextract RUN_ID`` (issue 14 item 1), registered on the typer app by :func:`register`.

Re-runs extraction on the stored answers of an evaluation (after an extractor upgrade) for $0: every question run
that holds an answer is read again through ``ExtractionService/Extract`` and its extraction results (org
evaluation, competitors, citations) are replaced; no provider is asked (an answered question run is never sent to
the inference service) and competitor names found before keep their canonical name. Question runs without an
answer are left as they are (``vantage retry-failed`` asks them again, paid). Prints the report after.

Exit codes as for the other run commands: 0 ok, 1 some question runs failed, 2 usage error (unknown run, not an
evaluation, a run executing now), 3 services or database unreachable, 130 interrupted.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer


async def reextract(settings: object, run_id: str, *, output: str, quiet: bool) -> int:
    """Requeue the answered question runs of the run (:func:`services.orchestrator.app.jobs.evaluation.reextract`),
    execute it here (extraction only) and print the report. Returns the exit code."""
    from services.orchestrator.app.jobs.evaluation import reextract as requeue
    from services.orchestrator.cli.commands import execute_and_report, report_run
    from services.orchestrator.cli.session import resolve_run, session
    from services.orchestrator.reports.tables import make_console

    started = time.monotonic()
    async with session(settings) as s:  # type: ignore[arg-type]
        rid = await resolve_run(s.store, run_id)
        run = await s.store.get_run(rid)
        if run is not None and run.kind != "org_eval":
            from shared.errors import FailedPrecondition

            raise FailedPrecondition(f"run {rid} is a {run.kind} run: reextract reads the answers of an evaluation")
        await s.orch.prepare_resume(rid)  # FailedPrecondition when it is executing here; clears a cancel request
        n = await requeue(s.store, rid)
        note = make_console(stderr=True)
        if n == 0:
            note.print(f"run {rid}: no stored answers to read again", markup=False, highlight=False)
            return await report_run(s, rid, output=output, started=None)
        await s.orch.clients.check()
        if not quiet:
            note.print(f"run {rid}: reading {n} stored answers again (no provider is asked)", markup=False,
                       highlight=False)
        return await execute_and_report(s, rid, output=output, quiet=quiet, started=started)


def register(app: typer.Typer) -> None:
    """Add ``reextract`` to the ``vantage`` typer app."""

    @app.command("reextract")
    def reextract_command(
        run_id: Annotated[str, typer.Argument(help="Evaluation run id (or its first characters).")],
        output: Annotated[str, typer.Option("--output", "-o", help="table | json | csv")] = "table",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ) -> None:
        """Read the stored answers of an evaluation through extraction again (after an extractor upgrade) and
        replace its extraction results, for $0: no provider is asked. Prints the report after.

        Example: vantage reextract 3f2a9c1e
        """
        from services.orchestrator.cli.common import check_output, run_command, setup_cli
        from shared.config import get_settings

        out = check_output(output)
        setup_cli()
        raise typer.Exit(run_command(lambda: reextract(get_settings(), run_id, output=out, quiet=quiet)))
