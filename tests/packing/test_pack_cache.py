"""The response cache (services/inference/cache.py): hits and misses of Complete, CompleteStream and packed
CompleteBatch counted at the sandbox, $0 hits, no_cache, errors never cached, single-flight, TTL, the database
table on SQLite and PostgreSQL, and the migration that creates it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from alembic.script import ScriptDirectory
from pack_testkit import CHAT, batch, calls, fields
from sqlalchemy import func, select, text

from services.inference.cache import ResponseCache, request_key
from services.inference.core import build_request
from services.inference.providers import Citation, CompletionResult
from services.inference.server import build
from services.inference.store import CHAIN, VERSION_TABLE
from services.inference.store.models import response_cache
from shared.config import Settings
from shared.db import create_engine
from shared.grpc_server import serving
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

SCHEMA = {"type": "object", "properties": {"tier": {"type": "string", "enum": ["HOT", "COLD"]}},
          "required": ["tier"], "additionalProperties": False}


def complete(content: str = "Classify Lumen Robotics: https://lumen.example/gpus 4,000 H100 GPUs.", **kw: Any
             ) -> pb.CompleteRequest:
    return pb.CompleteRequest(model="gpt-4.1-mini", messages=[pb.Message(role="user", content=content)], **kw)


async def rows(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(select(response_cache)))
    finally:
        await engine.dispose()


# --- Complete ---------------------------------------------------------------------------------------------------


async def test_a_repeated_complete_is_a_free_hit(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, pack_settings: Settings
) -> None:
    before = await calls(sandbox_admin)
    first = await stub.Complete(complete(json_schema=json.dumps(SCHEMA)), timeout=30)
    assert await calls(sandbox_admin) - before == 1
    assert not first.cached and first.cost_usd > 0 and first.usage.input_tokens > 0
    second = await stub.Complete(complete(json_schema=json.dumps(SCHEMA)), timeout=30)
    assert await calls(sandbox_admin) - before == 1  # no new provider call
    assert second.cached and second.cost_usd == 0
    assert second.usage.input_tokens == second.usage.output_tokens == 0
    assert (second.text, second.json, second.model, second.provider) == (first.text, first.json, first.model,
                                                                          first.provider)
    stored = await rows(pack_settings.database_url)
    assert len(stored) == 1
    row = stored[0]
    assert row.provider == "openai" and row.model == "gpt-4.1-mini" and row.expires_at is None
    assert len(row.key) == 64 and json.loads(row.response)["json_text"] == first.json


async def test_anything_that_changes_the_request_is_a_miss(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    variants = [
        complete(),
        complete("Another question about Lumen Robotics."),
        complete(json_schema=json.dumps(SCHEMA)),
        complete(max_output_tokens=300),
        complete(location="DE"),
        pb.CompleteRequest(model="gpt-4.1", messages=[pb.Message(role="user", content=complete().messages[0].content)]),
        pb.CompleteRequest(model="gpt-4.1-mini", messages=[pb.Message(role="system", content="Be brief."),
                                                             *complete().messages]),
    ]
    before = await calls(sandbox_admin)
    for v in variants:
        assert not (await stub.Complete(v, timeout=30)).cached
    assert await calls(sandbox_admin) - before == len(variants)
    for v in variants:  # and each of them is now a hit
        assert (await stub.Complete(v, timeout=30)).cached
    assert await calls(sandbox_admin) - before == len(variants)


async def test_no_cache_asks_again_and_refreshes_the_entry(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, pack_settings: Settings
) -> None:
    await stub.Complete(complete(), timeout=30)
    created = (await rows(pack_settings.database_url))[0].created_at
    before = await calls(sandbox_admin)
    fresh = await stub.Complete(complete(no_cache=True), timeout=30)
    assert await calls(sandbox_admin) - before == 1
    assert not fresh.cached and fresh.cost_usd > 0
    refreshed = await rows(pack_settings.database_url)
    assert len(refreshed) == 1 and refreshed[0].created_at > created
    assert (await stub.Complete(complete(), timeout=30)).cached


async def test_errors_are_never_cached(stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient) -> None:
    before = await calls(sandbox_admin)
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Complete(complete(), metadata=(("x-sandbox-fault", "503"),), timeout=30)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await calls(sandbox_admin) - before == 2  # the second identical request reached the provider again


async def test_concurrent_identical_misses_make_one_call(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, sandbox_knobs
) -> None:
    await sandbox_knobs({"endpoints": {CHAT: {"latency_s": 0.3}}})  # long enough for the calls to overlap
    before = await calls(sandbox_admin)
    answers = await asyncio.gather(*(stub.Complete(complete(), timeout=30) for _ in range(4)))
    assert await calls(sandbox_admin) - before == 1  # single-flight: one paid call, three shared answers
    assert sorted(a.cached for a in answers) == [False, True, True, True]
    assert sum(a.cost_usd for a in answers) == max(a.cost_usd for a in answers) > 0
    assert len({a.text for a in answers}) == 1


async def test_stream_items_for_api_models_are_cached(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    async def stream(ids: list[str]) -> dict[str, pb.ItemResult]:
        async def gen() -> AsyncIterator[pb.CompleteStreamRequest]:
            for i in ids:
                yield pb.CompleteStreamRequest(item=pb.StreamItem(id=i, request=complete(f"question {i[-1]}")))

        return {ev.result.id: ev.result async for ev in stub.CompleteStream(gen(), timeout=30)
                if ev.WhichOneof("kind") == "result"}

    before = await calls(sandbox_admin)
    first = await stream(["a1", "b2"])
    assert await calls(sandbox_admin) - before == 2 and not any(r.response.cached for r in first.values())
    again = await stream(["x1", "y2", "z3"])
    assert await calls(sandbox_admin) - before == 3  # only question 3 is new
    assert again["x1"].response.cached and again["y2"].response.cached and not again["z3"].response.cached
    assert again["x1"].response.text == first["a1"].response.text and again["x1"].response.cost_usd == 0


async def test_explicit_batch_counts_its_hits(stub: pb_grpc.InferenceServiceStub) -> None:
    req = pb.CompleteBatchRequest(items=[pb.BatchItem(id=f"i{i}", request=complete(f"q{i}")) for i in range(3)])
    first = await stub.CompleteBatch(req, timeout=30)
    assert first.llm_calls == 3 and first.cache_hits == 0
    again = await stub.CompleteBatch(req, timeout=30)
    assert again.llm_calls == 0 and again.cache_hits == 3 and again.cost_usd == 0


# --- packed CompleteBatch ---------------------------------------------------------------------------------------


async def test_a_rerun_of_a_packed_batch_is_all_hits_at_zero_cost(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await calls(sandbox_admin)
    first = await stub.CompleteBatch(batch(150), timeout=60)
    assert first.llm_calls == 8 and first.cost_usd > 0
    again = await stub.CompleteBatch(batch(150), timeout=60)
    assert await calls(sandbox_admin) - before == 8  # the re-run made no call
    assert again.llm_calls == 0 and again.cache_hits == 150 and again.cost_usd == 0
    assert again.usage.input_tokens == again.usage.output_tokens == 0
    assert all(x.response.cached and x.response.cost_usd == 0 for x in again.results)
    assert [fields(x) for x in again.results] == [fields(x) for x in first.results]


async def test_packed_items_hit_whatever_pack_they_land_in(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    await stub.CompleteBatch(batch(40), timeout=60)
    before = await calls(sandbox_admin)
    # Shifted by 5 (so every pack boundary moves), reversed, ids renamed, plus 5 new items.
    req = batch(45, start=5)
    items = list(req.items)[::-1]
    del req.items[:]
    req.items.extend(pb.BatchItem(id=f"renamed-{it.id}", input_json=it.input_json) for it in items)
    r = await stub.CompleteBatch(req, timeout=60)
    assert r.cache_hits == 35 and r.llm_calls == 1 == await calls(sandbox_admin) - before  # only the 10 new ones
    assert sum(not x.response.cached for x in r.results) == 10


async def test_no_cache_repacks_everything(stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient) -> None:
    await stub.CompleteBatch(batch(21), timeout=60)
    before = await calls(sandbox_admin)
    r = await stub.CompleteBatch(batch(21, no_cache=True), timeout=60)
    assert r.llm_calls == 2 == await calls(sandbox_admin) - before and r.cache_hits == 0


async def test_fallback_answers_are_cached_too(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    fault = (("x-sandbox-fault", "pack_wrong_count"),)
    first = await stub.CompleteBatch(batch(4), metadata=fault, timeout=60)
    assert first.llm_calls == 2 + 4
    again = await stub.CompleteBatch(batch(4), metadata=fault, timeout=60)
    assert again.llm_calls == 0 and again.cache_hits == 4


# --- the store --------------------------------------------------------------------------------------------------


async def _cache_roundtrip(url: str) -> None:
    engine = create_engine(url)
    now = [1_000_000.0]
    try:
        await CHAIN.upgrade(engine)
        cache = ResponseCache(engine, ttl_seconds=60, clock=lambda: now[0])
        r = CompletionResult(text="hi", provider="openai", model="gpt-4.1", json_text="", input_tokens=5,
                             output_tokens=2, cost_usd=0.01, citations=[Citation("https://a.example", "A")])
        await cache.put("k" * 64, "openai", "gpt-4.1", r)
        hit = await cache.get("k" * 64)
        assert hit == r  # every field back, citations included
        now[0] += 61
        assert await cache.get("k" * 64) is None  # expired
        await cache.put("k" * 64, "openai", "gpt-4.1", r)  # a fresh answer replaces the expired row
        assert await cache.get("k" * 64) == r
        assert await cache.get_many(["nope", "k" * 64]) == {"k" * 64: r}
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(response_cache))).scalar() == 1
        assert cache.stats.errors == 0 and cache.stats.stores == 2
    finally:
        await engine.dispose()


async def test_entries_expire_after_the_ttl_on_sqlite(sqlite_url: str) -> None:
    await _cache_roundtrip(sqlite_url)


@pytest.mark.postgres
async def test_entries_expire_after_the_ttl_on_postgres(pg_url: str) -> None:
    await _cache_roundtrip(pg_url)


@pytest.mark.postgres
async def test_the_service_caches_in_postgres(pg_url: str, pack_settings: Settings, sandbox_url: str) -> None:
    settings = pack_settings.model_copy(update={"database_url": pg_url})
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as admin, \
            serving("inference", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        before = await calls(admin)
        assert not (await stub.Complete(complete(), timeout=30)).cached
        assert (await stub.Complete(complete(), timeout=30)).cached
        first = await stub.CompleteBatch(batch(21), timeout=60)
        again = await stub.CompleteBatch(batch(21), timeout=60)
        assert (first.llm_calls, again.llm_calls, again.cache_hits, again.cost_usd) == (2, 0, 21, 0)
        assert await calls(admin) - before == 3
    assert len(await rows(pg_url)) == 1 + 21


async def test_a_database_at_an_unknown_cache_revision_serves_without_cache(
    pack_settings: Settings, sandbox_url: str
) -> None:
    engine = create_engine(pack_settings.database_url)
    try:
        await CHAIN.upgrade(engine)
        async with engine.begin() as conn:  # as if newer code had migrated the cache
            await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'i9999_future'"))
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as admin, \
            serving("inference", build, pack_settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        before = await calls(admin)
        answers = [await stub.Complete(complete(), timeout=30) for _ in range(2)]
        assert not any(a.cached for a in answers) and await calls(admin) - before == 2


async def test_the_cache_can_be_switched_off(pack_settings: Settings, sandbox_url: str) -> None:
    settings = pack_settings.model_copy(update={"response_cache_enabled": False})
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as admin, \
            serving("inference", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        before = await calls(admin)
        for _ in range(2):
            r = await stub.CompleteBatch(batch(20), timeout=60)
            assert r.llm_calls == 1 and r.cache_hits == 0
        assert await calls(admin) - before == 2


def test_the_migrations_have_one_head_and_it_creates_the_cache_table() -> None:
    scripts = ScriptDirectory.from_config(CHAIN.config())
    assert len(scripts.get_heads()) == 1, f"several Alembic heads: {scripts.get_heads()} — re-point down_revision"
    revisions = {s.revision for s in scripts.walk_revisions()}
    assert "i0001_response_cache" in revisions and CHAIN.head_revision() == scripts.get_current_head()


async def test_the_migration_creates_and_drops_the_table(sqlite_url: str) -> None:
    from alembic import command

    engine = create_engine(sqlite_url)
    try:
        await CHAIN.upgrade(engine, "i0001_response_cache")
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
        assert "response_cache" in names
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(CHAIN.config(c), "base"))
            assert (await conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}"))).scalar() == 0
            names = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
        assert "response_cache" not in names
    finally:
        await engine.dispose()


def test_request_keys_are_content_hashes() -> None:
    s = Settings(_env_file=None)
    a = build_request(model="gpt-4.1", messages=[("user", "hi")], json_schema=json.dumps(SCHEMA))
    same = build_request(model="gpt-4.1", messages=[("user", "hi")],
                         json_schema=json.dumps(SCHEMA, indent=2, sort_keys=True), no_cache=True)
    assert request_key("openai", a, s) == request_key("openai", same, s)  # canonical JSON; no_cache is no part
    default_tokens = build_request(model="gpt-4.1", messages=[("user", "hi")], json_schema=json.dumps(SCHEMA),
                                   max_output_tokens=s.max_output_tokens)
    assert request_key("openai", a, s) == request_key("openai", default_tokens, s)  # the effective limit
    for other in (
        build_request(model="gpt-4.1", messages=[("user", "hi")]),
        build_request(model="gpt-4.1", messages=[("user", "hi")], json_schema=json.dumps(SCHEMA), web_search=True),
        build_request(model="gpt-4.1", messages=[("user", "hi")], json_schema=json.dumps(SCHEMA), location="FR"),
        build_request(model="gpt-4.1", messages=[("user", "hi")], json_schema=json.dumps(SCHEMA),
                      extra_headers={"X-Sandbox-Fault": "500"}),
    ):
        assert request_key("openai", other, s) != request_key("openai", a, s)
    assert request_key("perplexity", a, s) != request_key("openai", a, s)
