"""The inference service's own data: its tables (:mod:`services.inference.store.models`) and its Alembic chain
(:data:`CHAIN`: ``migrations/``, version table ``alembic_version_inference``), independent of every other
service's chain in the same database.

Policy (:meth:`shared.db.MigrationChain.ensure_schema` with ``upgrade_behind``): the service migrates its own tables
at start-up — a database without them, or at an older revision of this chain, is brought to the head (serialised
across replicas); a revision this code does not know is refused, and the service then serves without its cache.
``python -m services.inference db-upgrade`` runs the same migrations by hand.
"""

from __future__ import annotations

from pathlib import Path

from services.inference.store.models import (
    brightdata_429s,
    brightdata_budget_replicas,
    brightdata_trigger_intents,
    metadata,
    response_cache,
)
from shared.db import MigrationChain

#: Alembic version table of the inference chain (the orchestrator's is ``alembic_version``).
VERSION_TABLE = "alembic_version_inference"

#: The inference service's migration chain.
CHAIN = MigrationChain(
    script_location=Path(__file__).parent / "migrations",
    version_table=VERSION_TABLE,
    lock_key=0x56494E46,  # "VINF": its own advisory lock, so it never waits on the orchestrator's migrations
    owned_tables=lambda: list(metadata.tables),
    upgrade_hint="python -m services.inference db-upgrade",
    upgrade_behind=True,
)

__all__ = [
    "CHAIN", "VERSION_TABLE", "brightdata_429s", "brightdata_budget_replicas", "brightdata_trigger_intents",
    "metadata", "response_cache",
]
