"""Domain errors survive a real gRPC round trip with their rich details."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from shared.config import Settings
from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    VantageError,
    from_rpc_error,
)
from shared.grpc_client import with_retries
from shared.grpc_server import Mount, serving
from vantage.search.v1 import search_pb2, search_pb2_grpc


class _Faulty(search_pb2_grpc.SearchServiceServicer):
    """Raises whatever the query names; SearchCompany counts calls and fails twice before succeeding."""

    def __init__(self) -> None:
        self.calls = 0

    async def Search(self, request, context):
        q = request.query
        if q == "bad":
            raise InvalidArgument("two things are wrong", violations=[("query", "too short"), ("min_score", "> 1")])
        if q == "limited":
            raise ResourceExhausted("slow down", retry_after=1.5, provider="tavily", reason="RATE_LIMITED")
        if q == "down":
            raise Unavailable("provider down", provider="tavily")
        if q == "pre":
            raise FailedPrecondition("TAVILY_API_KEY is not set")
        if q == "crash":
            raise KeyError("secret-internal-detail")
        if q == "slow":
            await asyncio.sleep(30)
        return search_pb2.SearchResponse(query=q)

    async def SearchCompany(self, request, context):
        self.calls += 1
        if self.calls < 3:
            raise Unavailable("flaky")
        return search_pb2.SearchResponse(query=f"call {self.calls}")


@pytest.fixture
async def stub():
    servicer = _Faulty()

    @contextlib.asynccontextmanager
    async def build(_settings):
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, "vantage.search.v1.SearchService")]

    async with serving("search", build, Settings(grace_seconds=0.5)) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            yield search_pb2_grpc.SearchServiceStub(ch), servicer


async def _error(stub, query: str) -> tuple[grpc.aio.AioRpcError, VantageError]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Search(search_pb2.SearchRequest(query=query), timeout=5)
    return info.value, from_rpc_error(info.value)


async def test_invalid_argument_carries_every_field_violation(stub):
    raw, err = await _error(stub[0], "bad")
    assert raw.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(err, InvalidArgument)
    assert err.violations == [("query", "too short"), ("min_score", "> 1")]


async def test_resource_exhausted_carries_retry_info_and_provider(stub):
    raw, err = await _error(stub[0], "limited")
    assert raw.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(err, ResourceExhausted)
    assert err.retry_after == pytest.approx(1.5)
    assert (err.provider, err.reason) == ("tavily", "RATE_LIMITED")


@pytest.mark.parametrize(
    ("query", "code"),
    [("down", grpc.StatusCode.UNAVAILABLE), ("pre", grpc.StatusCode.FAILED_PRECONDITION)],
)
async def test_status_codes(stub, query, code):
    raw, _ = await _error(stub[0], query)
    assert raw.code() == code


async def test_unexpected_exception_is_internal_without_details_leaking(stub):
    raw, _ = await _error(stub[0], "crash")
    assert raw.code() == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in (raw.details() or "")


async def test_deadline_exceeded_on_a_slow_handler(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub[0].Search(search_pb2.SearchRequest(query="slow"), timeout=0.2)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_method_the_servicer_does_not_implement_is_unimplemented():
    @contextlib.asynccontextmanager
    async def build(_settings):
        base = search_pb2_grpc.SearchServiceServicer()
        yield [Mount(base, search_pb2_grpc.add_SearchServiceServicer_to_server, "vantage.search.v1.SearchService")]

    async with serving("search", build, Settings(grace_seconds=0.5)) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await search_pb2_grpc.SearchServiceStub(ch).Search(search_pb2.SearchRequest(query="x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_with_retries_retries_unavailable_then_succeeds(stub):
    s, servicer = stub
    resp = await with_retries(
        lambda: s.SearchCompany(search_pb2.SearchCompanyRequest(company="x"), timeout=5),
        attempts=3,
        initial=0.01,
        maximum=0.02,
    )
    assert resp.query == "call 3" and servicer.calls == 3


async def test_with_retries_gives_up_after_attempts(stub):
    s, servicer = stub
    with pytest.raises(Unavailable):
        await with_retries(
            lambda: s.SearchCompany(search_pb2.SearchCompanyRequest(company="x"), timeout=5),
            attempts=2,
            initial=0.01,
            maximum=0.02,
        )
    assert servicer.calls == 2
