"""Bright Data wire details (issues #11 item 2, #18 items 4-5): ids checked and percent-encoded before they go into a
URL, the documented ``validation_error`` 400 as INVALID_ARGUMENT per field, the "did my failed trigger create a
snapshot?" check with ``from_date`` and pages, a bounded wait on an undocumented progress status, trimmed and
multi-MB downloads, ``web_search_triggered`` / ``links_attached`` per answer, and the per-token 429 budget — against
the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import grpc
import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.inference.providers import ChatMessage, CompletionRequest, CompletionResult, ItemFailure
from services.inference.providers.brightdata import (
    CHATGPT,
    BrightDataProvider,
    RateLimitBudget,
    error_of,
    new_http_client,
    path_url,
    validate_snapshot_id,
)
from services.sandbox.app import create_app
from services.sandbox.brightdata import Snapshot, SnapshotStore
from services.sandbox.config import SandboxSettings
from services.sandbox.server import bind_socket
from services.sandbox.state import SandboxState
from shared.config import Settings
from shared.errors import DeadlineExceeded, InvalidArgument, from_rpc_error
from shared.grpc_client import Deadline
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

HOSTILE_IDS = [
    "../x",
    "../../../admin/delete-everything?confirm=yes&x=",
    "s_abc\u0000def",
    "s_abc/../../trigger?dataset_id=gd_m7aof0k82r803d5bjm",
    "s_ABC",
    "s_abc%2F..",
    "s_" + "a" * 10_000,
]


def _req(i: int, model: str = "chatgpt", location: str = "US") -> CompletionRequest:
    return CompletionRequest(model=model, messages=[ChatMessage("user", f"Best GPU clouds for training? (#{i})")],
                             location=location)


def _provider(settings: Settings, http: httpx.AsyncClient, cap: int = 10) -> BrightDataProvider:
    return BrightDataProvider(settings, CHATGPT, http, anyio.CapacityLimiter(cap), has_key=True)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    client = new_http_client(settings)
    yield client
    await client.aclose()


async def _bd_calls(admin: httpx.AsyncClient) -> int:
    st = (await admin.get("/_sandbox/stats")).json()
    return sum(ep["calls"] for name, ep in st["endpoints"].items() if name.startswith("brightdata."))


# --- ids into URLs (#11 item 2) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_validate_snapshot_id_refuses_what_is_not_a_snapshot_id(bad: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        validate_snapshot_id(bad)
    assert [f for f, _ in ei.value.violations] == ["snapshot_id"]
    assert len(ei.value.message) < 200  # the hostile value is echoed escaped and cut
    assert "\u0000" not in ei.value.message
    assert validate_snapshot_id("s_m4x7enmven8djfqak") == "s_m4x7enmven8djfqak"  # the docs' example


async def test_cancel_batch_with_a_hostile_id_is_invalid_argument_and_sends_nothing(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await _bd_calls(sandbox_admin)
    for bad in HOSTILE_IDS:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.CancelBatch(pb.CancelBatchRequest(snapshot_id=bad), timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        err = from_rpc_error(ei.value)
        assert isinstance(err, InvalidArgument) and [f for f, _ in err.violations] == ["snapshot_id"]
    assert await _bd_calls(sandbox_admin) == before  # the sandbox received nothing


async def test_resume_with_a_hostile_id_fails_its_items_and_sends_nothing(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    before = await _bd_calls(sandbox_admin)
    resume = pb.CompleteStreamRequest(resume=pb.ResumeBatch(snapshot_id="../../trigger", model="chatgpt",
                                                            location="US", member_ids=["a", "b"]))
    events = [e async for e in stub.CompleteStream(iter([resume]), timeout=30)]
    results = {e.result.id: e.result for e in events if e.HasField("result")}
    assert set(results) == {"a", "b"}
    assert all(r.error.code == "INVALID_ARGUMENT" and "snapshot_id" in r.error.message for r in results.values())
    assert await _bd_calls(sandbox_admin) == before


@dataclass
class Captured:
    url: str
    targets: list[str]


@pytest.fixture
async def raw_server() -> AsyncIterator[Captured]:
    """A tiny HTTP server on port 0 that records each request's raw target and answers 404."""
    targets: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                parts = line.decode("latin-1").split()
                if len(parts) == 3:
                    targets.append(parts[1])
                while await reader.readline() not in (b"\r\n", b""):  # the headers
                    pass
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 24\r\n\r\n"
                             b"Snapshot does not exist\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Captured(f"http://127.0.0.1:{port}", targets)
    finally:
        server.close()
        await server.wait_closed()


