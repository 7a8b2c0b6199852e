"""The ``vantage`` command line.

Exit codes: 0 ok; 1 the run finished with failed items; 2 usage or input error; 3 infrastructure unavailable.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from services.orchestrator.cli.common import EXIT_UNAVAILABLE, check_output, fail, setup_cli
from services.orchestrator.cli.diff import register as register_diff
from services.orchestrator.cli.doctor import register as register_doctor
from services.orchestrator.cli.enrich import register as register_enrich
from services.orchestrator.cli.evaluate import register as register_evaluate
from services.orchestrator.cli.history import register as register_history
from services.orchestrator.cli.models import register as register_models
from services.orchestrator.cli.reextract import register as register_reextract
from services.orchestrator.cli.schedule import register as register_schedule
from shared.config import get_settings

app = typer.Typer(
    name="vantage",
    help="Territory research and AI-visibility evaluation over gRPC microservices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="search | inference | extraction | orchestrator | sandbox")],
    host: Annotated[str | None, typer.Option(help="Address to bind (default: VANTAGE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port; 0 = any free port (default: the service's setting).")] = None,
    ready_file: Annotated[str | None, typer.Option(help="Write {address, port, pid} here once SERVING.")] = None,
) -> None:
    """Run one service in the foreground until Ctrl-C / SIGTERM.

    Example: vantage serve search --port 50051
    """
    import runpy
    import sys

    from shared.procs import module_for

    try:
        module = module_for(name)
    except ValueError as e:
        raise fail(str(e)) from None
    sys.argv = [module, *(["--host", host] if host else []), *(["--port", str(port)] if port is not None else []),
                *(["--ready-file", ready_file] if ready_file else [])]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


@app.command()
def up(
    sandbox: Annotated[bool, typer.Option(help="Also start the offline provider sandbox and point services at it.")] = True,
    ephemeral: Annotated[bool, typer.Option(help="Use free ports instead of the configured ones.")] = False,
) -> None:
    """Start the sandbox and every service as separate processes, wait until each is SERVING, print the addresses;
    stop them all on Ctrl-C / SIGTERM.

    Example: vantage up --ephemeral
    """
    from services.orchestrator.cli.stack import bring_up, wait_for_signal

    settings = get_settings()
    try:
        stack = bring_up(settings, sandbox=sandbox, ephemeral=ephemeral)
    except (RuntimeError, OSError) as e:
        raise fail(str(e).splitlines()[0], EXIT_UNAVAILABLE) from None
    try:
        for name, child in stack.children.items():
            typer.echo(f"{name:<13} {child.address}  pid {child.proc.pid}")
        typer.echo("\n# point the CLI at this stack:")
        for k, v in stack.env().items():
            typer.echo(f"export {k}={v}")
        typer.echo("\nall SERVING; Ctrl-C to stop", err=True)
        wait_for_signal()
    finally:
        stack.stop(grace=settings.grace_seconds)
        typer.echo("stopped", err=True)


@app.command()
def demo(
    csv: Annotated[Path, typer.Argument(help="Companies CSV.")] = Path("examples/companies.csv"),
) -> None:
    """Start the whole stack against the sandbox, research CSV, print the table and totals, stop the stack.

    Example: vantage demo examples/companies.csv
    """
    from services.orchestrator.cli.stack import run_demo

    if not csv.is_file():
        raise fail(f"{csv}: no such file")
    try:
        code = run_demo(get_settings(), csv, [])
    except (RuntimeError, OSError) as e:
        raise fail(str(e).splitlines()[0], EXIT_UNAVAILABLE) from None
    raise typer.Exit(code)


# --- runs -------------------------------------------------------------------------------------------------------

OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table | json | csv")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


@app.command()
def research(
    csv: Annotated[Path, typer.Argument(help="CSV with a `company` (or `name`) column and optionally `domain`.")],
    model: Annotated[str | None, typer.Option(help="LLM that classifies (default: VANTAGE_RESEARCH_MODEL).")] = None,
    name: Annotated[str | None, typer.Option(help="Label of the run (default: the file name).")] = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass the search and LLM caches (calls are paid).")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Queue the run for `vantage worker` processes, print its "
                                                          "id and exit.")] = False,
    remote: Annotated[bool, typer.Option("--remote", help="Send the CSV's content to the orchestrator service "
                                                          "(VANTAGE_ORCHESTRATOR_ADDR), which stores and executes "
                                                          "the run; this process opens no database.")] = False,
) -> None:
    """Research every company of CSV: search → classify → validate, streamed, persisted as each result lands.

    Prints a table (company, tier, score, category, results kept/returned, tokens, cost, status) and totals.
    Interrupt it at any time and continue with `vantage resume RUN_ID`. Exit 1 when an item failed. With --detach
    the run is queued for workers instead (`vantage worker`) and its id printed.

    With --remote the file's content goes to the orchestrator service (inline, or through UploadInput when large);
    it prints the progress and the totals (or, with --detach, the run id).

    Example: vantage research examples/companies.csv --model gpt-4.1-mini
    """
    from services.orchestrator.cli.commands import remote_research
    from services.orchestrator.cli.commands import research as impl
    from services.orchestrator.cli.common import run_command

    out = check_output(output, ("table", "json") if remote else ("table", "json", "csv"))
    setup_cli()
    path = csv.expanduser()
    if path.exists():
        path = path.resolve()
    if remote:
        raise typer.Exit(run_command(
            lambda: remote_research(get_settings(), path, model=model, name=name, output=out, quiet=quiet,
                                    no_cache=no_cache, detach=detach)
        ))
    raise typer.Exit(run_command(
        lambda: impl(get_settings(), path, model=model, name=name, output=out, quiet=quiet, no_cache=no_cache,
                     detach=detach)
    ))


@app.command()
def lookup(
    company: Annotated[str, typer.Argument(help="Company name.")],
    domain: Annotated[str, typer.Option(help="Its web domain, e.g. anthropic.com (sharpens the search).")] = "",
    model: Annotated[str | None, typer.Option(help="LLM that classifies (default: VANTAGE_RESEARCH_MODEL).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="card | json")] = "card",
) -> None:
    """Research one company and print its card (tier, score, category, rationale, evidence, cost).

    Example: vantage lookup "Mistral AI" --domain mistral.ai
    """
    from services.orchestrator.cli.commands import lookup as impl
    from services.orchestrator.cli.common import run_command

    out = check_output(output, ("card", "json"))
    if not company.strip():
        raise fail("give a company name")
    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), company, domain=domain, model=model, output=out)))


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(help="Run id (or its first characters).")],
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
) -> None:
    """Show a run: status, counts by state, cost so far, failed items with their reasons.

    Example: vantage status 3f2a9c1e --output json
    """
    from services.orchestrator.cli.commands import status as impl
    from services.orchestrator.cli.common import run_command

    out = check_output(output, ("table", "json"))
    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), run_id, output=out)))


DetachOpt = Annotated[bool, typer.Option("--detach", help="Queue the run for `vantage worker` processes instead.")]


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run id (or its first characters).")],
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Also take over items a live process holds (their "
                                                        "results are then discarded).")] = False,
    detach: DetachOpt = False,
) -> None:
    """Continue a run that was interrupted or cancelled: only its unfinished items (pending, or left running by a
    process that died) are processed; finished results are never redone or paid again. Items a live worker holds
    stay its own (waited for; taken over only when their lease expires, or at once with --force).

    Example: vantage resume 3f2a9c1e
    """
    from services.orchestrator.cli.commands import resume as impl
    from services.orchestrator.cli.common import run_command

    out = check_output(output)
    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), run_id, output=out, quiet=quiet, force=force,
                                              detach=detach)))


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="Run id (or its first characters).")]) -> None:
    """Cancel a run wherever it executes (this machine, the orchestrator service, any worker): it stops claiming,
    its in-flight calls and Bright Data snapshots are cancelled, its items go back to pending. Resumable.

    Example: vantage cancel 3f2a9c1e
    """
    from services.orchestrator.cli.commands import cancel as impl
    from services.orchestrator.cli.common import run_command

    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), run_id)))


@app.command("retry-failed")
def retry_failed(
    run_id: Annotated[str, typer.Argument(help="Run id (or its first characters).")],
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
    detach: DetachOpt = False,
) -> None:
    """Process the failed items of a run again (e.g. after a provider outage).

    Example: vantage retry-failed 3f2a9c1e
    """
    from services.orchestrator.cli.commands import resume as impl
    from services.orchestrator.cli.common import run_command

    out = check_output(output)
    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), run_id, output=out, quiet=quiet, failed_only=True,
                                              detach=detach)))


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Exit when nothing is left to do (instead of waiting for "
                                                      "more runs).")] = False,
    run: Annotated[str | None, typer.Option("--run", help="Only this run (id or its first characters), even one "
                                                          "another live process executes.")] = None,
    max_runs: Annotated[int | None, typer.Option(help="Runs executed at once (default VANTAGE_WORKER_MAX_RUNS).")
                        ] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="Items in flight per run (default VANTAGE_MAX_ITEMS_IN_FLIGHT, else the sum of the service budgets "
             "VANTAGE_SEARCH/INFERENCE/EXTRACTION_CONCURRENCY, which the worker's runs share).")] = None,
) -> None:
    """Execute queued (--detach) and abandoned runs from the database until SIGTERM / Ctrl-C.

    Start any number, on any number of machines sharing one PostgreSQL (one on SQLite): items are claimed with
    leases (SELECT … FOR UPDATE SKIP LOCKED), a crashed worker's items are taken over when their lease expires.
    SIGTERM: stop claiming, finish or release the in-flight items, exit 0.

    Example: DATABASE_URL=postgresql://vantage@db/vantage vantage worker
    """
    import os

    from services.orchestrator.cli.commands import run_worker
    from services.orchestrator.cli.common import run_command
    from shared.logging import configure_logging

    if max_runs is not None and max_runs < 1:
        raise fail("--max-runs must be ≥ 1")
    if concurrency is not None and concurrency < 1:
        raise fail("--concurrency must be ≥ 1")
    settings = get_settings()
    # A worker is a service: INFO logs (JSON lines on stderr) unless VANTAGE_LOG_LEVEL says otherwise.
    configure_logging("worker", os.environ.get("VANTAGE_LOG_LEVEL", "INFO"), settings.log_format)
    if concurrency is not None:
        settings = settings.model_copy(update={"max_items_in_flight": concurrency})
    raise typer.Exit(run_command(lambda: run_worker(settings, once=once, run_id=run, max_runs=max_runs)))


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="Run id (or its first characters).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv | json")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Write a run's items and results (tier, score, category, rationale, evidence, credits, tokens, USD, errors).

    Example: vantage export 3f2a9c1e --format csv --out results.csv
    """
    from services.orchestrator.cli.commands import export as impl
    from services.orchestrator.cli.common import run_command

    fmt = check_output(fmt, ("csv", "json"))
    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), run_id, fmt=fmt, out_path=out)))


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs in this state: pending, running, completed, "
                                                    "cancelled, failed.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
) -> None:
    """List recent runs with their progress and cost.

    Example: vantage runs --status completed --output json
    """
    from services.orchestrator.cli.commands import list_runs
    from services.orchestrator.cli.common import run_command

    out = check_output(output, ("table", "json"))
    if status is not None and status.lower() not in ("pending", "running", "completed", "cancelled", "failed"):
        raise fail(f"unknown status {status!r}")
    setup_cli()
    raise typer.Exit(run_command(lambda: list_runs(get_settings(), limit=max(1, limit),
                                                   status_filter=status.lower() if status else None, output=out)))


