"""Alembic environment of the search service (version table ``alembic_version_search``), configured in code by
:data:`services.search.store.CHAIN`; there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

from shared.call_records import metadata
from shared.db import run_env

run_env(context, metadata)