async def test_path_segments_are_percent_encoded_on_the_wire(raw_server: Captured) -> None:
    settings = Settings(brightdata_base_url=raw_server.url + "/brightdata", brightdata_api_key="k")
    client = new_http_client(settings)
    try:
        for seg in ("a/../b?x=1#f", "..", "s_ok", "%2F", "\u00e9 \u0000"):
            await client.get(path_url(client, "progress", seg))
    finally:
        await client.aclose()
    assert raw_server.targets == [
        "/brightdata/datasets/v3/progress/a%2F..%2Fb%3Fx%3D1%23f",
        "/brightdata/datasets/v3/progress/%2E%2E",
        "/brightdata/datasets/v3/progress/s_ok",
        "/brightdata/datasets/v3/progress/%252F",
        "/brightdata/datasets/v3/progress/%C3%A9%20%00",
    ]


# --- the documented 400 (#18 item 5) -----------------------------------------------------------------------------


def test_documented_validation_error_body_names_each_field() -> None:
    # docs.brightdata.com/products/scrapers/error-codes, first row of the HTTP error table.
    body = {"error": "Invalid input provided", "code": "validation_error",
            "errors": [["url", "This field must be a valid url"], ["country", "Invalid country code"]]}
    err = error_of(httpx.Response(400, json=body), "trigger", provider="brightdata_chatgpt", label="Bright Data")
    assert isinstance(err, InvalidArgument) and err.reason == "PROVIDER_BAD_REQUEST"
    assert err.violations == [("url", "Bright Data url: This field must be a valid url"),
                              ("location", "Bright Data country: Invalid country code")]
    assert err.metadata["provider_error_code"] == "validation_error"
    assert "url: This field must be a valid url" in err.message


async def test_a_trigger_refused_for_a_field_is_invalid_argument_naming_it(settings: Settings,
                                                                           http: httpx.AsyncClient) -> None:
    with pytest.raises(InvalidArgument) as ei:
        await _provider(settings, http).submit_batch([_req(0, location="U1")], deadline=Deadline(30))
    assert ei.value.violations == [("location", "Bright Data country: must be a 2-letter country code")]


async def test_complete_carries_web_search_triggered_and_links_attached(stub: pb_grpc.InferenceServiceStub) -> None:
    r = await stub.Complete(pb.CompleteRequest(model="chatgpt", messages=[pb.Message(role="user", content="GPU?")],
                                               location="US"), timeout=60)
    assert r.HasField("web_search_triggered") and r.snapshot_id.startswith("s_")
    cited = {c.url for c in r.citations}
    assert all(link.url in cited for link in r.links_attached)  # citations hold both lists


# --- records: fields per answer, trimming, multi-MB downloads -----------------------------------------------------


async def test_trimmed_records_carry_web_search_triggered_and_links_attached(
    settings: Settings, http: httpx.AsyncClient
) -> None:
    outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(4)], deadline=Deadline(60))
    assert all(isinstance(o, CompletionResult) for o in outcomes)
    for o in outcomes:
        assert isinstance(o, CompletionResult) and isinstance(o.web_search_triggered, bool)
        assert o.text and o.markdown and o.citations


