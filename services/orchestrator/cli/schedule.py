"""``vantage schedule add | list | pause | resume | remove`` (issue 14 item 5), registered by :func:`register`.

A schedule is stored in the database with the questions' text (not the file's path), so that any ``vantage worker``
— on any machine — starts its sweeps (:mod:`services.orchestrator.app.schedules`: each due period exactly once,
only the latest one after an outage). Nothing here needs the services: only the database.

Exit codes: 0 ok, 2 usage or input error (a bad duration, file, org, model list, location or limit; an unknown
schedule id) with a one-line message, 3 database unreachable.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from services.orchestrator.cli.evaluate import DEFAULT_MODELS

if TYPE_CHECKING:
    from services.orchestrator.store.schedule_repo import ScheduleRow, ScheduleStore
    from shared.config import Settings

schedule_app = typer.Typer(help="Scheduled sweeps: an evaluation started every period by `vantage worker`.",
                           no_args_is_help=True)


def schedule_fields(row: ScheduleRow, now: datetime | None = None) -> dict[str, Any]:
    """The ``--output json`` record of a schedule. Times are ISO 8601 UTC; ``every_seconds`` in seconds;
    ``next_due_at``: when the next sweep is due — the current period's start when nobody has started it yet —
    (None while paused)."""
    from services.orchestrator.app.schedules import due_period, format_every, next_due, period_start
    from services.orchestrator.store.repo import utcnow

    now = now or utcnow()
    p = due_period(now, row.anchor_at, row.every_seconds)
    if p is not None and (row.last_period is None or row.last_period < p):
        due = period_start(row.anchor_at, row.every_seconds, p)
    else:
        due = next_due(now, row.anchor_at, row.every_seconds)
    nd = None if row.paused else due.isoformat()
    return {
        "id": row.id, "name": row.name, "org": row.org_name, "domain": row.org_domain,
        "questions": len(row.questions), "models": row.models, "locations": [loc for loc in row.locations if loc],
        "samples": row.samples, "every": format_every(row.every_seconds), "every_seconds": row.every_seconds,
        "anchor_at": row.anchor_at.isoformat(), "status": "paused" if row.paused else "active",
        "sweeps": row.sweeps, "last_period": row.last_period, "last_run_id": row.last_run_id,
        "last_started_at": row.last_started_at.isoformat() if row.last_started_at else None,
        "next_due_at": nd, "last_error": row.last_error, "created_at": row.created_at.isoformat(),
    }


async def add(settings: object, *, org: str, domain: str, questions_path: Path, models: str, locations: str,
              every: str, samples: int | None, name: str | None, output: str) -> int:
    """Validate everything (exit 2 on the first bad field), store the schedule, print its id (or its record)."""
    from services.orchestrator.app.jobs.evaluation import (
        DEFAULT_SAMPLES,
        MAX_SAMPLES,
        check_limits,
        read_questions,
        split_list,
        validate_matrix,
    )
    from services.orchestrator.app.schedules import format_every, parse_every
    from services.orchestrator.cli.common import print_json
    from services.orchestrator.store import open_store
    from services.orchestrator.store.schedule_repo import ScheduleStore
    from shared.errors import InvalidArgument

    cfg = cast("Settings", settings)
    seconds = parse_every(every, field="--every")
    if samples is not None and not 1 <= samples <= MAX_SAMPLES:
        raise InvalidArgument(f"--samples must be between 1 and {MAX_SAMPLES}, got {samples}", field="samples")
    questions = read_questions(questions_path, max_bytes=cfg.max_input_bytes)
    check_limits(cfg, questions=questions, models=split_list(models), locations=split_list(locations),
                 samples=DEFAULT_SAMPLES if samples is None else samples)
    org_name, org_domain, models_l, locs = validate_matrix(org, domain, split_list(models), split_list(locations),
                                                           max_name_chars=cfg.max_name_chars)
    store = await open_store(cfg.database_url)
    try:
        row = await ScheduleStore(store).add(
            name=" ".join((name or "").split()), org_name=org_name, org_domain=org_domain, questions=questions,
            models=models_l, locations=locs, samples=samples, every_seconds=seconds)
    finally:
        await store.close()
    if output == "json":
        print_json(schedule_fields(row))
    else:
        typer.echo(f"schedule {row.id}: {org_name} · {len(questions)} questions × {len(models_l)} models × "
                   f"{len(locs)} locations every {format_every(seconds)}; the first sweep starts when a "
                   "`vantage worker` runs")
    return 0


async def _resolve(sched: ScheduleStore, schedule_id: str) -> str:
    from services.orchestrator.cli.common import CliError

    ids = await sched.find_ids(schedule_id)
    if not ids:
        raise CliError(f"schedule {schedule_id!r} not found (see `vantage schedule list`)")
    if len(ids) > 1:
        raise CliError(f"schedule id prefix {schedule_id!r} is ambiguous; give more characters")
    return ids[0]


async def list_schedules(settings: object, *, output: str) -> int:
    from rich.table import Table
    from rich.text import Text

    from services.orchestrator.cli.common import print_json
    from services.orchestrator.reports.tables import make_console
    from services.orchestrator.store import open_store
    from services.orchestrator.store.schedule_repo import ScheduleStore

    store = await open_store(cast("Settings", settings).database_url)
    try:
        rows = await ScheduleStore(store).list_schedules()
    finally:
        await store.close()
    records = [schedule_fields(r) for r in rows]
    if output == "json":
        print_json(records)
        return 0
    t = Table(title=f"{len(rows)} schedule(s)")
    for col in ("id", "name", "org", "every", "matrix", "status", "sweeps", "last sweep", "next due", "error"):
        t.add_column(col)
    for r, f in zip(rows, records, strict=True):
        matrix = f"{f['questions']} q × {len(r.models)} m × {len(r.locations)} loc" + (
            f" × {r.samples}" if r.samples else "")
        last = "—" if r.last_period is None else f"#{r.last_period} {(r.last_run_id or 'deleted')[:8]}"
        t.add_row(Text(r.id[:8]), Text(r.name), Text(r.org_name), f["every"], matrix,
                  Text(f["status"], style="yellow" if r.paused else "green"), str(r.sweeps), Text(last),
                  Text((f["next_due_at"] or "—")[:19].replace("T", " ")), Text(r.last_error or "", style="red"))
    make_console().print(t)
    return 0


async def change(settings: object, schedule_id: str, *, action: str) -> int:
    """``pause`` / ``resume`` / ``remove`` one schedule (an id or its first characters)."""
    from services.orchestrator.cli.common import CliError
    from services.orchestrator.store import open_store
    from services.orchestrator.store.schedule_repo import ScheduleStore

    store = await open_store(cast("Settings", settings).database_url)
    try:
        sched = ScheduleStore(store)
        sid = await _resolve(sched, schedule_id)
        ok = await (sched.remove(sid) if action == "remove" else sched.set_paused(sid, action == "pause"))
    finally:
        await store.close()
    if not ok:
        raise CliError(f"schedule {schedule_id!r} not found")
    done = {"pause": "paused", "resume": "resumed", "remove": "removed (its sweeps' runs are kept)"}[action]
    typer.echo(f"schedule {sid}: {done}")
    return 0


def _run(fn: Any) -> None:
    from services.orchestrator.cli.common import run_command, setup_cli

    setup_cli()
    raise typer.Exit(run_command(fn))


@schedule_app.command("add")
def add_command(
    org: Annotated[str, typer.Option("--org", help="The organisation to evaluate, e.g. \"Together AI\".")],
    questions: Annotated[Path, typer.Option("--questions", help="Questions file (one per line, # a comment); its "
                                            "content is stored in the schedule.")],
    every: Annotated[str, typer.Option("--every", help="Period: a number and a unit s, m, h, d or w (2s, 10m, 6h, "
                                       "7d).")],
    domain: Annotated[str, typer.Option("--domain", help="Its web domain, e.g. together.ai.")] = "",
    models: Annotated[str, typer.Option("--models", help="Comma-separated models (as for `vantage evaluate`).")
                      ] = DEFAULT_MODELS,
    locations: Annotated[str, typer.Option("--locations", help="Comma-separated ISO country codes.")] = "US",
    samples: Annotated[int | None, typer.Option("--samples", help="Asks per question × model × location (default: "
                                                "`vantage evaluate`'s).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Label of the schedule (and of its sweeps).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text | json")] = "text",
) -> None:
    """Store a schedule: a sweep of the org's questions every period, started by `vantage worker`.

    Example: vantage schedule add --org "Together AI" --domain together.ai --questions examples/questions.txt
    --models chatgpt,gpt-5.5 --locations US --every 7d
    """
    from services.orchestrator.cli.common import check_output
    from shared.config import get_settings

    out = check_output(output, ("text", "json"))
    _run(lambda: add(get_settings(), org=org, domain=domain, questions_path=questions.absolute(), models=models,
                     locations=locations, every=every, samples=samples, name=name, output=out))


@schedule_app.command("list")
def list_command(output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table") -> None:
    """The schedules: period, matrix, status, sweeps started, the last one, when the next is due."""
    from services.orchestrator.cli.common import check_output
    from shared.config import get_settings

    out = check_output(output, ("table", "json"))
    _run(lambda: list_schedules(get_settings(), output=out))


@schedule_app.command("pause")
def pause_command(schedule_id: Annotated[str, typer.Argument(help="Schedule id or its first characters.")]) -> None:
    """Stop starting sweeps (the periods due while paused are skipped)."""
    from shared.config import get_settings

    _run(lambda: change(get_settings(), schedule_id, action="pause"))


@schedule_app.command("resume")
def resume_command(schedule_id: Annotated[str, typer.Argument(help="Schedule id or its first characters.")]) -> None:
    """Start sweeps again: the current period's at once (one catch-up, never the missed ones)."""
    from shared.config import get_settings

    _run(lambda: change(get_settings(), schedule_id, action="resume"))


@schedule_app.command("remove")
def remove_command(schedule_id: Annotated[str, typer.Argument(help="Schedule id or its first characters.")]) -> None:
    """Delete the schedule (its sweeps' runs stay, and `vantage history` still shows them)."""
    from shared.config import get_settings

    _run(lambda: change(get_settings(), schedule_id, action="remove"))


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` group to the ``vantage`` typer app."""
    app.add_typer(schedule_app, name="schedule")
