"""The search service's own data: the records of keyed calls and the replicas' watermarks (tables declared in
:mod:`shared.call_records`, the contract the orchestrator's reaper reads) and their Alembic chain (:data:`CHAIN`:
``migrations/``, version table ``alembic_version_search``), independent of every other service's chain in the same
database.

Policy (:meth:`shared.db.MigrationChain.ensure_schema` with ``upgrade_behind``): the service migrates its own tables
at start-up (serialised across replicas); a revision this code does not know is refused, and the service then serves
without recording (as with no database).
"""

from __future__ import annotations

from pathlib import Path

from shared.call_records import metadata, search_call_records, search_replicas
from shared.db import MigrationChain

#: Alembic version table of the search chain.
VERSION_TABLE = "alembic_version_search"

#: The search service's migration chain.
CHAIN = MigrationChain(
    script_location=Path(__file__).parent / "migrations",
    version_table=VERSION_TABLE,
    lock_key=0x56534348,  # "VSCH": its own advisory lock
    owned_tables=lambda: list(metadata.tables),
    upgrade_hint="set VANTAGE_SEARCH_DATABASE_URL for the search service and restart it (it migrates its own tables)",
    upgrade_behind=True,
)

__all__ = ["CHAIN", "VERSION_TABLE", "metadata", "search_call_records", "search_replicas"]
