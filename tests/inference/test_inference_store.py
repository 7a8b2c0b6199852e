"""Each service owns its data: the inference service's tables and Alembic chain (services/inference/store,
version table ``alembic_version_inference``) next to the orchestrator's in one database (SQLite file and PostgreSQL).

The inference service started alone on an empty database creates only its own tables; both services migrate the
same database independently, in either order; a database where the orchestrator's former migration
0002_response_cache created the table is adopted with its rows; an orchestrator downgrade never drops the cache."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, select, text

from services.inference.cache import ResponseCache
from services.inference.providers import CompletionResult
from services.inference.server import build
from services.inference.store import CHAIN, VERSION_TABLE
from services.inference.store import metadata as inference_metadata
from services.inference.store.models import brightdata_trigger_intents, response_cache
from services.orchestrator.store import db as orch_db
from services.orchestrator.store import open_store
from services.orchestrator.store.models import metadata as orchestrator_metadata
from shared.config import Settings
from shared.db import SchemaOutOfDate, create_engine
from shared.grpc_server import serving

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INFERENCE_TABLES = {*inference_metadata.tables, VERSION_TABLE}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _diff(url: str, metadata: MetaData) -> list[object]:
    """Autogenerate's differences between ``metadata`` and the database, for ``metadata``'s own tables only."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c, opts={
                "compare_type": True,
                "include_name": lambda name, type_, _p: type_ != "table" or name in metadata.tables,
            }), metadata))
    finally:
        await engine.dispose()


def test_the_services_declare_disjoint_tables_and_version_tables() -> None:
    assert not set(inference_metadata.tables) & set(orchestrator_metadata.tables)
    assert {"response_cache", "brightdata_trigger_intents"} <= set(inference_metadata.tables)
    assert CHAIN.version_table == "alembic_version_inference" != orch_db.CHAIN.version_table


def test_the_inference_service_imports_nothing_of_the_orchestrator() -> None:
    code = ("import sys, services.inference.server, services.inference.admin; "
            "print(sorted(m for m in sys.modules if m.startswith('services.orchestrator')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_the_inference_service_alone_on_an_empty_database_creates_only_its_own_tables(
    settings: Settings, db_url: str
) -> None:
    s = settings.model_copy(update={"database_url": db_url})
    async with serving("inference", build, s) as srv, grpc.aio.insecure_channel(srv.address):
        pass
    assert await _tables(db_url) == INFERENCE_TABLES
    assert await _diff(db_url, inference_metadata) == []
    engine = create_engine(db_url)
    try:
        assert await CHAIN.current_revision(engine) == CHAIN.head_revision()
        assert await orch_db.current_revision(engine) is None  # the orchestrator's chain is untouched
    finally:
        await engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("inference_first", [True, False])
async def test_both_services_migrate_one_database_independently(db_url: str, inference_first: bool) -> None:
    engine = create_engine(db_url)
    try:
        if inference_first:
            await CHAIN.ensure_schema(engine)
        st = await open_store(db_url)  # the inference tables do not make the database "not empty" for it
        await st.close()
        await CHAIN.ensure_schema(engine)  # nor the orchestrator's tables for the inference chain
        assert await CHAIN.current_revision(engine) == CHAIN.head_revision()
        assert await orch_db.current_revision(engine) == orch_db.head_revision()
    finally:
        await engine.dispose()
    assert await _tables(db_url) == INFERENCE_TABLES | set(orchestrator_metadata.tables) | {"alembic_version"}
    assert await _diff(db_url, inference_metadata) == []
    assert await _diff(db_url, orchestrator_metadata) == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_database_whose_cache_the_orchestrator_created_is_adopted_with_its_rows(
    settings: Settings, db_url: str
) -> None:
    # The state the orchestrator's former 0002_response_cache left: its chain at head, response_cache with rows,
    # no inference version table.
    engine = create_engine(db_url)
    answer = CompletionResult(text="kept", provider="openai", model="gpt-4.1", json_text="", cost_usd=0.01)
    try:
        await orch_db.upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: response_cache.create(c))
        await ResponseCache(engine).put("k" * 64, "openai", "gpt-4.1", answer)
    finally:
        await engine.dispose()
    assert VERSION_TABLE not in await _tables(db_url)

    cache = await ResponseCache.open(settings.model_copy(update={"database_url": db_url}))
    assert cache is not None, "the cache must adopt the existing table, not give up"
    try:
        hit = await cache.get("k" * 64)
        assert hit is not None and hit.text == "kept"
        assert await CHAIN.current_revision(cache.engine) == CHAIN.head_revision()
    finally:
        await cache.aclose()
    # The orchestrator still sees its own schema at head (the cache table is not its business).
    st = await open_store(db_url)
    await st.close()
    assert await _diff(db_url, orchestrator_metadata) == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_trigger_intent_table_made_by_create_all_is_adopted_by_i0002_with_its_rows(db_url: str) -> None:
    # The state the service's former create_all left: the chain at i0001, the intent table made outside it.
    engine = create_engine(db_url)
    try:
        await CHAIN.upgrade(engine, "i0001_response_cache")
        legacy = brightdata_trigger_intents.to_metadata(MetaData())  # no naming convention, as create_all had
        async with engine.begin() as conn:
            await conn.run_sync(legacy.create)
            await conn.execute(brightdata_trigger_intents.insert().values(
                intent_id="i-1", dataset_id="gd_x", prompts_sha256="0" * 64, inputs=1, began_at=1.0,
                replica="r:1", state="triggered", snapshot_id="s_kept", updated_at=1.0))
        assert await CHAIN.ensure_schema(engine) == CHAIN.head_revision() == "i0003_brightdata_429_budget"
        async with engine.connect() as conn:
            ids = [s for (s,) in await conn.execute(select(brightdata_trigger_intents.c.snapshot_id))]
        assert ids == ["s_kept"]
    finally:
        await engine.dispose()


async def test_a_database_holding_someone_elses_tables_is_migrated_by_neither_service(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE notes (x TEXT)"))
        for chain in (CHAIN, orch_db.CHAIN):
            with pytest.raises(SchemaOutOfDate, match=re.escape(f"run `{chain.upgrade_hint}`")):
                await chain.ensure_schema(engine)
        assert await _tables(sqlite_url) == {"notes"}
    finally:
        await engine.dispose()


async def test_an_orchestrator_downgrade_keeps_the_inference_tables(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        await CHAIN.ensure_schema(engine)
        await ResponseCache(engine).put("d" * 64, "openai", "gpt-4.1", CompletionResult(
            text="still here", provider="openai", model="gpt-4.1", json_text=""))
        await orch_db.upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(orch_db.alembic_config(c), "0001"))
        async with engine.connect() as conn:
            keys = [k for (k,) in await conn.execute(select(response_cache.c.key))]
        assert keys == ["d" * 64]
        assert await CHAIN.current_revision(engine) == CHAIN.head_revision()
    finally:
        await engine.dispose()


def test_python_m_services_inference_db_upgrade_creates_only_the_inference_tables(sqlite_url: str) -> None:
    env = {"VANTAGE_DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin", "VANTAGE_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "services.inference", "db-upgrade"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"upgraded empty → {CHAIN.head_revision()} (inference head)" in out.stdout
    assert asyncio.run(_tables(sqlite_url)) == INFERENCE_TABLES