db_app = typer.Typer(help="Database schema (Alembic migrations) and upkeep (response cache).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database (VANTAGE_DATABASE_URL / DATABASE_URL) to the schema this code needs.

    Example: DATABASE_URL=postgresql://vantage@db/vantage vantage db upgrade
    """
    from services.orchestrator.cli.commands import db_upgrade as impl
    from services.orchestrator.cli.common import run_command

    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings())))


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and the one this code needs.

    Example: vantage db current
    """
    from services.orchestrator.cli.commands import db_current as impl
    from services.orchestrator.cli.common import run_command

    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings())))


@db_app.command("prune-cache")
def db_prune_cache(
    older_than: Annotated[float | None, typer.Option(
        "--older-than", metavar="SECONDS",
        help="Also remove rows stored at least this many seconds ago, expired or not (≥ 0).")] = None,
) -> None:
    """Remove the expired rows of the inference response cache (table response_cache) and print how many.

    Rows expire after VANTAGE_RESPONSE_CACHE_TTL_SECONDS (0 = never); the inference service also purges them in the
    background. Exit 0 done, 2 bad option, 3 database unreachable.

    Example: vantage db prune-cache --older-than 604800
    """
    from services.orchestrator.cli.commands import db_prune_cache as impl
    from services.orchestrator.cli.common import run_command

    if older_than is not None and not older_than >= 0:  # also refuses nan
        raise fail(f"--older-than must be a number of seconds ≥ 0, not {older_than:g}")
    setup_cli()
    raise typer.Exit(run_command(lambda: impl(get_settings(), older_than=older_than)))


# Commands declared in their own modules (each registers itself on the app), then the plug-ins other packages
# declare under the "vantage.cli" entry-point group (pyproject.toml: `vantage loadtest`).
for _register in (register_doctor, register_enrich, register_evaluate, register_models, register_diff,
                  register_reextract, register_schedule, register_history):
    _register(app)
for _plugin in entry_points(group="vantage.cli"):
    _plugin.load()(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