async def test_a_trigger_refusing_custom_output_fields_is_sent_again_without_it_and_big_records_parse(
    settings: Settings, http: httpx.AsyncClient, sandbox_admin: httpx.AsyncClient, sandbox_knobs: Any
) -> None:
    await sandbox_knobs({"brightdata_trigger_output_fields": False, "brightdata_answer_html_bytes": 2_500_000})
    provider = _provider(settings, http)
    before = (await sandbox_admin.get("/_sandbox/stats")).json()["endpoints"].get("brightdata.trigger", {})
    outcomes = await provider.complete_batch([_req(i) for i in range(3)], deadline=Deadline(60))
    assert all(isinstance(o, CompletionResult) and o.text for o in outcomes)
    after = (await sandbox_admin.get("/_sandbox/stats")).json()["endpoints"]["brightdata.trigger"]
    assert after["status"].get("400", 0) - before.get("status", {}).get("400", 0) == 1  # refused once
    assert after["status"]["200"] - before.get("status", {}).get("200", 0) == 1
    outcomes = await provider.complete_batch([_req(9)], deadline=Deadline(60))  # not offered again
    after2 = (await sandbox_admin.get("/_sandbox/stats")).json()["endpoints"]["brightdata.trigger"]
    assert after2["status"].get("400", 0) == after["status"].get("400", 0)


# --- progress statuses --------------------------------------------------------------------------------------------


async def test_an_undocumented_progress_status_ends_the_poll_after_the_bound(
    settings: Settings, http: httpx.AsyncClient, sandbox_knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    await sandbox_knobs({"brightdata_progress_status": "collecting", "brightdata_duration_s": 600})
    cancels = (await sandbox_admin.get("/_sandbox/stats")).json()["brightdata"]["cancels"]
    s = settings.model_copy(update={"brightdata_unknown_status_seconds": 0.5})
    (o,) = await _provider(s, http).complete_batch([_req(0)], deadline=Deadline(60))
    assert isinstance(o, ItemFailure) and o.provider_error_code == "unknown_status"
    assert "'collecting'" in o.message and "starting, running, ready, failed" in o.message
    assert (await sandbox_admin.get("/_sandbox/stats")).json()["brightdata"]["cancels"] == cancels + 1  # not left


# --- the failed-trigger check: from_date and pages ------------------------------------------------------------------


@dataclass
class OwnSandbox:
    url: str
    state: SandboxState


@pytest.fixture
async def own_sandbox() -> AsyncIterator[OwnSandbox]:
    """A sandbox app served in-process on port 0, its state at hand (to age snapshots)."""
    app = create_app(SandboxSettings(log_level="warning", brightdata_duration_s=0.2))
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 15
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "sandbox did not start"
        await asyncio.sleep(0.01)
    try:
        yield OwnSandbox(f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.sandbox)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_the_failed_trigger_check_finds_the_new_snapshot_behind_1000_older_ones(
    own_sandbox: OwnSandbox, tmp_path: Any
) -> None:
    state = own_sandbox.state
    hour_ago = time.time() - 3600
    for _ in range(1000):  # a busy account: 1,000 snapshots of an hour ago, listed before ours
        sid = SnapshotStore.new_id()
        state.snapshots.snapshots[sid] = Snapshot(
            id=sid, dataset_id=CHATGPT.dataset_id, inputs=[{"url": CHATGPT.url, "prompt": "old", "index": 1}],
            include_errors=True, custom_fields=None, duration_s=0, starting_s=0, created_mono=time.monotonic(),
            created_wall=hour_ago, error_positions=set(), dropped_positions=set())
    state.update_knobs({"endpoints": {"brightdata.trigger": {"rate_malformed": 1.0}}})  # created, answer garbled
    settings = Settings(sandbox_url=own_sandbox.url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'v.db'}",
                        brightdata_poll_seconds=0.05, retry_initial_seconds=0.01, retry_max_seconds=0.05)
    http = new_http_client(settings)
    try:
        outcomes = await _provider(settings, http).complete_batch([_req(i) for i in range(2)], deadline=Deadline(60))
    finally:
        await http.aclose()
    assert all(isinstance(o, CompletionResult) for o in outcomes)  # adopted, so answered
    assert state.stats.bd_triggers[CHATGPT.dataset_id] == 1  # paid once: no second trigger
    listed = state.stats.endpoints["brightdata.snapshots"]
    assert listed.calls == 1 and listed.status == {"200": 1}  # from_date kept the answer to one short page


