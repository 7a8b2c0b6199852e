"""The AI-visibility commands of the ``vantage`` CLI: ``evaluate``, ``report`` and ``demo-eval`` (registered on the
typer app by :func:`register`).

``vantage evaluate`` is an orchestrator in its own process, like ``vantage research``: it stores the run (org,
questions, the question × model × location matrix), executes it against the services at ``settings.addr(...)``,
shows progress, and prints the visibility report (:mod:`services.orchestrator.reports.visibility`). Interrupt it at
any time (Ctrl-C cancels the run and its in-flight snapshots; a killed process leaves them running) and continue
with ``vantage resume RUN_ID``: answers already stored are not asked again, stored snapshots are re-polled.

Exit codes as for the other run commands: 0 ok, 1 some question runs failed, 2 usage or input error, 3 services or
database unreachable, 130 interrupted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:
    from shared.config import Settings

DEFAULT_MODELS = "chatgpt,perplexity,gpt-5.5,claude-sonnet-5"
#: ``--samples`` when not given (services.orchestrator.app.jobs.evaluation.DEFAULT_SAMPLES; kept literal here so
#: that ``vantage --help`` does not import the job).
DEFAULT_SAMPLES = 3


def _distinct(questions: list[str]) -> int:
    """Questions the run will store (repeats, case-insensitive, are skipped by the matrix)."""
    return len({" ".join(q.split()).casefold() for q in questions})


async def confirm_size(estimate: object, *, yes: bool, quiet: bool, bound: str = "") -> None:
    """Before a run of more than CONFIRM_ABOVE_QUESTION_RUNS question runs: print its matrix and estimated cost
    and ask (stdin); ``yes`` skips the question; ``quiet`` without ``yes`` refuses (exit 2, one line), and so does
    an answer other than yes."""
    import asyncio

    from services.orchestrator.app.jobs.evaluation import CONFIRM_ABOVE_QUESTION_RUNS, SweepEstimate
    from services.orchestrator.cli.common import CliError

    est = cast("SweepEstimate", estimate)
    if yes or est.question_runs <= CONFIRM_ABOVE_QUESTION_RUNS:
        return
    what = est.describe() + bound
    if quiet:
        raise CliError(f"{what}: more than {CONFIRM_ABOVE_QUESTION_RUNS} question runs; pass --yes to start it "
                       "without asking")
    typer.echo(what, err=True)
    try:
        ok = await asyncio.to_thread(typer.confirm, "Start this run?", default=False, err=True)
    except typer.Abort:  # end of input
        ok = False
    if not ok:
        raise CliError("not started (pass --yes to start a large run without asking)")


async def evaluate(
    settings: object, *, org: str, domain: str, questions_path: Path, models: str, locations: str,
    competitors: str, variations: str, name: str | None, no_cache: bool, output: str, quiet: bool,
    detach: bool = False, html_out: Path | None = None, seed: int = 0, samples: int = DEFAULT_SAMPLES,
    yes: bool = False, reuse_answers: str = "",
) -> int:
    """Create the ORG_EVAL run (a sweep: each question × model × location asked ``samples`` times; with
    ``reuse_answers`` the answers of that earlier sweep are copied in and only read again), execute it here, print
    the report (``detach``: queue it for ``vantage worker`` processes and print its id instead). A run of more than
    500 question runs shows its matrix and estimated cost and asks first (``yes`` skips; ``quiet`` without it
    refuses). Returns the exit code."""
    from services.orchestrator.app.jobs.evaluation import (
        check_limits,
        check_models,
        create_eval_run,
        estimate_sweep,
        read_questions,
        resolve_reuse_run,
        split_list,
        validate_matrix,
    )
    from services.orchestrator.cli.commands import detach_run, execute_and_report
    from services.orchestrator.cli.session import session
    from services.orchestrator.reports.tables import make_console

    started = time.monotonic()
    cfg = cast("Settings", settings)
    # Missing / empty / oversized file, a bound broken, an org or location that is not valid (ISO 3166-1) → exit 2
    # before anything is connected or stored.
    questions = read_questions(questions_path, max_bytes=cfg.max_input_bytes)
    check_limits(cfg, questions=questions, models=split_list(models), locations=split_list(locations),
                 known_competitors=split_list(competitors), name_variations=split_list(variations), samples=samples)
    validate_matrix(org, domain, split_list(models), split_list(locations), max_name_chars=cfg.max_name_chars)
    async with session(settings) as s:  # type: ignore[arg-type]
        if reuse_answers:  # an unknown run / not an evaluation: exit 2 before anything is connected or stored
            reuse_answers = await resolve_reuse_run(s.store, reuse_answers, field="--reuse-answers")
        await s.orch.clients.check()
        await check_models(s.orch, split_list(models), field="models")  # an unknown model: exit 2, no run
        await confirm_size(await estimate_sweep(s.orch, questions=_distinct(questions), models=split_list(models),
                                                locations=split_list(locations), samples=samples),
                           yes=yes, quiet=quiet)
        run, matrix = await create_eval_run(
            s.orch, org_name=org, org_domain=domain, questions=questions, models=split_list(models),
            locations=split_list(locations), known_competitors=split_list(competitors),
            name_variations=split_list(variations), name=name or "", no_cache=no_cache,
            input_path=str(questions_path), samples=samples, reuse_answers=reuse_answers,
        )
        if not quiet:
            note = make_console(stderr=True)
            opts = run.options
            locs = ",".join(loc or "-" for loc in opts["locations"])
            note.print(
                f"run {run.id}: {opts['org_name']} · {matrix.questions} questions × {len(opts['models'])} models "
                f"({','.join(opts['models'])}) × {len(opts['locations'])} locations ({locs}) × {matrix.samples} "
                f"samples = {matrix.items} question runs"
                + (f"; answers reused from {opts['reuse_answers']}" if opts.get("reuse_answers") else ""),
                markup=False, highlight=False, soft_wrap=True,
            )
            for msg in matrix.skipped_questions:
                note.print(f"  skipped {msg}", markup=False, highlight=False, soft_wrap=True, style="dim")
        if detach:
            return await detach_run(s, run.id, quiet=quiet)
        code = await execute_and_report(s, run.id, output=output, quiet=quiet, started=started, seed=seed)
        if html_out is not None:
            await _write_html(s.store, run.id, html_out)
        return code


async def remote_evaluate(
    settings: object, *, org: str, domain: str, questions_path: Path, models: str, locations: str, competitors: str,
    variations: str, name: str | None, no_cache: bool, output: str, quiet: bool, detach: bool = False,
    samples: int = DEFAULT_SAMPLES, yes: bool = False, reuse_answers: str = "",
) -> int:
    """``vantage evaluate --remote``: the questions file and the matrix checked here (exit 2 before connecting),
    the file's content sent to the orchestrator service with the org and matrix in ``org_eval_options``, the
    samples and ``reuse_answers`` in StartRun (:func:`services.orchestrator.cli.commands.remote_run`). The size
    confirmation prices every model as an API model (this process routes nothing): an upper bound."""
    from services.orchestrator.app.jobs.evaluation import (
        SweepEstimate,
        answer_usd_estimate,
        check_limits,
        read_questions,
        split_list,
        validate_matrix,
    )
    from services.orchestrator.cli.commands import read_local_input, remote_run
    from vantage.orchestrator.v1 import orchestrator_pb2 as opb

    cfg = cast("Settings", settings)
    questions = read_questions(questions_path, max_bytes=cfg.max_input_bytes)
    check_limits(cfg, questions=questions, models=split_list(models), locations=split_list(locations),
                 known_competitors=split_list(competitors), name_variations=split_list(variations), samples=samples)
    validate_matrix(org, domain, split_list(models), split_list(locations), max_name_chars=cfg.max_name_chars)
    locs = split_list(locations) or [""]
    per_cell = _distinct(questions) * len(locs) * samples
    await confirm_size(SweepEstimate(_distinct(questions), len(split_list(models)), len(locs), samples,
                                     sum(answer_usd_estimate(cfg, mo, False) * per_cell for mo in split_list(models))),
                       yes=yes, quiet=quiet, bound=" (at most: every model priced as an API model)")
    req = opb.StartRunRequest(
        kind=opb.ORG_EVAL, name=name or "", no_cache=no_cache, samples=samples, reuse_answers=reuse_answers,
        org_eval_options=opb.OrgEvalInput(
            org_name=org, org_domain=domain, models=split_list(models), locations=split_list(locations),
            known_competitors=split_list(competitors), name_variations=split_list(variations),
        ),
    )
    data = read_local_input(questions_path, cfg.max_input_bytes)
    return await remote_run(cfg, req, data, content_field="questions_text", filename=questions_path.name,
                            quiet=quiet, detach=detach, output=output)


async def report(settings: object, run_id: str, *, output: str, html_out: Path | None = None,
                 seed: int = 0) -> int:
    """Print a run's report (the AI-visibility report of an ORG_EVAL run; the results table of a research run), or
    with ``html_out`` write it as one self-contained HTML file (:mod:`services.orchestrator.reports.html`)."""
    from services.orchestrator.cli.commands import report_run
    from services.orchestrator.cli.session import resolve_run, session

    async with session(settings) as s:  # type: ignore[arg-type]
        rid = await resolve_run(s.store, run_id)
        if html_out is not None:
            return await _write_html(s.store, rid, html_out)
        return await report_run(s, rid, output=output, started=None, seed=seed)


async def _write_html(store: object, run_id: str, path: Path) -> int:
    from services.orchestrator.reports.html import write_html
    from services.orchestrator.reports.tables import make_console

    size = await write_html(store, run_id, path)
    make_console(stderr=True).print(f"HTML report: {path} ({size / 1e6:.2f} MB)", markup=False, highlight=False)
    return 0


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``report`` and ``demo-eval`` to the ``vantage`` typer app."""

    @app.command("evaluate")
    def evaluate_command(
        org: Annotated[str, typer.Option("--org", help="The organisation to evaluate, e.g. \"Together AI\".")],
        questions: Annotated[Path, typer.Option("--questions", help="Questions file: one buyer-style question per "
                                                "line (# starts a comment).")],
        domain: Annotated[str, typer.Option("--domain", help="Its web domain, e.g. together.ai (owned citations, "
                                            "name variations).")] = "",
        models: Annotated[str, typer.Option("--models", help="Comma-separated models: chatgpt and perplexity are "
                                            "scraped through Bright Data; gpt-*, claude-*, sonar* through their "
                                            "APIs with web search.")] = DEFAULT_MODELS,
        locations: Annotated[str, typer.Option("--locations", help="Comma-separated ISO country codes, e.g. "
                                               "US,GB.")] = "US",
        competitors: Annotated[str, typer.Option("--competitors", help="Comma-separated known competitors (found "
                                                 "anywhere in an answer, and their citations flagged).")] = "",
        variations: Annotated[str, typer.Option("--variations", help="Comma-separated extra spellings of the "
                                                "org's name.")] = "",
        name: Annotated[str | None, typer.Option(help="Label of the run.")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Ask the API models again even for questions "
                                               "answered before (calls are paid).")] = False,
        output: Annotated[str, typer.Option("--output", "-o", help="table | json | csv")] = "table",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
        detach: Annotated[bool, typer.Option("--detach", help="Queue the run for `vantage worker` processes, print "
                                             "its id and exit.")] = False,
        remote: Annotated[bool, typer.Option("--remote", help="Send the questions to the orchestrator service "
                                             "(VANTAGE_ORCHESTRATOR_ADDR), which stores and executes the run; this "
                                             "process opens no database.")] = False,
        html: Annotated[Path | None, typer.Option("--html", help="Also write the report as one self-contained "
                                                  "HTML file here at the end of the run.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the report's bootstrap intervals "
                                          "(0..4294967295); same seed, same intervals.")] = 0,
        samples: Annotated[int, typer.Option("--samples", help="Times each question × model × location is asked "
                                             "(1-20; each sample is its own question run, a new answer).")
                           ] = DEFAULT_SAMPLES,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Start a run of more than 500 question runs without "
                                          "asking.")] = False,
        reuse_answers: Annotated[str, typer.Option("--reuse-answers", metavar="RUN_ID", help="Copy the answers of "
                                                   "that earlier sweep and read them again (no provider is asked "
                                                   "for them).")] = "",
    ) -> None:
        """Ask every question × model × location --samples times (a sweep: a point-in-time measurement; answers
        are reused within it, never across sweeps unless --reuse-answers), read each answer for the org, its
        competitors and its citations, and print the visibility report (visibility rate, average rank, share of
        voice, sentiment, top competitors,
        top cited domains, owned-citation share, snapshots, failures, cost).

        Example: vantage evaluate --org "Together AI" --domain together.ai --questions examples/questions.txt
        --models chatgpt,perplexity,gpt-5.5,claude-sonnet-5 --locations US,GB
        """
        from services.orchestrator.cli.common import check_output, fail, run_command, setup_cli
        from shared.config import get_settings

        out = check_output(output, ("table", "json") if remote else ("table", "json", "csv"))
        if not 0 <= seed <= 2**32 - 1:  # before any question is asked (the report would refuse it at the end)
            raise fail(f"--seed must be in 0..4294967295, got {seed}")
        if not org.strip():
            raise fail("give the org's name: --org \"Together AI\"")
        if not 1 <= samples <= 20:
            raise fail(f"--samples must be 1-20, got {samples}")
        setup_cli()
        path = questions.expanduser()
        if path.exists():
            path = path.resolve()
        if html is not None and (remote or detach):
            raise fail("--html needs a run executed here (not --remote / --detach): use vantage report RUN_ID "
                       "--format html --out FILE")
        if remote:
            raise typer.Exit(run_command(lambda: remote_evaluate(
                get_settings(), org=org, domain=domain, questions_path=path, models=models, locations=locations,
                competitors=competitors, variations=variations, name=name, no_cache=no_cache, output=out,
                quiet=quiet, detach=detach, samples=samples, yes=yes, reuse_answers=reuse_answers,
            )))
        raise typer.Exit(run_command(lambda: evaluate(
            get_settings(), org=org, domain=domain, questions_path=path, models=models, locations=locations,
            competitors=competitors, variations=variations, name=name, no_cache=no_cache, output=out, quiet=quiet,
            detach=detach, html_out=html, seed=seed, samples=samples, yes=yes, reuse_answers=reuse_answers,
        )))

    @app.command("report")
    def report_command(
        run_id: Annotated[str, typer.Argument(help="Run id (or its first characters).")],
        output: Annotated[str, typer.Option("--output", "-o", help="table | json | csv")] = "table",
        fmt: Annotated[str, typer.Option("--format", "-f", help="table (the terminal, --output applies) | html "
                                         "(one self-contained file, needs --out)")] = "table",
        out_path: Annotated[Path | None, typer.Option("--out", help="File of --format html.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap intervals (0..4294967295); same "
                                          "seed, same intervals.")] = 0,
    ) -> None:
        """Print a run's report: for an evaluation, per model × location and overall — visibility rate, average
        rank when named, share of voice, sentiment, top competitors, top cited domains, owned-citation share — the
        summary line, the snapshots triggered and the failures by reason; for a research run, its results table.

        Example: vantage report 3f2a9c1e  (or: vantage report 3f2a9c1e --format html --out report.html)
        """
        from services.orchestrator.cli.common import check_output, fail, run_command, setup_cli
        from shared.config import get_settings

        out = check_output(output)
        if fmt not in ("table", "html"):
            raise fail(f"--format must be table or html, got {fmt!r}")
        if fmt == "html" and out_path is None:
            raise fail("--format html needs --out FILE, e.g. --out report.html")
        setup_cli()
        html_out = out_path if fmt == "html" else None
        raise typer.Exit(run_command(lambda: report(get_settings(), run_id, output=out, html_out=html_out,
                                                    seed=seed)))

    @app.command("demo-eval")
    def demo_eval_command(
        questions: Annotated[Path, typer.Argument(help="Questions file.")] = Path("examples/questions.txt"),
    ) -> None:
        """Start the whole stack against the sandbox, evaluate Together AI on the questions with chatgpt,
        perplexity, gpt-5.5 and claude-sonnet-5 in US and GB, 3 samples each (20 questions = 480 question runs), print
        the report, stop the stack.

        Example: vantage demo-eval
        """
        from services.orchestrator.cli.common import EXIT_UNAVAILABLE, fail
        from services.orchestrator.cli.stack import run_demo_eval
        from shared.config import get_settings

        if not questions.is_file():
            raise fail(f"{questions}: no such file")
        try:
            code = run_demo_eval(get_settings(), questions)
        except (RuntimeError, OSError) as e:
            raise fail(str(e).splitlines()[0], EXIT_UNAVAILABLE) from None
        raise typer.Exit(code)
