"""``vantage history --org NAME [--domain D] [--output text|json]`` (issue 14 item 5), registered by :func:`register`.

The trend of each headline figure over the org's sweeps (its evaluation runs, oldest first) with 95 % intervals,
and the verdict between consecutive sweeps (:mod:`services.orchestrator.app.history`; the JSON document is
described there). Only the database is needed. Exit codes: 0 ok (also with no sweep: says so), 2 usage error,
3 database unreachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:
    from shared.config import Settings

VERDICT_MARK = {"moved_up": "▲", "moved_down": "▼", "within_noise": "=", "insufficient_data": "?"}
VERDICT_STYLE = {"moved_up": "bold green", "moved_down": "bold red", "within_noise": "dim",
                 "insufficient_data": "yellow"}


def _estimate(d: dict[str, Any], kind: str) -> Any:
    from services.orchestrator.app.measurement import Estimate

    return Estimate(d.get("value"), d.get("ci_low"), d.get("ci_high"), int(d.get("n") or 0), "",
                    unit="answers" if kind == "rate" else "positions")


async def history(settings: object, *, org: str, domain: str | None, output: str, seed: int, resamples: int,
                  html_out: Path | None = None) -> int:
    from rich.table import Table
    from rich.text import Text

    from services.orchestrator.app.diff import check_params
    from services.orchestrator.app.history import build_history, load_sweeps
    from services.orchestrator.app.measurement import FIGURES, format_estimate
    from services.orchestrator.cli.common import CliError, print_json
    from services.orchestrator.reports.tables import make_console
    from services.orchestrator.store import open_store

    if not " ".join(org.split()):
        raise CliError("--org is required (the org's name as given to `vantage evaluate`)")
    check_params(seed=seed, resamples=resamples)
    store = await open_store(cast("Settings", settings).database_url)
    try:
        sweeps = await load_sweeps(store, org, domain or None)
    finally:
        await store.close()
    doc = build_history(" ".join(org.split()), sweeps, resamples=resamples, seed=seed)
    if html_out is not None:  # the --output json document, drawn (reports/html.history_html)
        from services.orchestrator.reports.html import history_html, save_html

        size = save_html(history_html(doc), html_out)
        make_console(stderr=True).print(f"HTML report: {html_out} ({size / 1e6:.2f} MB)", markup=False,
                                        highlight=False)
        return 0
    if output == "json":
        print_json(doc)
        return 0
    out = make_console()
    if not doc["sweeps"]:
        out.print(f"no evaluation sweeps of {doc['org']} with answers yet", markup=False, highlight=False)
        return 0
    verdict_of = {(v["to_run"], v["figure"]): v for v in doc["verdicts"]}
    t = Table(title=f"{doc['org']}: {len(doc['sweeps'])} sweeps, oldest first")
    t.add_column("sweep")
    t.add_column("started (UTC)")
    t.add_column("answers", justify="right")
    for name in FIGURES:
        t.add_column(name.replace("_", " "))
    for s in doc["sweeps"]:
        label = s["run_id"][:8] + (f" #{s['period']}" if s["period"] is not None else "")
        cells: list[Any] = [Text(label), s["started_at"][:19].replace("T", " "), f"{s['answers']} × {s['samples']}"]
        for name, kind in FIGURES.items():
            est = s["figures"].get(name)
            text = Text(format_estimate(_estimate(est, kind)) if est else "—")
            v = verdict_of.get((s["run_id"], name))
            if v is not None:
                text.append(f" {VERDICT_MARK[v['verdict']]}", style=VERDICT_STYLE[v["verdict"]])
            cells.append(text)
        t.add_row(*cells)
    out.print(t)
    out.print(f"95 % intervals: cluster bootstrap over questions ({resamples:,} resamples, seed {seed}). Mark after a "
              "figure: its verdict against the sweep before over their common questions × models × locations — "
              "▲ moved up, ▼ moved down, = within noise, ? insufficient data. answers × samples per cell.",
              markup=False, highlight=False, style="dim")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``history`` to the ``vantage`` typer app."""

    @app.command("history")
    def history_command(
        org: Annotated[str, typer.Option("--org", help="The organisation, as given to `vantage evaluate`.")],
        domain: Annotated[str | None, typer.Option("--domain", help="Only its sweeps with this domain.")] = None,
        output: Annotated[str, typer.Option("--output", "-o", help="text | json")] = "text",
        seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (0..4294967295).")] = 0,
        resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples (1..10,000).")] = 2000,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table (the terminal, --output applies) | html "
                                         "(one self-contained file, needs --out)")] = "table",
        out_path: Annotated[Path | None, typer.Option("--out", help="File of --format html.")] = None,
    ) -> None:
        """The trend of each headline figure over the org's sweeps, with intervals and the verdict between
        consecutive sweeps.

        Example: vantage history --org "Together AI" --output json
        """
        from services.orchestrator.cli.common import check_output, fail, run_command, setup_cli
        from shared.config import get_settings

        out = check_output(output, ("text", "table", "json"))
        if fmt not in ("table", "html"):
            raise fail(f"--format must be table or html, got {fmt!r}")
        if fmt == "html" and out_path is None:
            raise fail("--format html needs --out FILE, e.g. --out history.html")
        setup_cli()
        raise typer.Exit(run_command(lambda: history(get_settings(), org=org, domain=domain, output=out, seed=seed,
                                                     resamples=resamples,
                                                     html_out=out_path if fmt == "html" else None)))
