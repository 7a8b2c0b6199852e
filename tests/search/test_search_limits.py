"""Request limits of SearchService (README "Request limits", search.proto): through a real server on a loopback
port against the sandbox's Tavily emulator. Over a limit → INVALID_ARGUMENT stating the limit, the field in
google.rpc.BadRequest, a bounded message, and no Tavily call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from services.search.server import build
from shared.config import Settings
from shared.errors import InvalidArgument, from_rpc_error
from shared.grpc_server import serving
from vantage.search.v1 import search_pb2 as pb
from vantage.search.v1 import search_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
async def stub(settings: Settings) -> AsyncIterator[pb_grpc.SearchServiceStub]:
    async with serving("search", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        yield pb_grpc.SearchServiceStub(ch)


async def _tavily_searches(admin: httpx.AsyncClient) -> int:
    return int((await admin.get("/_sandbox/stats")).json()["billing"].get("tavily", {}).get("searches", 0))


async def _refused(call: object) -> InvalidArgument:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call  # type: ignore[misc]
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    err = from_rpc_error(ei.value)
    assert isinstance(err, InvalidArgument)
    assert len(ei.value.details() or "") <= 1_000  # never the client's whole field echoed back
    return err


SEARCH_CASES = [
    # (request, field in BadRequest, text the message must hold)
    (pb.SearchRequest(query="q" * 401), "query", "400"),
    (pb.SearchRequest(query="GPU " * 250_000), "query", "400"),  # 1 MB
    (pb.SearchRequest(query="GPU\x00clouds"), "query", "control characters"),
    (pb.SearchRequest(query="GPU clouds", include_domains=[f"d{i}.com" for i in range(301)]), "include_domains",
     "300"),
    (pb.SearchRequest(query="GPU clouds", exclude_domains=[f"d{i}.com" for i in range(151)]), "exclude_domains",
     "150"),
    (pb.SearchRequest(query="GPU clouds", include_domains=["ok.com", "a" * 254 + ".com"]), "include_domains[1]",
     "253"),
    (pb.SearchRequest(query="GPU clouds", exclude_domains=["bad\x00host.com"]), "exclude_domains[0]",
     "not a domain"),
    (pb.SearchRequest(query="GPU clouds", context_char_budget=1_000_001), "context_char_budget", "1000000"),
    (pb.SearchRequest(query="GPU clouds", max_results=21), "max_results", "20"),
    (pb.SearchRequest(query="GPU clouds", search_depth="deep" * 10_000), "search_depth", "advanced"),
]


@pytest.mark.parametrize(("request_msg", "field", "text"), SEARCH_CASES,
                         ids=[c[1] + ":" + c[2] for c in SEARCH_CASES])
async def test_search_over_a_limit_is_invalid_argument_and_never_reaches_tavily(
    stub: pb_grpc.SearchServiceStub, sandbox_admin: httpx.AsyncClient, request_msg: pb.SearchRequest, field: str,
    text: str,
) -> None:
    before = await _tavily_searches(sandbox_admin)
    err = await _refused(stub.Search(request_msg, timeout=10))
    assert field in [f for f, _ in err.violations], err.violations
    assert text in err.message
    assert await _tavily_searches(sandbox_admin) == before


COMPANY_CASES = [
    (pb.SearchCompanyRequest(company="A" * 201), "company", "200"),
    (pb.SearchCompanyRequest(company="Together AI " * 100_000), "company", "200"),
    (pb.SearchCompanyRequest(company="Together\x07AI"), "company", "control characters"),
    (pb.SearchCompanyRequest(company="Together AI", domain="t" * 250 + ".com"), "domain", "253"),
    (pb.SearchCompanyRequest(company="Together AI", domain="x" * 100_000), "domain", "253"),
    (pb.SearchCompanyRequest(company="Together AI", context_char_budget=2_000_000), "context_char_budget",
     "1000000"),
]


@pytest.mark.parametrize(("request_msg", "field", "text"), COMPANY_CASES,
                         ids=[c[1] + ":" + c[2] for c in COMPANY_CASES])
async def test_search_company_over_a_limit_is_invalid_argument(
    stub: pb_grpc.SearchServiceStub, sandbox_admin: httpx.AsyncClient, request_msg: pb.SearchCompanyRequest,
    field: str, text: str,
) -> None:
    before = await _tavily_searches(sandbox_admin)
    err = await _refused(stub.SearchCompany(request_msg, timeout=10))
    assert [f for f, _ in err.violations] == [field]
    assert text in err.message
    assert await _tavily_searches(sandbox_admin) == before


async def test_limits_are_inclusive_and_the_service_still_answers(
    stub: pb_grpc.SearchServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    # Exactly at the limits: accepted and sent (400 characters once whitespace is collapsed; 300 domains).
    query = ("Together AI GPU cloud " * 30)[:400]
    before = await _tavily_searches(sandbox_admin)
    r = await stub.Search(pb.SearchRequest(query="  " + query.replace(" ", "   ") + "  ", no_cache=True,
                                           exclude_domains=[f"d{i}.example" for i in range(150)]), timeout=30)
    assert r.query == " ".join(query.split())
    assert await _tavily_searches(sandbox_admin) == before + 1
    r = await stub.SearchCompany(pb.SearchCompanyRequest(company="T" * 200, domain="together.ai"), timeout=30)
    assert r.query.startswith("T" * 200)
