"""The shared server layer against hostile bytes and careless clients (issue 11, items 4 and 5), through real
``serving(...)`` servers on loopback and raw-bytes channel calls:

- corrupt request bytes (invalid UTF-8, truncated varints) → INVALID_ARGUMENT naming the message type, on unary and
  client-streaming RPCs alike (grpc.aio alone answers UNKNOWN "Unexpected <class 'DecodeError'>");
- a missing token on a server-streaming or bidi RPC → UNAUTHENTICATED (was INTERNAL TypeError);
- an error inside a TaskGroup (ExceptionGroup) keeps its domain status; MemoryError → RESOURCE_EXHAUSTED;
- status messages and log lines are redacted by one function and bounded in size.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import grpc
import pytest
import structlog
from grpc_status import rpc_status
from pydantic import SecretStr

from shared import errors, security
from shared import logging as vlog
from shared.config import Settings
from shared.errors import InvalidArgument
from shared.grpc_server import Mount, serving
from vantage.inference.v1 import inference_pb2, inference_pb2_grpc
from vantage.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from vantage.search.v1 import search_pb2, search_pb2_grpc

TOKEN = "tok-9d8c7b6a5f4e3d2c1b0a"
SEARCH = "/vantage.search.v1.SearchService/Search"
COMPLETE_STREAM = "/vantage.inference.v1.InferenceService/CompleteStream"
WATCH_RUN = "/vantage.orchestrator.v1.OrchestratorService/WatchRun"
# Field 1 (query, a string) holding two bytes that are not UTF-8.
BAD_UTF8 = b"\x0a\x02\xff\xfe"


class Search(search_pb2_grpc.SearchServiceServicer):
    """``Search`` echoes the query; ``group:`` raises from inside a TaskGroup, ``huge:`` echoes a secret and a
    megabyte of client text in its error, ``oom`` raises MemoryError."""

    async def Search(self, request, context):
        q = request.query
        if q.startswith("group:"):

            async def bad() -> None:
                raise InvalidArgument("query is bad inside a task", field="query")

            async with asyncio.TaskGroup() as tg:
                tg.create_task(bad())
        if q.startswith("huge:"):
            raise InvalidArgument(f"provider said Bearer bd-{'s' * 24} about {q}", field="query")
        if q == "oom":
            raise MemoryError()
        return search_pb2.SearchResponse(query=q)


class Stream(inference_pb2_grpc.InferenceServiceServicer):
    """``CompleteStream`` answers each item with its id."""

    async def CompleteStream(self, request_iterator, context):
        async for msg in request_iterator:
            yield inference_pb2.CompleteStreamResponse(
                result=inference_pb2.ItemResult(id=msg.item.id)
            )


class Watch(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    async def WatchRun(self, request, context):
        yield orchestrator_pb2.RunEvent(run_id=request.run_id)


def builder():
    @contextlib.asynccontextmanager
    async def build(_settings):
        yield [
            Mount(Search(), search_pb2_grpc.add_SearchServiceServicer_to_server, "vantage.search.v1.SearchService"),
            Mount(Stream(), inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                  "vantage.inference.v1.InferenceService"),
            Mount(Watch(), orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
                  "vantage.orchestrator.v1.OrchestratorService"),
        ]

    return build


def raw_unary(ch: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return ch.unary_unary(method, request_serializer=None, response_deserializer=None)


async def failure(coro) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value


async def test_corrupt_unary_bytes_are_invalid_argument_naming_the_message():
    async with serving("search", builder(), Settings()) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        for data in (BAD_UTF8, b"\x0a\xff", b"\x08\x80\x80\x80", b"\xff\xff\xff"):
            e = await failure(raw_unary(ch, SEARCH)(data, timeout=5))
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (data, e.details())
            assert "vantage.search.v1.SearchRequest" in e.details()
            st = rpc_status.from_call(e)
            assert st is not None and st.details  # BadRequest (field "request") travels with it
        ok = await search_pb2_grpc.SearchServiceStub(ch).Search(search_pb2.SearchRequest(query="fine"), timeout=5)
        assert ok.query == "fine"


async def test_a_corrupt_message_in_a_client_stream_is_invalid_argument_after_the_good_ones():
    async with serving("inference", builder(), Settings()) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        call = ch.stream_stream(COMPLETE_STREAM, request_serializer=None,
                                response_deserializer=inference_pb2.CompleteStreamResponse.FromString)
        good = inference_pb2.CompleteStreamRequest(item=inference_pb2.StreamItem(id="a")).SerializeToString()
        it = call(iter([good, b"\x0a\x03\x0a\x01\xff"]), timeout=5)
        got = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for r in it:
                got.append(r.result.id)
        assert got == ["a"]
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request message #1" in info.value.details()


@pytest.mark.parametrize("shape", ["server_stream", "bidi", "unary"])
async def test_missing_token_on_any_rpc_shape_is_unauthenticated(shape: str):
    settings = Settings(auth_token=SecretStr(TOKEN))
    async with serving("x", builder(), settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        if shape == "server_stream":
            call = orchestrator_pb2_grpc.OrchestratorServiceStub(ch).WatchRun(
                orchestrator_pb2.WatchRunRequest(run_id="r"), timeout=5)
            e = await failure(call.read())
        elif shape == "bidi":
            call = inference_pb2_grpc.InferenceServiceStub(ch).CompleteStream(iter([]), timeout=5)
            e = await failure(call.read())
        else:
            e = await failure(raw_unary(ch, SEARCH)(BAD_UTF8, timeout=5))  # bytes never parsed without a token
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e.details()
        assert e.details() == security.UNAUTHENTICATED_MESSAGE


async def test_exception_group_keeps_its_status_and_memory_error_is_resource_exhausted():
    async with serving("search", builder(), Settings()) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        e = await failure(stub.Search(search_pb2.SearchRequest(query="group:x"), timeout=5))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "inside a task" in e.details()
        e = await failure(stub.Search(search_pb2.SearchRequest(query="oom"), timeout=5))
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_status_messages_are_redacted_and_bounded():
    async with serving("search", builder(), Settings()) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        e = await failure(search_pb2_grpc.SearchServiceStub(ch).Search(
            search_pb2.SearchRequest(query="huge:" + "x" * 1_000_000), timeout=10))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bd-sss" not in e.details() and "[REDACTED]" in e.details()
    assert len(e.details()) <= errors.MAX_MESSAGE_CHARS + 40 and "chars]" in e.details()


def test_redaction_is_one_function_and_bounding_keeps_secrets_masked():
    assert security.redact is vlog.redact is errors.redact
    secret = "sk-" + "A" * 40
    cut = errors.public_message("x" * 190 + secret + "y" * 5000, limit=200)
    assert "AAAAAAAA" not in cut and cut.startswith("x" * 190) and cut.endswith("chars]")
    assert errors.bounded("short") == "short"
    assert errors.bounded("z" * 500) == "z" * 200 + "…[+300 chars]"
    assert vlog.redact("GET /v1?api_key=abc123&q=1") == "GET /v1?api_key=[REDACTED]&q=1"


def test_log_lines_are_capped_and_stay_json():
    out = io.StringIO()
    structlog.configure(
        processors=[vlog.redact_processor, vlog.BoundedRenderer(structlog.processors.JSONRenderer())],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    logger = structlog.get_logger("t")
    logger.info("rpc", error="e" * 10_000_000, token="tok-should-not-appear", items=["i" * 3000] * 50)
    logger.info("small", note="n")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    big = json.loads(lines[0])
    assert len(lines[0]) <= vlog.MAX_LINE_CHARS
    assert big["event"] == "rpc" and big["token"] == "[REDACTED]" and big.get("truncated") is True
    assert json.loads(lines[1]) == {"event": "small", "note": "n"}
