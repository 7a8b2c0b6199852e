"""The synchronous client against ``grpc_testing`` channels: each test scripts the server side of the RPCs the
client makes (responses, status codes, trailing metadata with rich details) and checks the requests it sent, the
dataclasses it returned and the exceptions it raised. grpc_testing has no grpc.aio support (grpc/grpc#24942), so the
async client is tested against the real stack (test_client_e2e)."""

from __future__ import annotations

import csv
import io
import json
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from vantage_client import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RunKind,
    RunStatus,
    Unauthenticated,
    Unavailable,
    VantageClient,
    VantageError,
    service_config,
)
from vantage_client._pb.vantage.common.v1 import common_pb2
from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2 as opb
from vantage_client.errors import STATUS_DETAILS_KEY

SERVICE = opb.DESCRIPTOR.services_by_name["OrchestratorService"]
RID = "4f1c1f8e-2d6b-4c44-9d8e-6b3a3c1e9a10"


def method(name: str) -> Any:
    return SERVICE.methods_by_name[name]


@pytest.fixture
def channel() -> grpc_testing.Channel:
    return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as ex:
        yield ex


@pytest.fixture
def client(channel: grpc_testing.Channel) -> Iterator[VantageClient]:
    c = VantageClient(channels={"orchestrator": channel})
    yield c
    c.close()


def in_thread(pool: ThreadPoolExecutor, fn: Callable[[], Any]) -> Future[Any]:
    """The client call runs in a thread while the test plays the server on this one."""
    return pool.submit(fn)


def run_pb(status: int = opb.Run.RUNNING, **kw: Any) -> opb.Run:
    base: dict[str, Any] = {"run_id": RID, "kind": opb.RESEARCH, "status": status, "name": "t",
                            "counts": opb.RunCounts(total=3, done=1, pending=2)}
    return opb.Run(**(base | kw))


