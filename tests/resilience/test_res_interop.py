"""gRPC interop-style cases (grpc/grpc doc/interop-test-descriptions.md; reference/performance.md §5) for each
service — search, inference, extraction, orchestrator — through real servers on loopback and a private sandbox:

- ``timeout_on_sleeping_server``: DEADLINE_EXCEEDED when the upstream is slow, and the deadline travels downstream
  (the sandbox sees the provider request abandoned);
- ``cancel_after_begin``: CANCELLED, propagated to the provider request;
- ``unimplemented_method`` / ``unimplemented_service``: UNIMPLEMENTED;
- ``status_code_and_message``: INVALID_ARGUMENT with its message and ``google.rpc.BadRequest`` field violations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from res_testkit import cancel_lag, endpoint, fails, poll_until, stats

from services.extraction.server import build as extraction_build
from services.inference.server import build as inference_build
from services.orchestrator.api.server import build as orchestrator_build
from services.orchestrator.app.inputs import rows_from_pairs
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.store import open_store
from services.search.server import build as search_build
from shared.config import Settings
from shared.errors import InvalidArgument
from shared.grpc_client import Channels
from shared.grpc_server import serving
from vantage.extraction.v1 import extraction_pb2 as xpb
from vantage.extraction.v1 import extraction_pb2_grpc as xpb_grpc
from vantage.inference.v1 import inference_pb2 as ipb
from vantage.inference.v1 import inference_pb2_grpc as ipb_grpc
from vantage.orchestrator.v1 import orchestrator_pb2 as opb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from vantage.search.v1 import search_pb2 as spb
from vantage.search.v1 import search_pb2_grpc as spb_grpc

pytestmark = pytest.mark.integration

SERVICES = {
    "search": "vantage.search.v1.SearchService",
    "inference": "vantage.inference.v1.InferenceService",
    "extraction": "vantage.extraction.v1.ExtractionService",
    "orchestrator": "vantage.orchestrator.v1.OrchestratorService",
}


@contextlib.asynccontextmanager
async def all_services(settings: Settings) -> AsyncIterator[dict[str, str]]:
    """The four services in-process; their addresses."""
    async with (
        serving("search", search_build, settings) as s,
        serving("inference", inference_build, settings) as i,
        serving("extraction", extraction_build, settings) as e,
    ):
        live = settings.model_copy(update={"search_addr": s.address, "inference_addr": i.address,
                                           "extraction_addr": e.address})
        async with serving("orchestrator", orchestrator_build, live) as o:
            yield {"search": s.address, "inference": i.address, "extraction": e.address, "orchestrator": o.address}


@pytest.fixture
async def addrs(res_settings: Settings) -> AsyncIterator[dict[str, str]]:
    async with all_services(res_settings) as a:
        yield a


def identity(b: bytes) -> bytes:
    return b


# --- unimplemented_method / unimplemented_service -----------------------------------------------------------------


@pytest.mark.parametrize("service", list(SERVICES))
async def test_unimplemented_method_and_service(addrs: dict[str, str], service: str) -> None:
    async with grpc.aio.insecure_channel(addrs[service]) as ch:
        for method in (f"/{SERVICES[service]}/NoSuchMethod", "/vantage.nothing.v1.NoService/Call"):
            call = ch.unary_unary(method, request_serializer=identity, response_deserializer=identity)
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await call(b"", timeout=5)
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, (service, method)


# --- status_code_and_message: INVALID_ARGUMENT with BadRequest details -----------------------------------------


async def test_invalid_argument_with_field_violations_on_every_service(addrs: dict[str, str]) -> None:
    async with contextlib.AsyncExitStack() as st:
        ch = {n: await st.enter_async_context(grpc.aio.insecure_channel(a)) for n, a in addrs.items()}
        cases: list[tuple[str, Any, set[str]]] = [
            ("search", spb_grpc.SearchServiceStub(ch["search"]).Search(spb.SearchRequest(query=" "), timeout=5),
             {"query"}),
            ("inference", ipb_grpc.InferenceServiceStub(ch["inference"]).Complete(
                ipb.CompleteRequest(model="", messages=[ipb.Message(role="robot", content="x")], location="USA"),
                timeout=5), {"model", "messages[0].role", "location"}),
            ("extraction", xpb_grpc.ExtractionServiceStub(ch["extraction"]).ParseClassification(
                xpb.ParseClassificationRequest(classification_json='{"tier": "LUKEWARM", "score": 300}'),
                timeout=5), None),
            ("orchestrator", opb_grpc.OrchestratorServiceStub(ch["orchestrator"]).StartRun(
                opb.StartRunRequest(kind=opb.RESEARCH, research=opb.ResearchInput(
                    companies=[opb.Company(company="Acme")]),
                    research_options=opb.ResearchOptions(min_score=2.0, context_char_budget=-1)), timeout=5),
             {"research_options.min_score", "research_options.context_char_budget"}),
        ]
        for name, call, fields in cases:
            code, err, raw = await fails(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, name
            assert isinstance(err, InvalidArgument) and raw.details(), name  # a message …
            got = {f for f, _ in err.violations}
            assert got, (name, err.message)  # … and BadRequest field violations
            if fields is not None:
                assert fields <= got, (name, got)


# --- timeout_on_sleeping_server: DEADLINE_EXCEEDED, deadline forwarded downstream --------------------------------


async def test_deadline_exceeded_on_a_slow_provider_search_and_inference(
    res_settings: Settings, sandbox_admin: httpx.AsyncClient
) -> None:
    s = res_settings.model_copy(update={"tavily_extra_headers": {"X-Sandbox-Fault": "hang"}})
    async with all_services(s) as a, grpc.aio.insecure_channel(a["search"]) as sc, \
            grpc.aio.insecure_channel(a["inference"]) as ic:
        t0 = time.monotonic()
        code, _, _ = await fails(spb_grpc.SearchServiceStub(sc).Search(spb.SearchRequest(query="slow"), timeout=0.5))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 1.0
        istub = ipb_grpc.InferenceServiceStub(ic)
        hi = ipb.CompleteRequest(model="gpt-4.1", messages=[ipb.Message(role="user", content="hi")], no_cache=True)
        await istub.Complete(hi, timeout=30)  # warm up (the first call opens the response cache's database)
        code, _, _ = await fails(istub.Complete(hi, timeout=0.5, metadata=(("x-sandbox-fault", "hang"),)))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED

    # The forwarded deadline ended both provider requests at the sandbox (not after its 300 s hang).
    async def both_abandoned() -> bool:
        return (await endpoint(sandbox_admin, "tavily.search"))["cancelled"] >= 1 and \
            (await endpoint(sandbox_admin, "openai.chat_completions"))["cancelled"] >= 1

    await poll_until(both_abandoned, within=5)


async def test_deadline_exceeded_on_a_slow_extraction(addrs: dict[str, str]) -> None:
    # Extraction has no upstream: its slow part is the analysis itself (a 150k-character answer).
    answer = ("Acme GPU Cloud, Lambda and CoreWeave rent H100 clusters; see https://example.com/gpu. " * 1800)[:150_000]
    async with grpc.aio.insecure_channel(addrs["extraction"]) as ch:
        code, _, _ = await fails(xpb_grpc.ExtractionServiceStub(ch).Extract(
            xpb.ExtractRequest(answer_markdown=answer, org=xpb.Org(name="Acme GPU Cloud")), timeout=0.005))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_deadline_exceeded_on_a_sleeping_orchestrator_stream(addrs: dict[str, str], knobs: Any) -> None:
    await knobs({"endpoints": {"tavily": {"latency_s": 30}}})  # the run's item sleeps at Tavily
    async with grpc.aio.insecure_channel(addrs["orchestrator"]) as ch:
        stub = opb_grpc.OrchestratorServiceStub(ch)
        run = await stub.StartRun(opb.StartRunRequest(kind=opb.RESEARCH, research=opb.ResearchInput(
            companies=[opb.Company(company="Cohere", domain="cohere.com")])), timeout=10)
        t0 = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            async for _ in stub.WatchRun(opb.WatchRunRequest(run_id=run.run_id), timeout=0.5):
                pass
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 2.0
        await stub.CancelRun(opb.CancelRunRequest(run_id=run.run_id), timeout=10)


async def test_orchestrator_forwards_its_deadline_to_search_and_tavily(
    res_settings: Settings, sandbox_admin: httpx.AsyncClient, knobs: Any
) -> None:
    await knobs({"endpoints": {"tavily": {"rate_hang": 1.0}}})
    s = res_settings.model_copy(update={"rpc_timeout_seconds": 0.5, "retry_attempts": 1})
    async with all_services(s) as a:
        live = s.model_copy(update={"search_addr": a["search"], "inference_addr": a["inference"],
                                    "extraction_addr": a["extraction"]})
        store = await open_store(live.database_url)
        channels = Channels(live)
        try:
            orch = Orchestrator(store, Clients(channels, live), live)
            run, _ = await create_research_run(orch, rows_from_pairs([("Cohere", "cohere.com")]), name="t",
                                                    options=ResearchOptions(model="gpt-4.1"))
            t0 = time.monotonic()
            await orch.execute(run.id)
            assert time.monotonic() - t0 < 5
            (item,) = await store.page_items(run.id)
        finally:
            await channels.close()
            await store.close()
    assert item.status == "failed" and item.error and item.error.startswith("search: DEADLINE_EXCEEDED")
    assert (await endpoint(sandbox_admin, "tavily.search"))["cancelled"] >= 1


# --- cancel_after_begin: CANCELLED, propagated to the provider ----------------------------------------------------


async def test_cancel_after_begin_search_and_inference(res_settings: Settings,
                                                       sandbox_admin: httpx.AsyncClient) -> None:
    s = res_settings.model_copy(update={"tavily_extra_headers": {"X-Sandbox-Fault": "hang"}})
    async with all_services(s) as a, grpc.aio.insecure_channel(a["search"]) as sc, \
            grpc.aio.insecure_channel(a["inference"]) as ic:
        lag_s = await cancel_lag(sandbox_admin, "tavily.search",
                                 spb_grpc.SearchServiceStub(sc).Search(spb.SearchRequest(query="q"), timeout=60))
        lag_i = await cancel_lag(sandbox_admin, "openai.chat_completions",
                                 ipb_grpc.InferenceServiceStub(ic).Complete(
                                     ipb.CompleteRequest(model="gpt-4.1", messages=[ipb.Message(role="user",
                                                                                                content="hi")]),
                                     timeout=60, metadata=(("x-sandbox-fault", "hang"),)))
    assert lag_s < 0.1 and lag_i < 0.1


async def test_cancel_after_begin_extraction() -> None:
    # No upstream to propagate to: the client sees its call cancelled, the server stays healthy.
    s = Settings()
    answer = "Lambda and CoreWeave rent GPUs. " * 4000
    async with serving("extraction", extraction_build, s) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = xpb_grpc.ExtractionServiceStub(ch)
        call = stub.Extract(xpb.ExtractRequest(answer_markdown=answer, org=xpb.Org(name="Lambda")), timeout=30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await call.code() == grpc.StatusCode.CANCELLED
        r = await stub.GetClassificationSchema(xpb.GetClassificationSchemaRequest(), timeout=5)
        assert r.json_schema


async def test_cancel_run_cancels_the_provider_request(res_settings: Settings, sandbox_admin: httpx.AsyncClient,
                                                       knobs: Any) -> None:
    await knobs({"endpoints": {"tavily": {"rate_hang": 1.0}}})
    async with all_services(res_settings) as a, grpc.aio.insecure_channel(a["orchestrator"]) as ch:
        stub = opb_grpc.OrchestratorServiceStub(ch)
        run = await stub.StartRun(opb.StartRunRequest(kind=opb.RESEARCH, research=opb.ResearchInput(
            companies=[opb.Company(company="Cohere", domain="cohere.com")])), timeout=10)

        async def hanging() -> bool:
            return (await endpoint(sandbox_admin, "tavily.search"))["in_flight"] > 0

        await poll_until(hanging)
        before = len((await stats(sandbox_admin))["cancellations"])
        t_cancel = time.time()
        cancelled = await stub.CancelRun(opb.CancelRunRequest(run_id=run.run_id), timeout=10)
        assert cancelled.status == opb.Run.CANCELLED

        async def seen() -> Any:
            return next((e for e in (await stats(sandbox_admin))["cancellations"][before:]
                         if e["endpoint"] == "tavily.search"), None)

        entry = await poll_until(seen)
    print(f"\nCancelRun → Tavily request abandoned at the sandbox after {(entry['at'] - t_cancel) * 1000:.1f} ms")
    assert entry["at"] - t_cancel < 0.1
