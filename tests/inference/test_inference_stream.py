"""CompleteStream / CompleteBatch / CancelBatch through a real gRPC server, against the sandbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from services.inference.providers.brightdata import CHATGPT_DATASET_ID, PERPLEXITY_DATASET_ID
from services.inference.server import build
from shared.config import Settings
from shared.grpc_server import serving
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

_END = object()


def _item(item_id: str, model: str = "chatgpt", location: str = "US", content: str = "") -> pb.CompleteStreamRequest:
    content = content or f"Which GPU clouds are best for fine-tuning? ({item_id})"
    return pb.CompleteStreamRequest(
        item=pb.StreamItem(
            id=item_id,
            request=pb.CompleteRequest(model=model, location=location,
                                       messages=[pb.Message(role="user", content=content)]),
        )
    )


async def _requests(queue: asyncio.Queue[Any]) -> AsyncIterator[pb.CompleteStreamRequest]:
    """Requests fed from a queue, so a test decides when the client half-closes."""
    while (msg := await queue.get()) is not _END:
        yield msg


async def _all(stub: pb_grpc.InferenceServiceStub, msgs: list[pb.CompleteStreamRequest],
               deadline_s: float = 60) -> list[pb.CompleteStreamResponse]:
    async def gen() -> AsyncIterator[pb.CompleteStreamRequest]:
        for m in msgs:
            yield m

    return [ev async for ev in stub.CompleteStream(gen(), timeout=deadline_s)]


async def _triggers(admin: httpx.AsyncClient, dataset: str = CHATGPT_DATASET_ID) -> int:
    return int((await admin.get("/_sandbox/stats")).json()["brightdata"]["triggers"].get(dataset, 0))


def _results(events: list[pb.CompleteStreamResponse]) -> dict[str, pb.ItemResult]:
    return {e.result.id: e.result for e in events if e.WhichOneof("kind") == "result"}


def _batches(events: list[pb.CompleteStreamResponse]) -> list[pb.BatchSubmitted]:
    return [e.batch_submitted for e in events if e.WhichOneof("kind") == "batch_submitted"]


async def test_twenty_chatgpt_questions_make_one_snapshot(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await _triggers(sandbox_admin)
    events = await _all(stub, [_item(f"q{i}") for i in range(20)])
    assert await _triggers(sandbox_admin) - before == 1
    (batch,) = _batches(events)
    assert list(batch.member_ids) == [f"q{i}" for i in range(20)]
    assert batch.provider == "brightdata_chatgpt" and batch.model == "chatgpt" and batch.location == "US"
    # The batch is announced before any of its answers.
    assert events[0].WhichOneof("kind") == "batch_submitted"
    results = _results(events)
    assert set(results) == {f"q{i}" for i in range(20)}
    for r in results.values():
        assert r.WhichOneof("outcome") == "response"
        assert r.response.snapshot_id == batch.snapshot_id
        assert r.response.markdown and r.response.citations


async def test_mixed_models_and_locations_are_split(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before_c = await _triggers(sandbox_admin)
    before_p = await _triggers(sandbox_admin, PERPLEXITY_DATASET_ID)
    msgs = []
    for i in range(5):
        msgs += [_item(f"c-us-{i}", "chatgpt", "US"), _item(f"c-gb-{i}", "ChatGPT", "GB"),
                 _item(f"p-us-{i}", "perplexity", "US"), _item(f"g-{i}", "gpt-4.1-mini", "US")]
    events = await _all(stub, msgs)
    batches = {(b.provider, b.location): sorted(b.member_ids) for b in _batches(events)}
    assert batches == {
        ("brightdata_chatgpt", "US"): sorted(f"c-us-{i}" for i in range(5)),
        ("brightdata_chatgpt", "GB"): sorted(f"c-gb-{i}" for i in range(5)),
        ("brightdata_perplexity", "US"): sorted(f"p-us-{i}" for i in range(5)),
    }
    assert await _triggers(sandbox_admin) - before_c == 2
    assert await _triggers(sandbox_admin, PERPLEXITY_DATASET_ID) - before_p == 1
    results = _results(events)
    assert len(results) == 20
    assert {results[f"g-{i}"].response.provider for i in range(5)} == {"openai"}
    assert {results[f"p-us-{i}"].response.provider for i in range(5)} == {"brightdata_perplexity"}


async def test_linger_flushes_a_partial_batch_while_the_stream_stays_open(
    stub: pb_grpc.InferenceServiceStub,
) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    call = stub.CompleteStream(_requests(queue), timeout=60)
    for i in range(3):
        await queue.put(_item(f"l{i}"))
    started = time.monotonic()
    first = await asyncio.wait_for(call.read(), timeout=10)  # the input is still open: only the linger can flush
    assert first.WhichOneof("kind") == "batch_submitted"
    assert list(first.batch_submitted.member_ids) == ["l0", "l1", "l2"]
    assert time.monotonic() - started < 5
    seen = set()
    while len(seen) < 3:
        ev = await asyncio.wait_for(call.read(), timeout=20)
        assert ev.WhichOneof("kind") == "result" and ev.result.WhichOneof("outcome") == "response"
        seen.add(ev.result.id)
    await queue.put(_END)
    assert await call.read() == grpc.aio.EOF


async def test_resume_batch_polls_the_stored_snapshot_without_triggering(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any
) -> None:
    await sandbox_knobs({"brightdata_duration_s": 1.5})
    queue: asyncio.Queue[Any] = asyncio.Queue()
    call = stub.CompleteStream(_requests(queue), timeout=60)
    for i in range(4):
        await queue.put(_item(f"r{i}"))
    await queue.put(_END)
    submitted = (await asyncio.wait_for(call.read(), timeout=10)).batch_submitted
    call.cancel()  # the orchestrator "crashes" with the snapshot in flight
    after_first = await _triggers(sandbox_admin)

    resume = pb.CompleteStreamRequest(resume=pb.ResumeBatch(
        snapshot_id=submitted.snapshot_id, model="chatgpt", location="US", member_ids=submitted.member_ids))
    events = await _all(stub, [resume])
    assert await _triggers(sandbox_admin) == after_first
    assert not _batches(events)
    results = _results(events)
    assert set(results) == {"r0", "r1", "r2", "r3"}
    assert all(r.response.snapshot_id == submitted.snapshot_id for r in results.values())


async def test_cancel_batch_fails_its_items_as_cancelled(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any
) -> None:
    await sandbox_knobs({"brightdata_duration_s": 30})
    queue: asyncio.Queue[Any] = asyncio.Queue()
    call = stub.CompleteStream(_requests(queue), timeout=60)
    await queue.put(_item("x0"))
    await queue.put(_item("x1"))
    await queue.put(_END)
    submitted = (await asyncio.wait_for(call.read(), timeout=10)).batch_submitted
    cancels = (await sandbox_admin.get("/_sandbox/stats")).json()["brightdata"]["cancels"]
    r = await stub.CancelBatch(pb.CancelBatchRequest(snapshot_id=submitted.snapshot_id,
                                                     provider="brightdata_chatgpt"), timeout=10)
    assert r.cancelled
    events = []
    while (ev := await asyncio.wait_for(call.read(), timeout=20)) != grpc.aio.EOF:
        events.append(ev)
    results = _results(events)
    assert {k: v.error.code for k, v in results.items()} == {"x0": "CANCELLED", "x1": "CANCELLED"}
    assert (await sandbox_admin.get("/_sandbox/stats")).json()["brightdata"]["cancels"] == cancels + 1


async def test_cancel_batch_validates(stub: pb_grpc.InferenceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.CancelBatch(pb.CancelBatchRequest(snapshot_id=""), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.CancelBatch(pb.CancelBatchRequest(snapshot_id="s_x", provider="openai"), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.CancelBatch(pb.CancelBatchRequest(snapshot_id="s_doesnotexist0000"), timeout=10)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_items_fail_alone(stub: pb_grpc.InferenceServiceStub) -> None:
    msgs = [
        _item("ok", "gpt-4.1-mini"),
        _item("unknown-model", "mistral-large"),
        pb.CompleteStreamRequest(item=pb.StreamItem(id="no-messages", request=pb.CompleteRequest(model="chatgpt"))),
        _item("too-long", "chatgpt", content="x" * 5000),
        _item("claude", "claude-sonnet-5"),
    ]
    results = _results(await _all(stub, msgs))
    assert results["ok"].WhichOneof("outcome") == "response"
    assert results["unknown-model"].error.code == "INVALID_ARGUMENT"
    assert results["no-messages"].error.code == "INVALID_ARGUMENT"
    assert results["too-long"].error.code == "INVALID_ARGUMENT"
    assert results["claude"].response.provider == "anthropic"


async def test_complete_on_a_scraper_model(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.Complete(pb.CompleteRequest(model="chatgpt", location="GB", messages=[
        pb.Message(role="user", content="Best places to rent GPUs for inference?")]), timeout=60)
    assert r.provider == "brightdata_chatgpt" and r.snapshot_id and r.markdown
    assert r.cost_usd > 0


async def test_complete_batch_explicit(stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient) -> None:
    before = await _triggers(sandbox_admin)
    items = [pb.BatchItem(id=f"b{i}", request=pb.CompleteRequest(
        messages=[pb.Message(role="user", content=f"Top GPU clouds for startups? ({i})")])) for i in range(6)]
    items.append(pb.BatchItem(id="api", request=pb.CompleteRequest(
        model="gpt-4.1-mini", messages=[pb.Message(role="user", content="Name three GPU clouds.")])))
    r = await stub.CompleteBatch(pb.CompleteBatchRequest(model="chatgpt", location="US", items=items), timeout=60)
    assert [x.id for x in r.results] == [f"b{i}" for i in range(6)] + ["api"]
    assert all(x.WhichOneof("outcome") == "response" for x in r.results)
    assert await _triggers(sandbox_admin) - before == 1
    assert r.llm_calls == 2  # one snapshot + one API call
    assert r.cost_usd == pytest.approx(sum(x.response.cost_usd for x in r.results))
    assert r.usage.input_tokens == r.results[-1].response.usage.input_tokens


async def test_complete_batch_packing_mode_needs_an_item_schema(stub: pb_grpc.InferenceServiceStub) -> None:
    # Packing mode itself is tested in tests/packing; here: it is routed there and validates its request.
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.CompleteBatch(pb.CompleteBatchRequest(
            model="gpt-4.1", instruction="classify", items=[pb.BatchItem(id="a", input_json="{}")]), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "item_json_schema" in (ei.value.details() or "")


async def test_a_cancelled_stream_gives_its_in_flight_slot_back(
    settings: Settings, sandbox_knobs: Any
) -> None:
    # One snapshot in flight per dataset: if the first stream's slot leaked, the second could never trigger.
    await sandbox_knobs({"brightdata_duration_s": 30})
    one_slot = settings.model_copy(update={"brightdata_max_in_flight": 1})
    async with serving("inference", build, one_slot) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        snapshots = []
        for attempt in range(2):
            queue: asyncio.Queue[Any] = asyncio.Queue()
            call = stub.CompleteStream(_requests(queue), timeout=60)
            await queue.put(_item(f"s{attempt}"))
            await queue.put(_END)
            first = await asyncio.wait_for(call.read(), timeout=10)
            snapshots.append(first.batch_submitted.snapshot_id)
            call.cancel()
        for snapshot_id in snapshots:  # do not leave 30-second snapshots running in the shared sandbox
            await stub.CancelBatch(pb.CancelBatchRequest(snapshot_id=snapshot_id), timeout=10)
    assert len(set(snapshots)) == 2
