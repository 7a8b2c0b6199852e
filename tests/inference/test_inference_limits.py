"""Request limits and hostile input on InferenceService (README "Request limits", inference.proto), through real
servers on loopback ports against the sandbox: over a limit → INVALID_ARGUMENT stating the limit, the field in
google.rpc.BadRequest, a bounded message, no provider call; in CompleteStream a bad message fails only its own
item(s), the good items all get their answers, and item errors are redacted like unary errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from inference_testkit import poll_until
from pydantic import SecretStr

from services.inference.server import build
from shared.config import Settings
from shared.errors import InvalidArgument, from_rpc_error
from shared.grpc_server import serving
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

STREAM_METHOD = "/vantage.inference.v1.InferenceService/CompleteStream"
DEEP_SCHEMA = '{"a":' * 3000 + "1" + "}" * 3000


@asynccontextmanager
async def inference_stub(settings: Settings, **changes: Any) -> AsyncIterator[pb_grpc.InferenceServiceStub]:
    async with serving("inference", build, settings.model_copy(update=changes)) as srv, \
            grpc.aio.insecure_channel(srv.address) as ch:
        yield pb_grpc.InferenceServiceStub(ch)


async def provider_calls(admin: httpx.AsyncClient) -> int:
    """Requests the sandbox received on any provider endpoint."""
    endpoints = (await admin.get("/_sandbox/stats")).json()["endpoints"]
    return sum(int(e.get("calls", 0)) for e in endpoints.values())


async def refused(call: Any) -> InvalidArgument:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (ei.value.code(), ei.value.details())
    assert len(ei.value.details() or "") <= 1_000  # never the client's whole field echoed back
    err = from_rpc_error(ei.value)
    assert isinstance(err, InvalidArgument)
    return err


def user(content: str = "Which GPU clouds are best for fine-tuning?") -> list[pb.Message]:
    return [pb.Message(role="user", content=content)]


def api_request(**kw: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(**({"model": "gpt-4.1-mini", "messages": user()} | kw))


# --- unary limits ---------------------------------------------------------------------------------------------

COMPLETE_CASES = [
    # (request, field named in BadRequest, text the message must hold)
    (api_request(model="gpt\u0000"), "model", "not a model name"),
    (api_request(model="gpt 4.1"), "model", "not a model name"),
    (api_request(model="gpt-" + "4" * 300), "model", "200"),
    (api_request(messages=user() * 1_001), "messages", "1000"),
    (api_request(messages=user("x" * 2_000_001)), "messages", "2000000"),
    (api_request(messages=[pb.Message(role="tool" * 10_000, content="x")]), "messages[0].role", "system"),
    (api_request(json_schema=DEEP_SCHEMA), "json_schema", "32"),
    (api_request(json_schema='{"d": "' + "x" * 100_000 + '"}'), "json_schema", "100000"),
    (api_request(schema_name="my schema!"), "schema_name", "64"),
    (api_request(schema_name="s" * 65), "schema_name", "64"),
    (api_request(location="U\u0000"), "location", "ISO 3166-1"),
    (api_request(location="XX"), "location", "ISO 3166-1"),  # two letters, but no country
    (api_request(max_output_tokens=200_000), "max_output_tokens", "128000"),
    (api_request(max_output_tokens=-1), "max_output_tokens", "128000"),
    (api_request(idempotency_key="run:1\r\nX-Injected: 1"), "idempotency_key", "255"),
    (api_request(idempotency_key="k" * 256), "idempotency_key", "255"),
]


async def test_complete_over_a_limit_is_invalid_argument_naming_the_field(
    settings: Settings, sandbox_admin: httpx.AsyncClient
) -> None:
    async with inference_stub(settings) as stub:
        before = await provider_calls(sandbox_admin)
        for request, field, text in COMPLETE_CASES:
            err = await refused(stub.Complete(request, timeout=30))
            assert field in [f for f, _ in err.violations], (field, err.violations)
            assert text in err.message, (text, err.message)
        assert await provider_calls(sandbox_admin) == before
        # Still serving: a good request right after.
        ok = await stub.Complete(api_request(), timeout=30)
        assert ok.provider == "openai" and ok.text


async def test_route_validates_the_model_name(stub: pb_grpc.InferenceServiceStub) -> None:
    for model in ("\u0000", "chatgpt\u0000", "x" * 1_000_000, "claude\tsonnet"):
        err = await refused(stub.Route(pb.RouteRequest(model=model), timeout=10))
        assert [f for f, _ in err.violations] == ["model"]
    assert (await stub.Route(pb.RouteRequest(model=" chatgpt "), timeout=10)).provider == "brightdata_chatgpt"


async def test_complete_batch_holds_at_most_1000_items(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await provider_calls(sandbox_admin)
    explicit = [pb.BatchItem(id=f"i{n}", request=api_request()) for n in range(1_001)]
    err = await refused(stub.CompleteBatch(pb.CompleteBatchRequest(items=explicit), timeout=30))
    assert [f for f, _ in err.violations] == ["items"] and "1000" in err.message
    packed = [pb.BatchItem(id=f"i{n}", input_json='{"name": "x"}') for n in range(1_001)]
    err = await refused(stub.CompleteBatch(pb.CompleteBatchRequest(
        model="gpt-4.1-mini", instruction="Describe it.", items=packed,
        item_json_schema='{"type": "object", "properties": {"d": {"type": "string"}}}'), timeout=30))
    assert [f for f, _ in err.violations] == ["items"] and "1000" in err.message
    assert await provider_calls(sandbox_admin) == before


async def test_the_batch_item_limit_is_a_setting(settings: Settings) -> None:
    async with inference_stub(settings, complete_batch_max_items=3) as stub:
        bad = pb.CompleteRequest(model="no model", messages=user())  # fails on its own, never reaches a provider
        err = await refused(stub.CompleteBatch(pb.CompleteBatchRequest(
            items=[pb.BatchItem(id=f"i{n}", request=bad) for n in range(4)]), timeout=10))
        assert "at most 3 items" in err.message
        r = await stub.CompleteBatch(pb.CompleteBatchRequest(
            items=[pb.BatchItem(id=f"i{n}", request=bad) for n in range(3)]), timeout=10)
        assert [x.error.code for x in r.results] == ["INVALID_ARGUMENT"] * 3


async def test_batch_ids_are_bounded_and_unique(stub: pb_grpc.InferenceServiceStub) -> None:
    dup = [pb.BatchItem(id="a", request=api_request()), pb.BatchItem(id="a", request=api_request())]
    err = await refused(stub.CompleteBatch(pb.CompleteBatchRequest(items=dup), timeout=10))
    assert [f for f, _ in err.violations] == ["items[1].id"]
    long_id = [pb.BatchItem(id="i" * 257, request=api_request())]
    err = await refused(stub.CompleteBatch(pb.CompleteBatchRequest(items=long_id), timeout=10))
    assert [f for f, _ in err.violations] == ["items[0].id"] and "256" in err.message


PACK_SCHEMA = '{"type": "object", "properties": {"kind": {"type": "string"}}}'


def packed(**kw: Any) -> pb.CompleteBatchRequest:
    base: dict[str, Any] = {"model": "gpt-4.1-mini", "instruction": "Say what kind of organisation this is.",
                            "item_json_schema": PACK_SCHEMA,
                            "items": [pb.BatchItem(id="a", input_json='{"name": "Together AI"}')]}
    return pb.CompleteBatchRequest(**(base | kw))


async def test_packing_mode_limits(stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient) -> None:
    before = await provider_calls(sandbox_admin)
    for request, field, text in [
        (packed(instruction="x" * 20_001), "instruction", "20000"),
        (packed(item_json_schema=DEEP_SCHEMA), "item_json_schema", "32"),
        (packed(max_items_per_call=101), "max_items_per_call", "100"),
        (packed(model="gpt\u0000mini"), "model", "not a model name"),
        (packed(location="XX"), "location", "ISO 3166-1"),
        (packed(items=[pb.BatchItem(id="x" * 257, input_json="{}")]), "items[0].id", "256"),
    ]:
        err = await refused(stub.CompleteBatch(request, timeout=30))
        assert field in [f for f, _ in err.violations], (field, err.violations)
        assert text in err.message
    assert await provider_calls(sandbox_admin) == before
    # An over-deep item input fails that item only; the other item is answered.
    r = await stub.CompleteBatch(packed(items=[
        pb.BatchItem(id="deep", input_json="[" * 3000 + "]" * 3000),
        pb.BatchItem(id="ok", input_json='{"name": "Together AI"}'),
    ]), timeout=60)
    by_id = {x.id: x for x in r.results}
    assert by_id["deep"].error.code == "INVALID_ARGUMENT" and "32" in by_id["deep"].error.message
    assert by_id["ok"].WhichOneof("outcome") == "response"


async def test_cancel_batch_validates_provider_and_snapshot_id(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await provider_calls(sandbox_admin)
    for request, field in [
        (pb.CancelBatchRequest(snapshot_id="s_abc123", provider="openai"), "provider"),
        (pb.CancelBatchRequest(snapshot_id="s_abc123", provider="brightdata_chatgpt\u0000"), "provider"),
        (pb.CancelBatchRequest(snapshot_id="../../../admin/delete-everything?confirm=yes&x="), "snapshot_id"),
        (pb.CancelBatchRequest(snapshot_id="s_\u0000"), "snapshot_id"),
    ]:
        err = await refused(stub.CancelBatch(request, timeout=10))
        assert [f for f, _ in err.violations] == [field]
    assert await provider_calls(sandbox_admin) == before


# --- CompleteStream: bad messages fail their own items ------------------------------------------------------------


def item(item_id: str, request: pb.CompleteRequest) -> pb.CompleteStreamRequest:
    return pb.CompleteStreamRequest(item=pb.StreamItem(id=item_id, request=request))


def resume(snapshot_id: str, members: list[str], model: str = "chatgpt",
           location: str = "US") -> pb.CompleteStreamRequest:
    return pb.CompleteStreamRequest(resume=pb.ResumeBatch(snapshot_id=snapshot_id, model=model, location=location,
                                                          member_ids=members))


def chatgpt(n: int) -> pb.CompleteRequest:
    return pb.CompleteRequest(model="chatgpt", location="US", messages=user(f"Best GPU clouds for startups? ({n})"))


async def stream(stub: pb_grpc.InferenceServiceStub, msgs: list[pb.CompleteStreamRequest]) -> list[pb.ItemResult]:
    async def gen() -> AsyncIterator[pb.CompleteStreamRequest]:
        for m in msgs:
            yield m

    return [ev.result async for ev in stub.CompleteStream(gen(), timeout=120) if ev.WhichOneof("kind") == "result"]


async def test_a_stream_with_good_and_bad_messages_answers_every_good_item(
    stub: pb_grpc.InferenceServiceStub,
) -> None:
    good = {"g0", "g1", "g2", "api"}
    msgs = [
        item("g0", chatgpt(0)),
        item("bad-model", api_request(model="gpt\u0000")),
        resume("../../../admin/delete-everything?confirm=yes&x=", ["r1", "r2"]),
        item("g1", chatgpt(1)),
        item("deep", api_request(json_schema=DEEP_SCHEMA)),
        resume("s_abcdef123", [f"m{n}" for n in range(21)]),  # more members than a snapshot holds
        item("api", api_request()),
        resume("s_abcdef123", ["wrong-model"], model="gpt-4.1"),  # not a batch provider
        resume("s_abcdef123", ["bad-model-resume"], model="chatgpt\u0000"),
        resume("s_abcdef123", ["bad-country"], location="ZZ"),
        item("i" * 300, api_request()),
        pb.CompleteStreamRequest(),  # neither an item nor a resume
        item("g2", chatgpt(2)),
        resume("s_doesnotexist0000", ["gone"]),  # a well-formed id the provider does not know
    ]
    results = await stream(stub, msgs)
    by_id = {r.id: r for r in results}
    for gid in good:
        assert by_id[gid].WhichOneof("outcome") == "response", by_id[gid]
        assert by_id[gid].response.text
    invalid = {"bad-model", "deep", "r1", "r2", "wrong-model", "bad-model-resume", "bad-country", "i" * 256, "", *[f"m{n}" for n in range(21)]}
    for bid in invalid:
        assert by_id[bid].error.code == "INVALID_ARGUMENT", (bid[:20], by_id[bid].error)
    assert "resume.snapshot_id" in by_id["r1"].error.message
    assert "at most 20" in by_id["m0"].error.message
    assert "ISO 3166-1" in by_id["bad-country"].error.message
    assert by_id["gone"].WhichOneof("outcome") == "error"  # failed, not the stream
    assert len(results) == len(good) + len(invalid) + 1


async def test_messages_over_the_stream_limit_fail_one_by_one(settings: Settings) -> None:
    async with inference_stub(settings, stream_max_messages=3) as stub:
        results = await stream(stub, [item(f"a{n}", api_request()) for n in range(3)]
                               + [item("late", api_request()), resume("s_abc123", ["late-member"])])
    by_id = {r.id: r for r in results}
    assert all(by_id[f"a{n}"].WhichOneof("outcome") == "response" for n in range(3))
    for late in ("late", "late-member"):
        assert by_id[late].error.code == "INVALID_ARGUMENT"
        assert "at most 3 messages" in by_id[late].error.message


async def test_an_undecodable_message_is_one_failed_item_and_the_stream_goes_on(
    inference: Any,
) -> None:
    """Corrupt bytes in the middle of a CompleteStream: the message is answered as one failed item (no id: corrupt
    bytes name none) with INVALID_ARGUMENT, and the items before and after it are all answered."""
    async with grpc.aio.insecure_channel(inference.address) as ch:
        call = ch.stream_stream(STREAM_METHOD, request_serializer=None,
                                response_deserializer=pb.CompleteStreamResponse.FromString)

        async def raw() -> AsyncIterator[bytes]:
            yield item("a", api_request()).SerializeToString()
            yield item("b", api_request(model="claude-sonnet-5")).SerializeToString()
            yield b"\x0a\x05\xff\xfe\xfd"  # field 1 (item) claims 5 bytes and has 3: not a message
            yield item("after", api_request()).SerializeToString()

        seen: dict[str, pb.ItemResult] = {}
        async for ev in call(raw(), timeout=60):
            if ev.WhichOneof("kind") == "result":
                seen[ev.result.id] = ev.result
    assert set(seen) == {"a", "b", "", "after"}
    assert all(seen[i].WhichOneof("outcome") == "response" for i in ("a", "b", "after")), seen
    assert seen[""].error.code == "INVALID_ARGUMENT"
    assert "request message #2 is not a valid" in seen[""].error.message


# --- CompleteStream: item errors are redacted like unary errors -------------------------------------------------

TOKEN = "bd-0123456789abcdef0123"


@asynccontextmanager
async def echoing_brightdata() -> AsyncIterator[str]:
    """A Bright Data stand-in on a loopback port whose snapshot holds one error record quoting the request's
    Authorization header (as a careless upstream error does); its root URL."""
    app = FastAPI()

    @app.get("/datasets/v3/progress/{snapshot_id}")
    async def progress(snapshot_id: str) -> dict[str, Any]:
        return {"snapshot_id": snapshot_id, "status": "ready", "records": 1, "errors": 1}

    @app.get("/datasets/v3/snapshot/{snapshot_id}")
    async def snapshot(snapshot_id: str, request: Request) -> list[dict[str, Any]]:
        auth = request.headers.get("authorization", "")
        return [{"index": 1, "input": {"prompt": "q"}, "error_code": "upstream",
                 "error": f"upstream refused the call (sent Authorization: {auth})"}]

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        await poll_until(lambda: asyncio.sleep(0, server.started), within=10)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_stream_item_errors_are_redacted(settings: Settings) -> None:
    async with echoing_brightdata() as base:
        async with inference_stub(settings, brightdata_base_url=base, brightdata_api_key=SecretStr(TOKEN)) as stub:
            (result,) = await stream(stub, [resume("s_echo0001", ["r"])])
    message = result.error.message
    assert result.id == "r" and result.error.code == "UNAVAILABLE"
    assert "upstream refused the call" in message  # the provider's words are kept…
    assert TOKEN not in message and "bd-" not in message  # …its echo of our token is not
    assert "[REDACTED]" in message
