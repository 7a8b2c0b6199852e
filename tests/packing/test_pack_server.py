"""CompleteBatch packing mode through a real gRPC server against the sandbox: calls per item count (counted at the
sandbox and in ``llm_calls``), results mapped by id, invalid replies → one retry → one call per item, errors per
item, request validation."""

from __future__ import annotations

import json

import grpc
import httpx
import jsonschema
import pytest
from pack_testkit import CHAT, ITEM_SCHEMA, batch, calls, fields, org

from services.inference.packing import build_spec
from shared.config import Settings
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

ELEMENT = build_spec(Settings(_env_file=None), model="m", instruction="x",
                     item_json_schema=json.dumps(ITEM_SCHEMA)).item_response_schema()


@pytest.mark.parametrize(("n", "expected_calls"), [(0, 0), (1, 1), (20, 1), (21, 2), (150, 8)])
async def test_items_are_answered_twenty_per_call(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, n: int, expected_calls: int
) -> None:
    before = await calls(sandbox_admin)
    r = await stub.CompleteBatch(batch(n), timeout=60)
    assert await calls(sandbox_admin) - before == expected_calls
    assert r.llm_calls == expected_calls and r.cache_hits == 0
    assert [x.id for x in r.results] == [f"item-{i}" for i in range(n)]  # every item, in request order
    for i, x in enumerate(r.results):
        value = fields(x)
        jsonschema.validate(value, ELEMENT)
        # Mapped by id: the sandbox derives each answer from that item's own input.
        assert value["variations"][0] == org(i)["name"] and value["canonical"] == f"Org {i}"
        assert not x.response.cached and x.response.provider == "openai"
    if n:
        assert r.cost_usd > 0 and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
        assert r.cost_usd == pytest.approx(sum(x.response.cost_usd for x in r.results))
        assert r.usage.input_tokens == sum(x.response.usage.input_tokens for x in r.results)


async def test_the_request_sets_the_items_per_call(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await calls(sandbox_admin)
    r = await stub.CompleteBatch(batch(150, max_items_per_call=50), timeout=60)
    assert r.llm_calls == 3 == await calls(sandbox_admin) - before
    assert all(x.WhichOneof("outcome") == "response" for x in r.results)


@pytest.mark.parametrize("fault", ["pack_wrong_count", "pack_missing_id", "pack_duplicate_id", "pack_not_array"])
async def test_an_invalid_pack_is_retried_once_then_each_item_is_asked_alone(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, fault: str
) -> None:
    # The header corrupts every packed answer of this request; single-item answers are left intact.
    before = await calls(sandbox_admin)
    faults_before = (await sandbox_admin.get("/_sandbox/stats")).json()["endpoints"][CHAT]["faults"].get(fault, 0)
    r = await stub.CompleteBatch(batch(5), metadata=(("x-sandbox-fault", fault),), timeout=60)
    assert r.llm_calls == 1 + 1 + 5 == await calls(sandbox_admin) - before  # pack, its retry, 5 single calls
    stats = (await sandbox_admin.get("/_sandbox/stats")).json()["endpoints"][CHAT]
    assert stats["faults"][fault] - faults_before == 2
    assert [x.id for x in r.results] == [f"item-{i}" for i in range(5)]
    for i, x in enumerate(r.results):
        assert fields(x)["variations"][0] == org(i)["name"]
    # The two invalid answers were billed too.
    assert r.cost_usd > sum(x.response.cost_usd for x in r.results)


async def test_a_pack_whose_retry_is_valid_needs_no_fallback(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, sandbox_knobs
) -> None:
    await sandbox_knobs({"pack_fault": "pack_missing_id", "pack_fault_times": 1})  # only the next pack
    before = await calls(sandbox_admin)
    r = await stub.CompleteBatch(batch(20), timeout=60)
    assert r.llm_calls == 2 == await calls(sandbox_admin) - before
    assert all(x.WhichOneof("outcome") == "response" for x in r.results)
    assert (await sandbox_admin.get("/_sandbox/config")).json()["pack_fault_times"] == 0


async def test_items_that_still_fail_come_back_with_their_error(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await calls(sandbox_admin)
    r = await stub.CompleteBatch(batch(3), metadata=(("x-sandbox-fault", "500"),), timeout=60)
    assert r.llm_calls == 1 + 1 + 3 == await calls(sandbox_admin) - before
    assert [x.id for x in r.results] == ["item-0", "item-1", "item-2"]  # never dropped
    for x in r.results:
        assert x.WhichOneof("outcome") == "error"
        assert x.error.code == "UNAVAILABLE" and x.error.provider == "openai" and x.error.message
    assert r.cost_usd == 0 and r.cache_hits == 0


async def test_a_bad_input_fails_its_item_only(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    req = batch(3)
    req.items[1].input_json = "{not json"
    before = await calls(sandbox_admin)
    r = await stub.CompleteBatch(req, timeout=60)
    assert r.llm_calls == 1 == await calls(sandbox_admin) - before
    outcomes = [x.WhichOneof("outcome") for x in r.results]
    assert outcomes == ["response", "error", "response"]
    assert r.results[1].error.code == "INVALID_ARGUMENT" and "items[1].input_json" in r.results[1].error.message


async def test_repeated_inputs_in_one_request_are_asked_once(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    req = batch(2)
    for i in range(3):
        req.items.append(pb.BatchItem(id=f"copy-{i}", input_json=json.dumps(org(0))))
    r = await stub.CompleteBatch(req, timeout=60)
    assert r.llm_calls == 1 and r.cache_hits == 3
    first = fields(r.results[0])
    assert all(fields(x) == first and x.response.cached for x in r.results[2:])


async def test_an_anthropic_model_packs_through_its_own_provider(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await calls(sandbox_admin, "anthropic.messages")
    r = await stub.CompleteBatch(batch(21, model="claude-haiku-4-5"), timeout=60)
    assert r.llm_calls == 2 == await calls(sandbox_admin, "anthropic.messages") - before
    assert all(fields(x)["canonical"] == f"Org {i}" for i, x in enumerate(r.results))
    assert r.results[0].response.provider == "anthropic"


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (batch(2, model="chatgpt"), "model"),  # a scraper: nothing to pack into
        (batch(2, schema={"type": "object", "properties": {"id": {"type": "string"}}}), "item_json_schema"),
        (pb.CompleteBatchRequest(model="gpt-4.1", instruction="x", items=[pb.BatchItem(id="a", input_json="{}")],
                                 item_json_schema="not json"), "item_json_schema"),
        (pb.CompleteBatchRequest(model="gpt-4.1", instruction="x", item_json_schema=json.dumps(ITEM_SCHEMA),
                                 items=[pb.BatchItem(id="a", input_json="{}"), pb.BatchItem(id="a", input_json="{}")]),
         "items[1].id"),
    ],
)
async def test_a_bad_request_is_invalid_argument_naming_the_field(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient, req: pb.CompleteBatchRequest, field: str
) -> None:
    from shared.errors import from_rpc_error

    before = await calls(sandbox_admin)
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await stub.CompleteBatch(req, timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in from_rpc_error(ei.value).violations]
    assert await calls(sandbox_admin) == before
