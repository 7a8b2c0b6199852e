"""``vantage enrich FILE.csv --instruction … --schema …`` (registered on the typer app by :func:`register`): the
command line of :mod:`services.orchestrator.app.jobs.enrich` (packed enrichment of CSV rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.orchestrator.app.jobs.enrich import EnrichError, EnrichOptions, load_schema, run_enrich
from services.orchestrator.cli.common import CliError, cli_log_level, run_command

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``enrich`` command to the ``vantage`` typer app."""

    @app.command("enrich")
    def enrich_command(
        csv_file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="CSV with a header row.")],
        instruction: Annotated[str, typer.Option("--instruction", "-i", help="What to do with each row.")],
        schema: Annotated[
            Path, typer.Option("--schema", "-s", help="JSON Schema of one row's result: an object whose properties "
                               "become the new columns.")
        ],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Output CSV (default FILE.enriched.csv).")] = None,
        model: Annotated[str | None, typer.Option(help="LLM (default: VANTAGE_RESEARCH_MODEL).")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Ask the model even for rows answered before "
                                               "(the fresh answers refresh the cache).")] = False,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per LLM call; 0 = the inference "
                                                "service's default (20).")] = 0,
    ) -> None:
        """Add columns to every row of a CSV with an LLM: rows are packed 20 per call, validated against the schema,
        and cached, so running it again costs nothing. Writes the original columns + one column per schema property
        + `enrich_error`, then prints: total, cache hits, newly computed, failed, success rate, LLM calls, USD.
        Exit 0 all rows enriched, 1 some rows failed, 2 bad input, 3 services unreachable.

        Example: vantage enrich companies.csv --instruction "Classify the company's industry" --schema industry.json
        """
        from shared.config import get_settings
        from shared.logging import configure_logging

        settings = get_settings()
        configure_logging("cli", cli_log_level(), settings.log_format)

        async def main() -> int:
            try:
                if not instruction.strip():
                    raise EnrichError("--instruction must not be empty")
                if batch_size < 0:
                    raise EnrichError("--batch-size must be ≥ 0")
                item_schema = load_schema(schema.expanduser())
                path = csv_file.expanduser()
                if not path.is_file():
                    raise EnrichError(f"input file not found: {path}")
                out_path = (out or path.with_name(f"{path.stem}.enriched.csv")).expanduser()
                opts = EnrichOptions(
                    instruction=instruction.strip(), schema=item_schema, model=model or settings.research_model,
                    out_path=out_path, no_cache=no_cache, batch_size=batch_size,
                    concurrency=max(1, min(settings.inference_concurrency, 8)), timeout=settings.rpc_timeout_seconds,
                )
                return await run_enrich(settings, path, opts)
            except EnrichError as e:
                raise CliError(e.message, e.code) from None

        raise typer.Exit(run_command(main))