def rich(code: grpc.StatusCode, message: str, *details: Any) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying a google.rpc.Status with ``details`` (as grpcio-status sends it)."""
    st = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    for d in details:
        st.details.add().Pack(d)
    return ((STATUS_DETAILS_KEY, st.SerializeToString()),)


def fail_unary(channel: grpc_testing.Channel, name: str, code: grpc.StatusCode, message: str,
               trailing: tuple[tuple[str, bytes], ...] = ()) -> Any:
    _md, request, rpc = channel.take_unary_unary(method(name))
    rpc.terminate(None, trailing, code, message)
    return request


def test_get_run_returns_a_dataclass_and_sends_the_token(channel: grpc_testing.Channel,
                                                         pool: ThreadPoolExecutor) -> None:
    client = VantageClient("localhost:1", token="s3cret", channels={"orchestrator": channel})
    fut = in_thread(pool, lambda: client.get_run(RID))
    md, request, rpc = channel.take_unary_unary(method("GetRun"))
    assert request.run_id == RID
    assert ("authorization", "Bearer s3cret") in md  # shared/security.py: authorization: Bearer <token>
    rpc.terminate(run_pb(opb.Run.COMPLETED, cost_usd=0.25, credits=12, usage=common_pb2.Usage(input_tokens=7),
                         error=""), (), grpc.StatusCode.OK, "")
    run = fut.result(timeout=30)
    assert run.run_id == RID and run.status is RunStatus.COMPLETED and run.kind is RunKind.RESEARCH
    assert run.finished and run.counts.total == 3 and run.cost_usd == 0.25 and run.credits == 12
    assert run.input_tokens == 7 and run.created_at is None
    assert "s3cret" not in repr(client._conns["orchestrator"])  # the token stays out of reprs
    client.close()


def test_invalid_argument_carries_the_field_violations(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.get_run("nope"))
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="run_id", description="a run id (UUID, 36 chars)")])
    info = error_details_pb2.ErrorInfo(reason="BAD_RUN_ID", domain="vantage", metadata={"limit": "36"})
    fail_unary(channel, "GetRun", grpc.StatusCode.INVALID_ARGUMENT, "run_id: not a run id",
               rich(grpc.StatusCode.INVALID_ARGUMENT, "run_id: not a run id", bad, info))
    with pytest.raises(InvalidArgument) as e:
        fut.result(timeout=30)
    err = e.value
    assert not isinstance(err, grpc.RpcError)
    assert err.fields == ["run_id"] and err.field_violations[0].description == "a run id (UUID, 36 chars)"
    assert err.message == "run_id: not a run id" and err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.reason, err.domain, err.metadata) == ("BAD_RUN_ID", "vantage", {"limit": "36"})
    assert str(err) == "GetRun: INVALID_ARGUMENT: run_id: not a run id"


def test_unavailable_carries_retry_after(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.get_run(RID))
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000))
    fail_unary(channel, "GetRun", grpc.StatusCode.UNAVAILABLE, "provider busy",
               rich(grpc.StatusCode.UNAVAILABLE, "provider busy", retry))
    with pytest.raises(Unavailable) as e:
        fut.result(timeout=30)
    assert e.value.retry_after == 2.5


@pytest.mark.parametrize(("code", "cls"), [
    (grpc.StatusCode.NOT_FOUND, NotFound),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
    (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
    (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
    (grpc.StatusCode.UNAVAILABLE, Unavailable),
    (grpc.StatusCode.ABORTED, VantageError),
])
def test_status_codes_map_to_exceptions(channel, client, pool, code: grpc.StatusCode, cls: type) -> None:
    fut = in_thread(pool, lambda: client.cancel(RID))
    fail_unary(channel, "CancelRun", code, f"because {code.name}")
    with pytest.raises(VantageError) as e:
        fut.result(timeout=30)
    assert type(e.value) is cls and e.value.code == code and e.value.message == f"because {code.name}"
    assert not isinstance(e.value, grpc.RpcError)
    if cls is Unavailable:
        assert e.value.retry_after is None  # no RetryInfo sent


def test_corrupt_rich_details_still_give_the_status(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.get_run(RID))
    fail_unary(channel, "GetRun", grpc.StatusCode.INVALID_ARGUMENT, "bad", ((STATUS_DETAILS_KEY, b"\xff\x00garbage"),))
    with pytest.raises(InvalidArgument) as e:
        fut.result(timeout=30)
    assert e.value.field_violations == [] and e.value.message == "bad"


def event(seq: int, kind: int, key: str = "", run: opb.Run | None = None) -> opb.RunEvent:
    ev = opb.RunEvent(sequence=seq, type=kind, run_id=RID, item_key=key)
    if run is not None:
        ev.run.CopyFrom(run)
    return ev


def test_wait_resumes_the_stream_after_a_disconnect(channel, client, pool) -> None:
    seen: queue.Queue[tuple[int, str]] = queue.Queue()
    fut = in_thread(pool, lambda: client.wait(RID, on_progress=lambda e: seen.put((e.sequence, e.type))))

    _md, req, rpc = channel.take_unary_stream(method("WatchRun"))
    assert req.run_id == RID and req.after_sequence == 0
    rpc.send_response(event(1, opb.RunEvent.RUN_STARTED))
    rpc.send_response(event(2, opb.RunEvent.ITEM_DONE, "Anthropic"))
    # grpc_testing drops undelivered responses on an error status (real gRPC delivers them first): let the client
    # read both before the server goes away mid-stream.
    got = [seen.get(timeout=30), seen.get(timeout=30)]
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "connection reset")

    _md, req, rpc = channel.take_unary_stream(method("WatchRun"))
    assert req.after_sequence == 2  # resumed after the last event seen: none delivered twice
    rpc.send_response(event(3, opb.RunEvent.ITEM_DONE, "Jasper"))
    rpc.terminate((), grpc.StatusCode.OK, "")  # the stream ends before the run: the client asks GetRun

    _md, req, rpc = channel.take_unary_unary(method("GetRun"))
    rpc.terminate(run_pb(opb.Run.RUNNING), (), grpc.StatusCode.OK, "")

    _md, req, rpc = channel.take_unary_stream(method("WatchRun"))
    assert req.after_sequence == 3
    rpc.send_response(event(4, opb.RunEvent.RUN_FINISHED, run=run_pb(opb.Run.COMPLETED)))
    rpc.terminate((), grpc.StatusCode.OK, "")

    run = fut.result(timeout=30)
    assert run.status is RunStatus.COMPLETED
    got += [seen.get_nowait() for _ in range(seen.qsize())]
    assert got == [(1, "RUN_STARTED"), (2, "ITEM_DONE"), (3, "ITEM_DONE"), (4, "RUN_FINISHED")]


def test_wait_raises_a_non_transient_stream_error(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.wait(RID))
    _md, _req, rpc = channel.take_unary_stream(method("WatchRun"))
    rpc.terminate((), grpc.StatusCode.NOT_FOUND, "no run")
    with pytest.raises(NotFound):
        fut.result(timeout=30)


def test_wait_gives_up_after_the_reconnect_budget(channel, pool) -> None:
    client = VantageClient(channels={"orchestrator": channel}, reconnect_attempts=2)
    fut = in_thread(pool, lambda: client.wait(RID))
    for _ in range(3):
        _md, _req, rpc = channel.take_unary_stream(method("WatchRun"))
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=1_000_000))
        rpc.terminate(rich(grpc.StatusCode.UNAVAILABLE, "down", retry), grpc.StatusCode.UNAVAILABLE, "down")
    with pytest.raises(Unavailable) as e:
        fut.result(timeout=30)
    assert e.value.retry_after == 0.001


def test_list_runs_pages_lazily(channel, client, pool) -> None:
    it = client.list_runs(status="completed", page_size=2)
    fut = in_thread(pool, lambda: [r.name for r in it])
    _md, req, rpc = channel.take_unary_unary(method("ListRuns"))
    assert (req.page_size, req.page_token, req.status) == (2, "", opb.Run.COMPLETED)
    rpc.terminate(opb.ListRunsResponse(runs=[run_pb(name="a"), run_pb(name="b")], next_page_token="p2"), (),
                  grpc.StatusCode.OK, "")
    _md, req, rpc = channel.take_unary_unary(method("ListRuns"))
    assert req.page_token == "p2"
    rpc.terminate(opb.ListRunsResponse(runs=[run_pb(name="c")]), (), grpc.StatusCode.OK, "")
    assert fut.result(timeout=30) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="status"):
        next(client.list_runs(status="finished"))


def test_research_sends_content_inline_or_through_upload(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.research(companies=[("Anthropic", "anthropic.com"), ("Jasper", "")],
                                                  name="n", model="gpt-5.4-mini", min_score=0.5))
    _md, req, rpc = channel.take_unary_unary(method("StartRun"))
    assert req.kind == opb.RESEARCH and req.WhichOneof("input") == "research"
    assert [(c.company, c.domain) for c in req.research.companies] == [("Anthropic", "anthropic.com"), ("Jasper", "")]
    assert req.research_options.model == "gpt-5.4-mini" and req.research_options.min_score == 0.5
    rpc.terminate(run_pb(), (), grpc.StatusCode.OK, "")
    assert fut.result(timeout=30).status is RunStatus.RUNNING

    big = "company,domain\n" + "".join(f"Company {i},c{i}.example\n" for i in range(60_000))  # > 1 MiB
    assert len(big.encode()) > 1024 * 1024
    fut = in_thread(pool, lambda: client.research(csv_text=big, name="big.csv"))
    _md, up = channel.take_stream_unary(method("UploadInput"))
    up.requests_closed()  # blocks until the client has sent its last chunk
    chunks = [up.take_request() for _ in range(-(-len(big.encode()) // (1024 * 1024)))]  # 1 MiB chunks
    assert chunks[0].filename == "big.csv" and b"".join(c.data for c in chunks) == big.encode()
    up.terminate(opb.UploadInputResponse(upload_id="u-1", size_bytes=len(big)), (), grpc.StatusCode.OK, "")
    _md, req, rpc = channel.take_unary_unary(method("StartRun"))
    assert req.WhichOneof("input") == "upload_id" and req.upload_id == "u-1"
    rpc.terminate(run_pb(), (), grpc.StatusCode.OK, "")
    fut.result(timeout=30)

    with pytest.raises(ValueError, match="exactly one"):
        client.research()
    with pytest.raises(ValueError, match=r"companies\[0\]"):
        client.research(companies=["Anthropic"])  # type: ignore[list-item]


def test_evaluate_builds_the_matrix_and_handles_samples(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.evaluate("Together AI", ["Who serves Llama?"], ["gpt-5.5"], ["US"],
                                                  org_domain="together.ai"))
    _md, req, rpc = channel.take_unary_unary(method("StartRun"))
    assert req.kind == opb.ORG_EVAL and req.WhichOneof("input") == "org_eval"
    e = req.org_eval
    assert (e.org_name, e.org_domain, list(e.questions), list(e.models), list(e.locations)) == (
        "Together AI", "together.ai", ["Who serves Llama?"], ["gpt-5.5"], ["US"])
    rpc.terminate(run_pb(kind=opb.ORG_EVAL), (), grpc.StatusCode.OK, "")
    assert fut.result(timeout=30).kind is RunKind.ORG_EVAL

    assert req.samples == 0 and req.reuse_answers == ""  # 0: the server's default (3)

    fut = in_thread(pool, lambda: client.evaluate("Together AI", ["Q?"], ["gpt-5.5"], samples=3,
                                                  reuse_answers="3f2a9c1e"))
    _md, req, rpc = channel.take_unary_unary(method("StartRun"))
    assert (req.samples, req.reuse_answers) == (3, "3f2a9c1e")
    rpc.terminate(run_pb(kind=opb.ORG_EVAL), (), grpc.StatusCode.OK, "")
    fut.result(timeout=30)
    for bad in (-1, 21):
        with pytest.raises(ValueError, match="samples"):
            client.evaluate("Together AI", ["Q?"], ["gpt-5.5"], samples=bad)
    with pytest.raises(TypeError, match="models"):
        client.evaluate("Together AI", ["Q?"], "gpt-5.5")  # type: ignore[arg-type]


def item(key: str, **kw: Any) -> opb.RunItem:
    return opb.RunItem(item_id=key, key=key, status=opb.RunItem.DONE, **kw)


def serve_items(channel: grpc_testing.Channel, run: opb.Run, items: list[opb.RunItem]) -> None:
    _md, _req, rpc = channel.take_unary_unary(method("GetRun"))
    rpc.terminate(run, (), grpc.StatusCode.OK, "")
    _md, req, rpc = channel.take_unary_unary(method("ListRunItems"))
    assert req.run_id == RID
    rpc.terminate(opb.ListRunItemsResponse(items=items), (), grpc.StatusCode.OK, "")


def test_export_csv_escapes_formula_cells_and_report_counts(channel, client, pool) -> None:
    items = [item("=HYPERLINK(\"x\")", research=opb.ResearchResult(tier=common_pb2.HOT, score=90,
                                                                    rationale="+1+1", evidence_urls=["https://a"])),
             item("Jasper", research=opb.ResearchResult(tier=common_pb2.COLD, score=10))]
    fut = in_thread(pool, lambda: client.export(RID, "csv"))
    serve_items(channel, run_pb(opb.Run.COMPLETED), items)
    rows = list(csv.DictReader(io.StringIO(fut.result(timeout=30))))
    assert rows[0]["key"] == "'=HYPERLINK(\"x\")" and rows[0]["rationale"] == "'+1+1" and rows[0]["tier"] == "HOT"
    assert rows[1]["key"] == "Jasper" and rows[1]["tier"] == "COLD"

    fut = in_thread(pool, lambda: client.report(RID))
    serve_items(channel, run_pb(opb.Run.COMPLETED), items)
    assert fut.result(timeout=30).tiers == {"HOT": 1, "COLD": 1}

    qr = [item("q1", question_run=opb.QuestionRunResult(question="Q", model="gpt-5.5", location="US", mentioned=True,
                                                        rank=2, sentiment="POSITIVE", competitors=["Fireworks"],
                                                        citations=4, owned_citations=1)),
          item("q2", question_run=opb.QuestionRunResult(question="Q", model="gpt-5.5", location="US",
                                                        competitors=["Fireworks", "Groq"], citations=4))]
    fut = in_thread(pool, lambda: client.report(RID))
    serve_items(channel, run_pb(opb.Run.COMPLETED, kind=opb.ORG_EVAL), qr)
    rep = fut.result(timeout=30)
    assert (rep.evaluated, rep.visibility_rate, rep.average_rank) == (2, 0.5, 2.0)
    assert rep.sentiments == {"POSITIVE": 1} and rep.top_competitors == (("Fireworks", 2), ("Groq", 1))
    assert rep.owned_citation_share == 1 / 8 and rep.groups[0].visibility_rate == 0.5

    fut = in_thread(pool, lambda: client.export(RID, "json"))
    serve_items(channel, run_pb(opb.Run.COMPLETED, kind=opb.ORG_EVAL), qr)
    doc = json.loads(fut.result(timeout=30))
    assert doc["run"]["kind"] == "ORG_EVAL" and [r["mentioned"] for r in doc["items"]] == [True, False]
    with pytest.raises(ValueError, match="format"):
        client.export(RID, "xlsx")


def test_diff_returns_a_dataclass(channel, client, pool) -> None:
    fut = in_thread(pool, lambda: client.diff(RID, RID, seed=5))
    _md, request, rpc = channel.take_unary_unary(method("DiffRuns"))
    assert (request.run_a, request.run_b, request.seed, request.resamples) == (RID, RID, 5, 0)
    est = opb.DiffEstimate
    fig = opb.DiffFigure(name="visibility_rate", a=est(value=0.8, ci_low=0.6, ci_high=0.9, n=40),
                         b=est(value=0.3, ci_low=0.2, ci_high=0.45, n=40), delta=est(value=-0.5, n=40),
                         verdict="moved_down", unit="answers")
    none = opb.DiffFigure(name="median_rank", a=est(n=0), b=est(n=0), delta=est(n=0), verdict="insufficient_data",
                          needed_n=12)
    rpc.terminate(opb.DiffRunsResponse(kind=opb.ORG_EVAL, run_a=RID, run_b=RID, basket=40, seed=5,
                                       cells=[opb.DiffCell(model="all", location="all", questions=20,
                                                           figures=[fig, none])],
                                       notes=["model versions: not stored"]), (), grpc.StatusCode.OK, "")
    d = fut.result(timeout=30)
    assert d.kind is RunKind.ORG_EVAL and d.basket == 40 and d.overall is not None and d.companies == []
    vis = d.overall.figures["visibility_rate"]
    assert vis.verdict == "moved_down" and vis.a.ci_low == 0.6 and vis.delta.value == -0.5
    assert vis.delta.ci_low is None and vis.needed_n is None  # unset optional fields → None, not 0
    rank = d.overall.figures["median_rank"]
    assert rank.a.value is None and rank.needed_n == 12

    fut = in_thread(pool, lambda: client.diff(RID, RID))
    _md, _req, rpc = channel.take_unary_unary(method("DiffRuns"))
    rpc.terminate(opb.DiffRunsResponse(kind=opb.RESEARCH, companies=[
        opb.CompanyDiff(company="Cohere", tier_a="WARM", tier_b="HOT", tier_change="up", score_a=60, score_b=85,
                        new_evidence_urls=["https://cohere.com/x"]),
        opb.CompanyDiff(company="Jasper", tier_b="COLD", tier_change="new", score_b=0)]), (), grpc.StatusCode.OK, "")
    d = fut.result(timeout=30)
    cohere, jasper = d.companies
    assert d.kind is RunKind.RESEARCH and cohere.tier_change == "up" and cohere.new_evidence_urls == ["https://cohere.com/x"]
    assert jasper.score_a is None and jasper.score_b == 0 and jasper.tier_a == ""

    fut = in_thread(pool, lambda: client.diff(RID, RID))
    fail_unary(channel, "DiffRuns", grpc.StatusCode.NOT_FOUND, "run_a: run not found")
    with pytest.raises(NotFound):
        fut.result(timeout=30)


def test_service_config_retries_only_idempotent_rpcs() -> None:
    cfg = json.loads(service_config())
    assert cfg["loadBalancingConfig"] == [{"round_robin": {}}]
    (mc,) = cfg["methodConfig"]
    names = {(n["service"].rsplit(".", 1)[1], n["method"]) for n in mc["name"]}
    assert ("OrchestratorService", "GetRun") in names and ("OrchestratorService", "WatchRun") in names
    for unsafe in ("StartRun", "UploadInput", "ResumeRun", "RetryFailed", "CancelRun"):
        assert ("OrchestratorService", unsafe) not in names
    assert ("InferenceService", "Complete") not in names and ("InferenceService", "CancelBatch") not in names
    assert mc["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"] and mc["retryPolicy"]["maxAttempts"] == 4
    with pytest.raises(ValueError):
        service_config(max_attempts=9)


def test_close_keeps_injected_channels_and_refuses_calls(channel) -> None:
    with VantageClient(channels={"orchestrator": channel}) as c:
        pass
    with pytest.raises(ValueError, match="closed"):
        c.get_run(RID)
    with pytest.raises(ValueError, match="search target"):
        VantageClient(channels={"orchestrator": channel}).search_company("Anthropic")
    with pytest.raises(ValueError, match="client_key"):
        VantageClient("localhost:1", client_cert=b"pem")
    with pytest.raises(ValueError, match="target"):
        VantageClient("  ")
