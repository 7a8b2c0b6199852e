"""``vantage models``: the dated model catalogue (:mod:`shared.catalogue`) as a rich table or JSON.

Read locally from the catalogue the services use (``shared/model_catalogue.toml``, or ``VANTAGE_MODEL_CATALOGUE_PATH``)
— the same entries ``InferenceService/ListModels`` returns, with the same field names. No service needs to run.
Exit 0; 2 for a bad option; 3 when the catalogue file cannot be read or is invalid (one line on stderr).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shared.catalogue import Catalogue, CatalogueError, ModelInfo, load_catalogue

STATUS_STYLE = {"active": "green", "deprecated": "yellow", "retired": "red"}


def model_row(m: ModelInfo, today: dt.date | None = None) -> dict[str, Any]:
    """One model as ``ListModels`` names its fields (status is the effective one; dates ISO, "" when none)."""
    return {
        "model": m.id,
        "provider": m.provider,
        "aliases": list(m.aliases),
        "input_usd_per_million_tokens": m.input_usd_per_million_tokens,
        "output_usd_per_million_tokens": m.output_usd_per_million_tokens,
        "web_search_usd_per_call": m.web_search_usd_per_call,
        "status": m.effective_status(today),
        "shutdown_date": m.shutdown_date.isoformat() if m.shutdown_date else "",
        "successor": m.successor,
        "source_url": m.source_url,
        "checked_on": m.checked_on.isoformat(),
        "note": m.note,
    }


def catalogue_table(cat: Catalogue, today: dt.date | None = None) -> Table:
    """The catalogue as a rich table: prices in USD (per 1M tokens, per search call), status, shutdown, source."""
    t = Table(title=f"Model catalogue ({cat.path})", header_style="bold")
    for name, justify in (("model", "left"), ("provider", "left"), ("$/1M in", "right"), ("$/1M out", "right"),
                          ("$/search", "right"), ("status", "left"), ("shutdown", "left"), ("successor", "left"),
                          ("checked", "left"), ("source", "left")):
        t.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for m in cat.models:
        row = model_row(m, today)
        name = m.id + (f" ({', '.join(m.aliases)})" if m.aliases else "")
        style = STATUS_STYLE.get(row["status"], "")
        t.add_row(
            name, m.provider, f"{m.input_usd_per_million_tokens:g}", f"{m.output_usd_per_million_tokens:g}",
            f"{m.web_search_usd_per_call:g}", f"[{style}]{row['status']}[/]", row["shutdown_date"], m.successor,
            row["checked_on"], m.source_url,
        )
    return t


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to the ``vantage`` typer app."""

    @app.command("models")
    def models_command(
        output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
        status: Annotated[str | None, typer.Option(help="Only models in this state: active, deprecated, "
                                                        "retired.")] = None,
    ) -> None:
        """Print the model catalogue: provider, USD per 1M input / output tokens, USD per web-search call, status,
        shutdown date, successor, and the source each fact was checked against (with the date).

        Example: vantage models --status deprecated
        """
        from shared.config import get_settings

        out = output.lower()
        if out not in ("table", "json"):
            typer.secho(f"error: --output must be table or json (got {output!r})", err=True, fg=typer.colors.RED)
            raise typer.Exit(2)
        if status is not None and status.lower() not in ("active", "deprecated", "retired"):
            typer.secho(f"error: unknown status {status!r} (active, deprecated or retired)", err=True,
                        fg=typer.colors.RED)
            raise typer.Exit(2)
        try:
            cat = load_catalogue(get_settings().model_catalogue_path)
        except CatalogueError as e:
            typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
            raise typer.Exit(3) from None
        if status is not None:
            wanted = status.lower()
            cat = Catalogue(tuple(m for m in cat.models if m.effective_status() == wanted), cat.path)
        if out == "json":
            typer.echo(json.dumps([model_row(m) for m in cat.models], indent=2))
            return
        Console(width=200).print(catalogue_table(cat))
