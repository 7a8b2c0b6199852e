"""Alembic environment of the inference service (version table ``alembic_version_inference``), configured in code
by :data:`services.inference.store.CHAIN`; there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

from services.inference.store.models import metadata
from shared.db import run_env

run_env(context, metadata)