# --- the 429 budget (#18 item 4) -----------------------------------------------------------------------------------


async def test_budget_pauses_every_call_after_a_429_for_retry_after() -> None:
    budget = RateLimitBudget("t-pause", budget=10, window=60)
    async with budget.slot():
        assert budget.record(429, 0.3) == 0.3  # Retry-After, not the back-off
    resume_at = time.monotonic() + budget.status()["paused_s"]
    async with budget.slot(Deadline(5)):
        entered = time.monotonic()
        budget.record(200, None)
    assert entered >= resume_at  # no call went out before the pause ended (an ordering, not a speed figure)
    assert budget.status()["paused_s"] == 0


async def test_budget_without_retry_after_backs_off_exponentially() -> None:
    budget = RateLimitBudget("t-backoff", budget=10, window=60, backoff=2.0, backoff_max=32.0)
    assert [budget.record(429, None) for _ in range(7)] == [2, 4, 8, 16, 32, 32, 32]  # docs: 2, 4, 8, 16, 32 s
    budget.record(200, None)
    assert budget.record(429, None) == 2


async def test_budget_keeps_in_flight_plus_window_below_the_budget() -> None:
    budget = RateLimitBudget("t-cap", budget=3, window=0.6, backoff=0)
    inside = 0
    most = 0
    statuses = iter([429, 429] + [200] * 30)

    async def call() -> None:
        nonlocal inside, most
        async with budget.slot(Deadline(20)):
            inside += 1
            most = max(most, inside + budget.in_window())
            await asyncio.sleep(0.01)
            inside -= 1
            budget.record(next(statuses), 0.0)

    await asyncio.gather(*(call() for _ in range(20)))
    assert most <= 3 and budget.received == 2


async def test_budget_deadline_while_paused_is_deadline_exceeded() -> None:
    budget = RateLimitBudget("t-deadline", budget=1, window=60)
    budget.record(429, None)  # the budget of 1 is used up for 60 s
    with pytest.raises(DeadlineExceeded):
        async with budget.slot(Deadline(0.2)):
            pass


async def test_budget_warns_at_5_and_exposes_metrics() -> None:
    budget = RateLimitBudget("t-warn", budget=10, warn_at=5, window=60, backoff=0)
    with capture_logs() as logs:
        for _ in range(5):
            budget.record(429, 0.0)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["event"] == "brightdata_429_budget" and warnings[0]["in_window"] == 5
    assert REGISTRY.get_sample_value("brightdata_429_total", {"budget": "t-warn"}) == 5
    assert REGISTRY.get_sample_value("brightdata_429_window", {"budget": "t-warn"}) == 5


async def test_every_call_429_never_reaches_the_block(settings: Settings, sandbox_admin: httpx.AsyncClient,
                                                      sandbox_knobs: Any) -> None:
    # Every Bright Data call answers 429 for the whole test; a budget of 3 per 1 s window against a sandbox that
    # blocks at 4 per 1 s: the calls fail (or time out), the IP is never blocked.
    (await sandbox_admin.post("/_sandbox/reset")).raise_for_status()
    await sandbox_knobs({"brightdata_block_after_429s": 4, "brightdata_block_window_s": 1.0,
                         "endpoints": {"brightdata": {"rate_429": 1.0, "retry_after_s": 0.05}}})
    s = settings.model_copy(update={"brightdata_429_budget": 3, "brightdata_429_window_seconds": 1.0,
                                    "brightdata_429_retries": 20})
    http = new_http_client(s)
    try:
        provider = _provider(s, http)
        results = await asyncio.gather(*(provider.submit_batch([_req(i)], deadline=Deadline(3)) for i in range(5)),
                                       return_exceptions=True)
        limited = (await sandbox_admin.get("/_sandbox/stats")).json()["brightdata"]["rate_limited"]
    finally:
        await http.aclose()
        (await sandbox_admin.post("/_sandbox/reset")).raise_for_status()  # never leave the shared sandbox blocked
    assert all(isinstance(r, Exception) for r in results)
    assert limited["blocked"] is False and 3 < limited["total"] and limited["max_in_window"] <= 3
