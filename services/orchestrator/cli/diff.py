"""``vantage diff RUN_A RUN_B`` (issue 14 item 4), registered on the typer app by :func:`register`.

Two evaluation sweeps: per figure, per model × location cell and overall, A, B, delta (B − A) with its interval and
the verdict; the method under the table. Two research runs: per company the tier and score change and the new
evidence URLs. Exit codes: 0 ok, 2 usage error (unknown run, mixed kinds, bad --seed / --resamples), 3 database
unreachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

VERDICT_STYLE = {"moved_up": "bold green", "moved_down": "bold red", "within_noise": "dim",
                 "insufficient_data": "yellow"}


async def diff(settings: object, run_a: str, run_b: str, *, output: str, seed: int, resamples: int,
               html_out: Path | None = None) -> int:
    from rich.table import Table
    from rich.text import Text

    from services.orchestrator.app.diff import check_params, diff_runs
    from services.orchestrator.app.measurement import FIGURES, format_estimate
    from services.orchestrator.cli.common import print_json
    from services.orchestrator.cli.session import resolve_run
    from services.orchestrator.reports.tables import make_console
    from services.orchestrator.store import open_store

    check_params(seed=seed, resamples=resamples)
    store = await open_store(settings.database_url)  # type: ignore[attr-defined]  # errors → run_command
    try:
        a, b = await resolve_run(store, run_a), await resolve_run(store, run_b)
        d = await diff_runs(store, a, b, seed=seed, resamples=resamples)
    finally:
        await store.close()
    if html_out is not None:  # the --output json document, drawn (reports/html.diff_html)
        from services.orchestrator.reports.html import diff_html, save_html

        size = save_html(diff_html(d.to_dict()), html_out)
        make_console(stderr=True).print(f"HTML report: {html_out} ({size / 1e6:.2f} MB)", markup=False,
                                        highlight=False)
        return 0
    if output == "json":
        print_json(d.to_dict())
        return 0
    out = make_console()
    if d.sweep is None:
        t = Table(title=f"research {a[:8]} → {b[:8]}")
        for col in ("company", "domain", "tier", "score", "new evidence URLs"):
            t.add_column(col)
        for c in d.companies:
            style = {"up": "bold green", "down": "bold red", "new": "cyan", "gone": "dim"}.get(c.change, "")
            delta = "" if c.score_delta is None else f" ({c.score_delta:+d})"
            t.add_row(Text(c.company), Text(c.domain), Text(f"{c.tier_a or '—'} → {c.tier_b or '—'}", style=style),
                      Text(f"{c.score_a if c.score_a is not None else '—'} → "
                           f"{c.score_b if c.score_b is not None else '—'}{delta}"),
                      Text("\n".join(c.new_evidence_urls)))
        out.print(t)
        return 0
    s = d.sweep
    t = Table(title=f"evaluation {a[:8]} → {b[:8]}: {s.basket} common question × model × location "
                    f"({s.only_a} only in A, {s.only_b} only in B)")
    for col in ("model", "location", "figure", "A", "B", "delta (B − A)", "verdict"):
        t.add_column(col)
    for cell in [*s.cells, s.overall]:
        flag = " (model version changed)" if cell.model_version_changed else ""
        for name in FIGURES:
            fd = cell.figures[name]
            v = fd.verdict + (f" (need ≈{fd.needed_n:,} {fd.unit})" if fd.verdict == "insufficient_data"
                              and fd.needed_n else "")
            t.add_row(Text(cell.model + flag), Text(cell.location), name, format_estimate(fd.a),
                      format_estimate(fd.b), format_estimate(fd.delta, signed=True),
                      Text(v, style=VERDICT_STYLE[fd.verdict]))
        t.add_section()
    out.print(t)
    out.print(f"{s.confidence:.0%} intervals. Per cell, visibility rate: Wilson score interval per side, Newcombe "
              f"hybrid score interval for the delta; other figures and the overall: paired cluster bootstrap over "
              f"the {s.overall.questions} common questions (percentile, {s.resamples:,} resamples, seed {s.seed}). "
              f"Verdict: moved_up / moved_down when the delta's interval excludes 0; within_noise when it includes "
              f"0 and the sample could see a move of {s.min_effect:.0%} points (80 % power); else "
              f"insufficient_data with the sample needed; fewer than {s.min_questions} common questions is always "
              f"insufficient_data.", markup=False, highlight=False, style="dim")
    for mc in s.model_changes:
        out.print(f"model version changed: {mc.model}: {', '.join(mc.versions_a)} → {', '.join(mc.versions_b)}",
                  markup=False, highlight=False)
    for note in d.notes:
        out.print(note, markup=False, highlight=False, style="dim")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``diff`` to the ``vantage`` typer app."""

    @app.command("diff")
    def diff_command(
        run_a: Annotated[str, typer.Argument(help="The earlier run (id or its first characters).")],
        run_b: Annotated[str, typer.Argument(help="The later run.")],
        output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
        seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (0..4294967295); same seed, same "
                                          "intervals.")] = 0,
        resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples (1..10,000).")] = 2000,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table (the terminal, --output applies) | html "
                                         "(one self-contained file, needs --out)")] = "table",
        out_path: Annotated[Path | None, typer.Option("--out", help="File of --format html.")] = None,
    ) -> None:
        """Compare two runs. Two evaluation sweeps: per figure and model × location, A, B, delta with its interval
        and a verdict (moved_up / moved_down / within_noise / insufficient_data). Two research runs: per company
        the tier and score change and the new evidence URLs.

        Example: vantage diff 3f2a9c1e 8b7d0a44 --output json  (or: --format html --out diff.html)
        """
        from services.orchestrator.cli.common import check_output, fail, run_command, setup_cli
        from shared.config import get_settings

        out = check_output(output, ("table", "json"))
        if fmt not in ("table", "html"):
            raise fail(f"--format must be table or html, got {fmt!r}")
        if fmt == "html" and out_path is None:
            raise fail("--format html needs --out FILE, e.g. --out diff.html")
        setup_cli()
        html_out = out_path if fmt == "html" else None
        raise typer.Exit(run_command(lambda: diff(get_settings(), run_a, run_b, output=out, seed=seed,
                                                  resamples=resamples, html_out=html_out)))
