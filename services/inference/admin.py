"""Maintenance commands of the inference service's own data, for operators and for ``vantage db prune-cache``
(which runs this module: the orchestrator never touches the inference service's tables itself).

``python -m services.inference prune-cache [--older-than SECONDS]``: delete the expired response-cache rows (and,
with ``--older-than``, every row stored at least that many seconds ago) in bounded batches
(:func:`services.inference.cache.purge`) and print how many. ``python -m services.inference db-upgrade``: migrate the
inference service's tables to the head revision (:data:`services.inference.store.CHAIN`; the service also does it
at start-up). The database is ``VANTAGE_DATABASE_URL`` (:class:`shared.config.InferenceSettings`).

Exit codes: 0 done, 2 bad option (one line on stderr), 3 database unreachable or at a revision this code does not
know (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError

from services.inference.cache import purge
from services.inference.store import CHAIN
from services.inference.store.models import response_cache
from shared.config import InferenceSettings, settings_of
from shared.db import SchemaOutOfDate, create_engine, display_url
from shared.exitcodes import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from shared.logging import first_line

COMMANDS = ("prune-cache", "db-upgrade")


async def prune_cache(settings: InferenceSettings, *, older_than: float | None = None) -> int:
    """Purge the response cache on ``settings.database_url``; print ``<db>: removed N … rows``. A database without the
    ``response_cache`` table has nothing to prune (exit 0, nothing created)."""
    where = display_url(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: inspect(c).has_table(response_cache.name))
        removed = await purge(engine, now=datetime.now(UTC), older_than_seconds=older_than) if has_table else 0
    finally:
        await engine.dispose()
    if not has_table:
        print(f"{where}: no response_cache table (the inference service creates it); removed 0 rows")
        return EXIT_OK
    rows = f"response cache row{'s' if removed != 1 else ''}"
    if older_than is None:
        print(f"{where}: removed {removed} expired {rows}")
    else:
        print(f"{where}: removed {removed} {rows} (expired, or stored at least {older_than:g} s ago)")
    return EXIT_OK


async def db_upgrade(settings: InferenceSettings) -> int:
    """Migrate the inference service's tables to the head; print ``<db>: … → <head> (inference head)``."""
    where = display_url(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        before, after = await CHAIN.upgrade(engine)
    finally:
        await engine.dispose()
    state = f"already at {after}" if before == after else f"upgraded {before or 'empty'} → {after}"
    print(f"{where}: {state} (inference head)")
    return EXIT_OK


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (``prune-cache`` / ``db-upgrade`` and their options) and run the command; returns the exit
    code. Never raises for a bad option or an unreachable database: one line on stderr."""
    parser = argparse.ArgumentParser(prog="python -m services.inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prune-cache", help="delete expired response-cache rows")
    p.add_argument("--older-than", metavar="SECONDS", default=None,
                   help="also remove rows stored at least this many seconds ago, expired or not (≥ 0)")
    sub.add_parser("db-upgrade", help="migrate the inference service's tables to the head revision")
    args = parser.parse_args(argv)
    older: float | None = None
    if getattr(args, "older_than", None) is not None:
        try:
            older = _seconds(args.older_than)
        except ValueError:
            print(f"error: --older-than must be a number of seconds ≥ 0, not {args.older_than}", file=sys.stderr)
            return EXIT_USAGE
    settings = settings_of(InferenceSettings)
    try:
        if args.command == "prune-cache":
            return asyncio.run(prune_cache(settings, older_than=older))
        return asyncio.run(db_upgrade(settings))
    except (DBAPIError, OSError, SchemaOutOfDate) as e:
        msg = e.message if isinstance(e, SchemaOutOfDate) else first_line(e)
        print(f"error: database {display_url(settings.database_url)}: {msg}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ValueError as e:  # an unparsable VANTAGE_DATABASE_URL
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
