"""The response cache on the Bright Data batch path (CompleteStream / explicit CompleteBatch) through a real gRPC
server against the sandbox: a repeated chatgpt question triggers no snapshot and costs $0, no_cache triggers again,
error records are never stored, and the answers of a snapshot re-attached with ResumeBatch are stored (resume still
triggers nothing). Triggers are counted at the sandbox (``/_sandbox/stats``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.inference.providers.brightdata import CHATGPT_DATASET_ID
from services.inference.store.models import response_cache
from shared.config import Settings
from shared.db import create_engine
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

_END = object()


def _req(n: int, *, model: str = "chatgpt", location: str = "US", no_cache: bool = False) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model, location=location, web_search=True, no_cache=no_cache,
        messages=[pb.Message(role="user", content=f"Which GPU clouds suit a seed-stage lab? (cache-bd {n})")],
    )


def _item(item_id: str, req: pb.CompleteRequest) -> pb.CompleteStreamRequest:
    return pb.CompleteStreamRequest(item=pb.StreamItem(id=item_id, request=req))


async def _stream(stub: pb_grpc.InferenceServiceStub, msgs: list[pb.CompleteStreamRequest]
                  ) -> list[pb.CompleteStreamResponse]:
    async def gen() -> AsyncIterator[pb.CompleteStreamRequest]:
        for m in msgs:
            yield m

    return [ev async for ev in stub.CompleteStream(gen(), timeout=60)]


def _results(events: list[pb.CompleteStreamResponse]) -> dict[str, pb.ItemResult]:
    return {e.result.id: e.result for e in events if e.WhichOneof("kind") == "result"}


def _batches(events: list[pb.CompleteStreamResponse]) -> list[pb.BatchSubmitted]:
    return [e.batch_submitted for e in events if e.WhichOneof("kind") == "batch_submitted"]


async def _triggers(admin: httpx.AsyncClient) -> int:
    return int((await admin.get("/_sandbox/stats")).json()["brightdata"]["triggers"].get(CHATGPT_DATASET_ID, 0))


async def _cache_rows(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(select(response_cache.c.provider, response_cache.c.model)))
    finally:
        await engine.dispose()


async def test_cache_bd_a_repeated_batch_is_all_hits_without_a_trigger(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, settings: Settings
) -> None:
    msgs = [_item(f"q{i}", _req(i)) for i in range(5)]
    t0 = await _triggers(sandbox_admin)
    first = await _stream(stub, msgs)
    assert await _triggers(sandbox_admin) - t0 == 1 and len(_batches(first)) == 1
    r1 = _results(first)
    assert len(r1) == 5 and all(r.WhichOneof("outcome") == "response" for r in r1.values())
    assert all(not r.response.cached and r.response.cost_usd == pytest.approx(settings.brightdata_record_usd)
               for r in r1.values())
    rows = await _cache_rows(settings.database_url)
    assert len(rows) == 5 and {p for p, _ in rows} == {"brightdata_chatgpt"}

    t1 = await _triggers(sandbox_admin)
    again = await _stream(stub, msgs)
    assert await _triggers(sandbox_admin) == t1  # nothing triggered
    assert not _batches(again)
    r2 = _results(again)
    assert set(r2) == set(r1)
    for item_id, r in r2.items():
        assert r.response.cached and r.response.cost_usd == 0
        assert r.response.markdown == r1[item_id].response.markdown
        assert [c.url for c in r.response.citations] == [c.url for c in r1[item_id].response.citations]

    # Explicit CompleteBatch: the same questions are hits there too, counted, and no provider call is made.
    resp = await stub.CompleteBatch(pb.CompleteBatchRequest(
        items=[pb.BatchItem(id=f"b{i}", request=_req(i)) for i in range(5)]), timeout=60)
    assert resp.cache_hits == 5 and resp.llm_calls == 0 and resp.cost_usd == 0
    assert await _triggers(sandbox_admin) == t1

    # A Complete on the scraper model shares the key: a hit as well.
    single = await stub.Complete(_req(0), timeout=60)
    assert single.cached and single.cost_usd == 0 and await _triggers(sandbox_admin) == t1


async def test_cache_bd_no_cache_triggers_again_and_a_changed_location_misses(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    await _stream(stub, [_item(f"n{i}", _req(100 + i)) for i in range(3)])
    t0 = await _triggers(sandbox_admin)
    fresh = _results(await _stream(stub, [_item(f"n{i}", _req(100 + i, no_cache=True)) for i in range(3)]))
    assert await _triggers(sandbox_admin) - t0 == 1
    assert all(not r.response.cached and r.response.cost_usd > 0 for r in fresh.values())
    gb = _results(await _stream(stub, [_item("gb", _req(100, location="GB"))]))
    assert await _triggers(sandbox_admin) - t0 == 2 and not gb["gb"].response.cached
    mixed = _results(await _stream(stub, [_item("hit", _req(101)), _item("miss", _req(199))]))
    assert await _triggers(sandbox_admin) - t0 == 3  # one snapshot, for the miss only
    assert mixed["hit"].response.cached and not mixed["miss"].response.cached


async def test_cache_bd_error_records_are_never_stored(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any, settings: Settings
) -> None:
    await sandbox_knobs({"brightdata_error_rate": 1.0})
    msgs = [_item(f"e{i}", _req(200 + i)) for i in range(3)]
    failed = _results(await _stream(stub, msgs))
    assert all(r.WhichOneof("outcome") == "error" for r in failed.values())
    assert await _cache_rows(settings.database_url) == []
    await sandbox_knobs({"brightdata_error_rate": 0.0})
    t0 = await _triggers(sandbox_admin)
    ok = _results(await _stream(stub, msgs))
    assert await _triggers(sandbox_admin) - t0 == 1  # asked again: the errors were not cached
    assert all(r.WhichOneof("outcome") == "response" and not r.response.cached for r in ok.values())


async def test_cache_bd_a_resumed_snapshot_is_stored_and_triggers_nothing(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any
) -> None:
    await sandbox_knobs({"brightdata_duration_s": 1.0})
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.CompleteStreamRequest]:
        while (msg := await queue.get()) is not _END:
            yield msg

    t0 = await _triggers(sandbox_admin)
    call = stub.CompleteStream(requests(), timeout=60)
    for i in range(4):
        await queue.put(_item(f"r{i}", _req(300 + i)))
    await queue.put(_END)
    submitted = (await asyncio.wait_for(call.read(), timeout=10)).batch_submitted
    call.cancel()  # the caller "crashes" with the snapshot in flight
    assert await _triggers(sandbox_admin) - t0 == 1

    resumed = _results(await _stream(stub, [pb.CompleteStreamRequest(resume=pb.ResumeBatch(
        snapshot_id=submitted.snapshot_id, model="chatgpt", location="US", member_ids=submitted.member_ids))]))
    assert await _triggers(sandbox_admin) - t0 == 1  # re-polled, never triggered again
    assert set(resumed) == {"r0", "r1", "r2", "r3"}
    assert all(r.response.snapshot_id == submitted.snapshot_id for r in resumed.values())

    again = _results(await _stream(stub, [_item(f"r{i}", _req(300 + i)) for i in range(4)]))
    assert await _triggers(sandbox_admin) - t0 == 1  # the resumed answers were stored
    assert all(r.response.cached and r.response.cost_usd == 0 for r in again.values())
