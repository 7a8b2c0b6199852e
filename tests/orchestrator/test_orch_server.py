"""OrchestratorService through a real grpc.aio server (in-process) with the real downstream services and the
sandbox: StartRun → WatchRun → GetRun, CancelRun → ResumeRun, paging, and the error statuses."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.orchestrator.api.server import build
from shared.config import Settings
from shared.grpc_server import serving
from vantage.common.v1 import common_pb2
from vantage.orchestrator.v1 import orchestrator_pb2 as pb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

COMPANIES = Path(__file__).resolve().parents[2] / "examples" / "companies.csv"
TERMINAL = {pb.Run.COMPLETED, pb.Run.CANCELLED, pb.Run.FAILED}


@pytest.fixture
async def stub(services: Settings, db_url: str) -> AsyncIterator[pb_grpc.OrchestratorServiceStub]:
    # The operator lets StartRun read files under examples/ (VANTAGE_INPUT_DIR); nothing else of the server.
    settings = services.model_copy(update={"database_url": db_url, "watch_poll_seconds": 0.1,
                                           "input_dir": str(COMPANIES.parent)})
    async with serving("orchestrator", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        yield pb_grpc.OrchestratorServiceStub(ch)


async def watch(stub: pb_grpc.OrchestratorServiceStub, run_id: str, after: int = 0) -> list[pb.RunEvent]:
    return [ev async for ev in stub.WatchRun(pb.WatchRunRequest(run_id=run_id, after_sequence=after), timeout=60)]


def violations(e: grpc.aio.AioRpcError) -> list[str]:
    st = rpc_status.from_call(e)
    out: list[str] = []
    for d in st.details if st else []:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out += [v.field for v in br.field_violations]
    return out


async def test_start_watch_get(stub: pb_grpc.OrchestratorServiceStub) -> None:
    run = await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_path=str(COMPANIES), name="svc"), timeout=30)
    assert run.status == pb.Run.RUNNING and run.counts.total == 10 and run.name == "svc"

    events = await watch(stub, run.run_id)  # ends by itself when the run ends
    seqs = [e.sequence for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] == 1
    types = Counter(pb.RunEvent.Type.Name(e.type) for e in events)
    assert types == {"RUN_STARTED": 1, "ITEM_STARTED": 10, "ITEM_DONE": 10, "RUN_FINISHED": 1}
    last = events[-1]
    assert last.type == pb.RunEvent.RUN_FINISHED and last.run.status == pb.Run.COMPLETED
    assert last.run.counts.done == 10 and last.run.cost_usd > 0
    assert {e.item_key for e in events if e.type == pb.RunEvent.ITEM_DONE} >= {"Anthropic", "Jasper"}

    got = await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=10)
    assert got.status == pb.Run.COMPLETED and got.counts.done == 10 and got.counts.failed == 0
    assert got.credits > 0 and got.cost_usd > 0 and got.usage.input_tokens > 0
    assert got.finished_at.seconds >= got.started_at.seconds >= got.created_at.seconds > 0

    # Resumable stream: only what comes after the given sequence number.
    tail = await watch(stub, run.run_id, after=seqs[-3])
    assert [e.sequence for e in tail] == seqs[-2:]

    # Items with their research results, paged.
    first = await stub.ListRunItems(pb.ListRunItemsRequest(run_id=run.run_id, page_size=4), timeout=10)
    assert len(first.items) == 4 and first.next_page_token
    rest: list[pb.RunItem] = list(first.items)
    token = first.next_page_token
    while token:
        page = await stub.ListRunItems(pb.ListRunItemsRequest(run_id=run.run_id, page_size=4, page_token=token))
        rest += page.items
        token = page.next_page_token
    by_key = {i.key: i for i in rest}
    assert len(rest) == 10 and len(by_key) == 10
    assert by_key["Jasper"].research.tier == common_pb2.COLD
    assert by_key["Anthropic"].research.tier == common_pb2.HOT
    assert all(i.status == pb.RunItem.DONE and i.research.evidence_urls and i.research.cost_usd > 0 for i in rest)

    # Resuming a completed run with nothing to do is a no-op; cancelling it is not allowed.
    again = await stub.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id), timeout=10)
    assert again.status == pb.Run.COMPLETED
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_then_resume_completes(stub: pb_grpc.OrchestratorServiceStub, knobs) -> None:
    # 60 items × 1 s over 10 LLM slots ≥ 6 s: the run is still going when the (batched) ITEM_DONE events of the
    # first few items reach this watcher, even on a loaded machine (30 × 0.15 s could finish first).
    knobs({"endpoints": {"openai.chat_completions": {"latency_s": 1.0}}})
    run = await stub.StartRun(
        pb.StartRunRequest(kind=pb.RESEARCH, research=pb.ResearchInput(companies=[
            pb.Company(company=f"Company {n}", domain=f"c{n}.example") for n in range(60)
        ])),
        timeout=30,
    )
    # Wait (on the stream) until a few items are done, then cancel.
    done = 0
    async for ev in stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id), timeout=60):
        done += ev.type == pb.RunEvent.ITEM_DONE
        if done >= 3:
            break
    cancelled = await stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id), timeout=30)
    assert cancelled.status == pb.Run.CANCELLED
    assert cancelled.counts.running == 0 and cancelled.counts.pending > 0
    assert 3 <= cancelled.counts.done < 60

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    resumed = await stub.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id), timeout=30)
    assert resumed.status == pb.Run.RUNNING
    events = await watch(stub, run.run_id, after=0)
    assert events[-1].type == pb.RunEvent.RUN_FINISHED
    final = await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=10)
    assert final.status == pb.Run.COMPLETED
    assert final.counts.done + final.counts.failed == 60
    done_keys = [e.item_key for e in events if e.type == pb.RunEvent.ITEM_DONE]
    assert len(done_keys) == len(set(done_keys)) == final.counts.done  # each company finished exactly once
    assert any(e.type == pb.RunEvent.RUN_CANCELLED for e in events)


async def test_listing_and_errors(stub: pb_grpc.OrchestratorServiceStub) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    for call, req in [
        (stub.GetRun, pb.GetRunRequest(run_id=missing)),
        (stub.CancelRun, pb.CancelRunRequest(run_id=missing)),
        (stub.RetryFailed, pb.RetryFailedRequest(run_id=missing)),
        (stub.ListRunItems, pb.ListRunItemsRequest(run_id=missing)),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, call
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await watch(stub, missing)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.StartRun(pb.StartRunRequest(kind=pb.ORG_EVAL, org_eval=pb.OrgEvalInput(org_name="x")), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # ORG_EVAL runs need questions (tests/evaluation)
    assert violations(e.value) == ["org_eval.questions"]

    bad = [
        (pb.StartRunRequest(kind=pb.RESEARCH), "input"),
        (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="foo,bar\n1,2\n"), "input"),
        (pb.StartRunRequest(kind=pb.RESEARCH, input_path="no-such-file.csv"), "input_path"),
        (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\n\n"), "input"),
        (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\nA\n",
                            research_options=pb.ResearchOptions(min_score=2.0)), "research_options.min_score"),
        (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\nA\n",
                            research_options=pb.ResearchOptions(model="no-such-model")), "research_options.model"),
        (pb.StartRunRequest(kind=pb.RUN_KIND_UNSPECIFIED, input_csv="company\nA\n"), "kind"),
    ]
    for req, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartRun(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, req
        assert field in violations(e.value), (req, violations(e.value))
    # A malformed run id is the caller's mistake (INVALID_ARGUMENT), not an unknown run.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.ResumeRun(pb.ResumeRunRequest(run_id="nope"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e.value) == ["run_id"]
    # Outside VANTAGE_INPUT_DIR: refused, whatever exists there.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_path="/no/such/file.csv"), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # detach: queued (PENDING) without executing; ListRuns pages and filters by status.
    ids = []
    for n in range(3):
        r = await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_csv=f"company\nA{n}\n", detach=True))
        assert r.status == pb.Run.PENDING
        ids.append(r.run_id)
    page1 = await stub.ListRuns(pb.ListRunsRequest(page_size=2, status=pb.Run.PENDING), timeout=10)
    page2 = await stub.ListRuns(pb.ListRunsRequest(page_size=2, status=pb.Run.PENDING,
                                                   page_token=page1.next_page_token), timeout=10)
    assert len(page1.runs) == 2 and len(page2.runs) >= 1 and not page2.next_page_token
    assert {r.run_id for r in [*page1.runs, *page2.runs]} >= set(ids)
    assert all(r.status == pb.Run.PENDING for r in [*page1.runs, *page2.runs])
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.ListRuns(pb.ListRunsRequest(page_token="garbage"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # A queued run can be cancelled, then resumed here.
    c = await stub.CancelRun(pb.CancelRunRequest(run_id=ids[0]), timeout=10)
    assert c.status == pb.Run.CANCELLED
    await stub.ResumeRun(pb.ResumeRunRequest(run_id=ids[0]), timeout=10)
    await asyncio.wait_for(watch(stub, ids[0]), 30)
    final = await stub.GetRun(pb.GetRunRequest(run_id=ids[0]), timeout=10)
    assert final.status == pb.Run.COMPLETED and final.counts.done == 1
