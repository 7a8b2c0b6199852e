"""The store on SQLite and PostgreSQL: URL normalisation, migrations and the schema check, ingest with duplicates,
claims and fencing, idempotent ledger writes, cost sums, events."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from services.orchestrator.app.inputs import CompanyCsv, rows_from_pairs
from services.orchestrator.store import (
    ClassificationRecord,
    SchemaOutOfDate,
    SearchRecord,
    Store,
    create_engine,
    ensure_schema,
    head_revision,
    normalise_url,
    open_store,
    upgrade,
)
from services.orchestrator.store.db import PG_IDLE_IN_TRANSACTION_TIMEOUT_MS, display_url
from services.orchestrator.store.models import metadata

SEARCH = SearchRecord(20, 5, 15, 2, 0.016, ["https://a.example/1"], False)
CLS = ClassificationRecord("HOT", 90, "Frontier pre-training", "r", ["https://a.example/1"], "gpt-4.1", 1000, 50, 0.0024)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///vantage.db", "sqlite+aiosqlite:///vantage.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("  sqlite:///x.db ", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_normalise_url_rejects_garbage_and_display_hides_password() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        normalise_url("vantage.db")
    assert "secret" not in display_url("postgresql://u:secret@h/db")


async def test_empty_database_is_created_and_matches_the_models(db_url: str) -> None:
    st = await open_store(db_url)
    try:
        async with st.engine.connect() as conn:
            rev = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
            )
        assert rev == head_revision()
        assert diff == [], f"migrations and models disagree: {diff}"
    finally:
        await st.close()


async def test_database_behind_the_code_is_refused_until_upgraded(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "head")
        async with engine.begin() as conn:  # pretend the schema is one revision older
            await conn.execute(text("UPDATE alembic_version SET version_num = 'base0'"))
        with pytest.raises(SchemaOutOfDate) as e:
            await ensure_schema(engine)
        assert "database schema is at base0" in e.value.message
        assert "which this code does not know" in e.value.message
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM alembic_version"))
        # Tables but no revision: not "empty", so no silent auto-upgrade either.
        with pytest.raises(SchemaOutOfDate, match=r"code needs .*: run `vantage db upgrade`"):
            await ensure_schema(engine)
    finally:
        await engine.dispose()


async def test_concurrent_first_use_creates_the_schema_once(db_url: str) -> None:
    stores = await asyncio.gather(*(open_store(db_url) for _ in range(3)))
    for st in stores:
        await st.close()


async def test_postgres_sessions_cannot_hold_locks_while_frozen_in_a_transaction(pg_url: str) -> None:
    # A worker frozen mid-transaction (SIGSTOP, VM pause) must not stall other workers' claims for ever: PostgreSQL
    # ends such a session after PG_IDLE_IN_TRANSACTION_TIMEOUT_MS and releases its row locks.
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            got = (await conn.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar()
        assert got == f"{PG_IDLE_IN_TRANSACTION_TIMEOUT_MS // 1000}s"
    finally:
        await engine.dispose()


async def test_ingest_records_blank_and_duplicate_rows_as_skipped(store: Store) -> None:
    run = await store.create_run(kind="research", name="t", options={})
    csv = CompanyCsv.from_text("company,domain\nAnthropic,anthropic.com\n\nanthropic ,\nCohere,cohere.com\n,x.io\n")
    report = await store.add_items(run.id, csv.rows())
    assert (report.queued, report.skipped) == (2, 3)
    assert report.skip_messages == [
        "row 3: blank row",
        "row 4 (anthropic): duplicate of row 2 (Anthropic)",
        "row 6: no company name",
    ]
    items = await store.page_items(run.id)
    assert [(i.seq, i.company, i.status) for i in items] == [
        (2, "Anthropic", "pending"),
        (3, "", "skipped"),
        (4, "anthropic", "skipped"),
        (5, "Cohere", "pending"),
        (6, "", "skipped"),
    ]


async def test_duplicates_across_ingest_batches_name_the_first_row(store: Store, monkeypatch) -> None:
    from services.orchestrator.store import repo

    monkeypatch.setattr(repo, "INGEST_BATCH", 2)
    run = await store.create_run(kind="research", name="t", options={})
    pairs = [("A", ""), ("B", ""), ("C", ""), ("a", ""), ("b", "")]
    report = await store.add_items(run.id, rows_from_pairs(pairs))
    assert report.queued == 3
    assert report.skip_messages == ["row 4 (a): duplicate of row 1", "row 5 (b): duplicate of row 2"]


async def test_claims_are_fenced_by_attempt(store: Store) -> None:
    run = await store.create_run(kind="research", name="t", options={})
    await store.add_items(run.id, rows_from_pairs([("A", "a.com"), ("B", "b.com"), ("C", "c.com")]))
    first = await store.claim_items(run.id, "w1", 2, lease_seconds=60)
    assert [(c.company, c.attempt) for c in first] == [("A", 1), ("B", 1)]
    assert [c.company for c in await store.claim_items(run.id, "w2", 5, lease_seconds=60)] == ["C"]
    assert await store.claim_items(run.id, "w3", 5, lease_seconds=60) == []

    # w1 is presumed dead: its items go back to pending and are claimed again (attempt 2).
    assert await store.release_items(run.id, "w1") == 2
    again = await store.claim_items(run.id, "w3", 5, lease_seconds=60)
    assert [(c.company, c.attempt) for c in again] == [("A", 2), ("B", 2)]

    # The stale holder's write-back is rejected; the current one lands, exactly once.
    assert not await store.complete_item(first[0], SEARCH, CLS, truncated=False)
    assert not await store.fail_item(first[1], "late failure")
    assert await store.complete_item(again[0], SEARCH, CLS, truncated=True)
    assert not await store.complete_item(again[0], SEARCH, CLS, truncated=True)
    assert await store.fail_item(again[1], "inference: RESOURCE_EXHAUSTED after 3 attempts: busy")
    items = {i.company: i for i in await store.page_items(run.id)}
    assert (items["A"].status, items["A"].tier, items["A"].truncated) == ("done", "HOT", True)
    assert (items["B"].status, items["B"].error) == ("failed", "inference: RESOURCE_EXHAUSTED after 3 attempts: busy")
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM classifications"))).scalar() == 1


async def test_expired_leases_are_reclaimed(store: Store) -> None:
    run = await store.create_run(kind="research", name="t", options={})
    await store.add_items(run.id, rows_from_pairs([("A", "")]))
    [held] = await store.claim_items(run.id, "dead", 1, lease_seconds=-1)  # already expired
    [taken] = await store.claim_items(run.id, "alive", 1, lease_seconds=60)
    assert (taken.id, taken.attempt) == (held.id, 2)
    assert await store.renew_leases("alive", 60) == 1
    assert not await store.complete_item(held, SEARCH, CLS, truncated=False)
    assert await store.complete_item(taken, SEARCH, CLS, truncated=False)


async def test_ledger_is_idempotent_and_sums_to_the_run_cost(store: Store) -> None:
    run = await store.create_run(kind="research", name="t", options={})
    await store.add_items(run.id, rows_from_pairs([("A", ""), ("B", "")]))
    a, b = await store.claim_items(run.id, "w", 2, lease_seconds=60)
    calls = [
        (a, "tavily", "search", "credits", {"units": 2, "usd": 0.016}),
        (a, "openai", "llm", "tokens", {"units": 1050, "usd": 0.0024, "input_tokens": 1000, "output_tokens": 50}),
        (b, "tavily", "search", "credits", {"units": 1, "usd": 0.008}),
        (b, "openai", "llm", "tokens", {"units": 530, "usd": 0.0012, "input_tokens": 500, "output_tokens": 30}),
    ]
    for item, provider, kind, unit, bill in calls:
        key = f"{run.id}:{item.id}:{provider}:{item.attempt}"
        for _ in range(2):  # a repeated write of the same call is a no-op
            await store.ledger_begin(run_id=run.id, item_id=item.id, provider=provider, kind=kind, key=key,
                                     unit_type=unit)
            await store.ledger_complete(key, **bill)
    # A free call (cache hit) leaves no row; an in-flight one stays pending at 0 USD.
    await store.ledger_begin(run_id=run.id, item_id=a.id, provider="tavily", kind="search", key="free", unit_type="credits")
    await store.ledger_discard("free")
    await store.ledger_begin(run_id=run.id, item_id=b.id, provider="openai", kind="llm", key="inflight", unit_type="tokens")

    rows = await store.ledger_rows(run.id)
    assert len(rows) == 5
    assert sorted(r["status"] for r in rows) == ["completed"] * 4 + ["pending"]
    totals = await store.run_totals(run.id)
    assert totals.cost_usd == pytest.approx(0.016 + 0.0024 + 0.008 + 0.0012, rel=1e-12)
    assert (totals.credits, totals.input_tokens, totals.output_tokens) == (3, 1500, 80)
    per_item = {i.company: i for i in await store.page_items(run.id)}
    assert per_item["A"].cost_usd == pytest.approx(0.0184, rel=1e-12)
    assert (per_item["B"].credits, per_item["B"].tokens) == (1, 530)


async def test_events_are_numbered_per_run_and_paged(store: Store) -> None:
    r1 = await store.create_run(kind="research", name="one", options={})
    r2 = await store.create_run(kind="research", name="two", options={})
    for n in range(5):
        await store.add_event(r1.id, "PROGRESS", f"e{n}")
    await store.add_event(r2.id, "PROGRESS", "other")
    assert [e.seq for e in await store.events_after(r1.id, 0)] == [1, 2, 3, 4, 5]
    assert [e.message for e in await store.events_after(r1.id, 3)] == ["e3", "e4"]
    assert [e.seq for e in await store.events_after(r2.id, 0)] == [1]


async def test_run_status_transitions_are_guarded(store: Store) -> None:
    run = await store.create_run(kind="research", name="t", options={"model": "m"})
    assert await store.set_run_status(run.id, "running", started=True, owner="me")
    assert not await store.set_run_status(run.id, "completed", only_from=("pending",))
    assert await store.set_run_status(run.id, "completed", only_from=("running",), finished=True,
                                      event=("RUN_FINISHED", "ok"))
    got = await store.get_run(run.id)
    assert got is not None and got.status == "completed" and got.finished_at is not None
    assert got.started_at is not None and got.started_at.tzinfo is not None
    assert [r.id for r in await store.list_runs(limit=10, status="completed")] == [run.id]
    assert await store.find_run_ids(run.id[:8]) == [run.id]
    assert await store.find_run_ids("not-an-id!") == []
