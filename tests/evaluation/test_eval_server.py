"""OrchestratorService/StartRun with kind ORG_EVAL through a real grpc.aio server (in-process) with the real downstream
services and the sandbox: inline OrgEvalInput and questions_text + org_eval_options, WatchRun to the end, GetRun and
ListRunItems, and the INVALID_ARGUMENT answers (with BadRequest fields) for a bad org or model."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from eval_testkit import QUESTIONS
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.orchestrator.api.server import build
from services.orchestrator.reports.visibility import build_report
from services.orchestrator.store import open_store
from shared.config import Settings
from shared.grpc_server import serving
from vantage.orchestrator.v1 import orchestrator_pb2 as pb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

QUESTION_LIST = [
    "What are the best GPU cloud providers for training large language models?",
    "Which platforms offer serverless inference for open-source models like Llama and DeepSeek?",
]


@pytest.fixture
async def server(services: Settings, db_url: str) -> AsyncIterator[tuple[pb_grpc.OrchestratorServiceStub, str]]:
    settings = services.model_copy(update={"database_url": db_url, "watch_poll_seconds": 0.1})
    async with serving("orchestrator", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        yield pb_grpc.OrchestratorServiceStub(ch), db_url


async def watch(stub: pb_grpc.OrchestratorServiceStub, run_id: str) -> list[pb.RunEvent]:
    return [ev async for ev in stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=90)]


def violations(e: grpc.aio.AioRpcError) -> list[str]:
    st = rpc_status.from_call(e)
    out: list[str] = []
    for d in st.details if st else []:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out += [v.field for v in br.field_violations]
    return out


async def test_start_run_org_eval_inline_then_watch_to_the_end(
    server: tuple[pb_grpc.OrchestratorServiceStub, str],
) -> None:
    stub, db_url = server
    req = pb.StartRunRequest(
        kind=pb.ORG_EVAL, samples=1, name="grpc-eval",
        org_eval=pb.OrgEvalInput(
            org_name="Together AI", org_domain="together.ai", questions=QUESTION_LIST,
            models=["chatgpt", "perplexity", "gpt-4.1", "claude-sonnet-5"], locations=["US", "GB"],
            known_competitors=["CoreWeave"],
        ),
    )
    run = await stub.StartRun(req, timeout=30)
    assert run.kind == pb.ORG_EVAL and run.status == pb.Run.RUNNING and run.counts.total == 16
    assert run.name == "grpc-eval"

    events = await watch(stub, run.run_id)  # ends by itself when the run ends
    types = Counter(pb.RunEvent.Type.Name(e.type) for e in events)
    assert types["RUN_STARTED"] == 1 and types["ITEM_DONE"] == 16 and types["RUN_FINISHED"] == 1
    assert "ITEM_FAILED" not in types
    last = events[-1]
    assert last.type == pb.RunEvent.RUN_FINISHED and last.run.status == pb.Run.COMPLETED
    assert last.run.counts.done == 16 and last.run.cost_usd > 0
    done_keys = {e.item_key for e in events if e.type == pb.RunEvent.ITEM_DONE}
    assert any(k.startswith("chatgpt US · Q1 ") for k in done_keys)
    assert all(("named #" in e.message or "not named" in e.message) for e in events
               if e.type == pb.RunEvent.ITEM_DONE)

    got = await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=10)
    assert got.status == pb.Run.COMPLETED and got.counts.done == 16 and got.kind == pb.ORG_EVAL
    items = await stub.ListRunItems(pb.ListRunItemsRequest(run_id=run.run_id, page_size=100), timeout=10)
    assert len(items.items) == 16 and {i.status for i in items.items} == {pb.RunItem.DONE}
    results = [i.question_run for i in items.items]
    assert {(q.model, q.location) for q in results} == {
        (m, loc) for m in ("chatgpt", "perplexity", "gpt-4.1", "claude-sonnet-5") for loc in ("US", "GB")
    }
    assert {q.question for q in results} == set(QUESTION_LIST)
    assert all(q.sentiment and q.citations > 0 and q.competitors and q.cost_usd >= 0 for q in results)
    assert all(q.rank > 0 for q in results if q.mentioned) and any(q.mentioned for q in results)
    assert all(q.snapshot_id and q.provider.startswith("brightdata_") for q in results
               if q.model in ("chatgpt", "perplexity"))
    page = await stub.ListRunItems(pb.ListRunItemsRequest(run_id=run.run_id, page_size=5, page_token=""), timeout=10)
    second = await stub.ListRunItems(pb.ListRunItemsRequest(run_id=run.run_id, page_size=5,
                                                            page_token=page.next_page_token), timeout=10)
    assert [i.question_run.question for i in second.items] == [i.question_run.question for i in items.items[5:10]]

    store = await open_store(db_url)
    try:
        rep = await build_report(store, run.run_id)
    finally:
        await store.close()
    assert rep.processed == 16 and rep.overall.answers == 16 and len(rep.groups) == 8
    assert rep.snapshots == 4 and rep.max_snapshot_size == 2
    assert rep.totals.cost_usd == pytest.approx(got.cost_usd)


async def test_start_run_org_eval_from_a_questions_file(server: tuple[pb_grpc.OrchestratorServiceStub, str]) -> None:
    stub, _ = server
    # The client sends the file's content (the server reads no client-named path; tests/orchestrator/
    # test_orch_hardening.py covers input_path under VANTAGE_INPUT_DIR).
    req = pb.StartRunRequest(
        kind=pb.ORG_EVAL, samples=1, questions_text=QUESTIONS.read_text(),
        org_eval_options=pb.OrgEvalInput(org_name="Together AI", org_domain="together.ai", models=["gpt-4.1"],
                                         locations=["US"]),
    )
    run = await stub.StartRun(req, timeout=30)
    assert run.counts.total == 20 and run.name == "Together AI visibility"
    events = await watch(stub, run.run_id)
    assert events[-1].run.status == pb.Run.COMPLETED and events[-1].run.counts.done == 20


async def test_start_run_org_eval_errors(server: tuple[pb_grpc.OrchestratorServiceStub, str]) -> None:
    stub, _ = server

    async def refused(req: pb.StartRunRequest) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartRun(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        return e.value

    base = pb.OrgEvalInput(org_name="Together AI", questions=QUESTION_LIST, models=["chatgpt"], locations=["US"])
    e = await refused(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=pb.OrgEvalInput(
        org_name="", questions=QUESTION_LIST, models=["chatgpt"], locations=["USA"])))
    assert set(violations(e)) == {"org_eval.org_name", "org_eval.locations"}
    bad_model = pb.OrgEvalInput()
    bad_model.CopyFrom(base)
    bad_model.models[:] = ["chatgpt", "llama-unknown"]
    e = await refused(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=bad_model))
    assert violations(e) == ["org_eval.models"] and "llama-unknown" in (e.details() or "")
    e = await refused(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=pb.OrgEvalInput(org_name="X", models=["gpt-4.1"])))
    assert violations(e) == ["org_eval.questions"]
    e = await refused(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, input_csv="company\nAcme\n"))
    assert violations(e) == ["input_csv"]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.StartRun(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, input_path="/nonexistent/questions.txt",
                                               org_eval_options=base), timeout=30)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "VANTAGE_INPUT_DIR" in (denied.value.details() or "")
    runs = await stub.ListRuns(pb.ListRunsRequest(), timeout=10)
    assert not runs.runs  # nothing was created by a refused request
