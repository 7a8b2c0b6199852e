"""Bright Data Datasets API v3 contract (tests/contract/README.md): each fixture in ``fixtures/brightdata/`` —
trigger, progress, snapshot download (records and the 202 "building"), snapshot list, cancel and the documented
error bodies — is run two ways.

1. Our client (``services.inference.providers.brightdata.BrightDataProvider`` over httpx) is pointed at a loopback
   server answering the documented responses: it parses them into answers (text, citations, ``web_search_triggered``),
   waits on ``running`` / 202, fails a ``failed`` snapshot with its ``error_message``, finds its snapshot in the
   list, cancels, and maps each documented error to the :mod:`shared.errors` error our callers rely on.
2. The sandbox answers each fixture's documented request (over real HTTP, no client in between) with the documented
   status and a body valid against the same fixture's schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import grpc
import httpx
import pytest
from contract_kit import ContractFixture, assert_matches_fixture, fixtures_of, load_fixture

from services.inference.providers import ChatMessage, CompletionRequest, CompletionResult, ItemFailure
from services.inference.providers.brightdata import CHATGPT, BrightDataProvider, new_http_client
from shared.config import Settings
from shared.errors import VantageError
from shared.grpc_client import Deadline

KEY = "bd-contract-test-key"
DOC_SID = "s_m4x7enmven8djfqak"  # the docs' example snapshot id, in the fixtures' paths

#: error fixture → (gRPC status, reason) our client raises for it (brightdata.error_of, errors.map_status).
ERRORS = {
    "trigger_400_validation_error": (grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_BAD_REQUEST"),
    "trigger_400_parse_error": (grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_BAD_REQUEST"),
    "trigger_400_no_data": (grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_BAD_REQUEST"),
    "trigger_401_credentials_missing": (grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_AUTH"),
    "trigger_404_collector_not_found": (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
}
OTHERS = {"trigger_200_snapshot_id", "progress_running", "progress_ready", "progress_failed", "snapshot_202_building",
          "snapshot_200_chatgpt_records", "snapshots_list", "cancel_200_ok"}


def test_every_brightdata_fixture_is_covered_here() -> None:
    assert {fx.name for fx in fixtures_of("brightdata")} == set(ERRORS) | OTHERS


def _req(fx: ContractFixture) -> CompletionRequest:
    first = fx.request["json"][0] if fx.request.get("json") else {"prompt": "Top hotels in New York"}
    return CompletionRequest(model="chatgpt", messages=[ChatMessage("user", first["prompt"])], location="US")


class Client:
    """Our provider pointed at a documented server (``base``)."""

    def __init__(self, base: str, **overrides: Any) -> None:
        self.settings = Settings(brightdata_base_url=base, brightdata_api_key=KEY, brightdata_poll_seconds=0.01,
                                 retry_attempts=1, retry_initial_seconds=0.01, retry_max_seconds=0.02,
                                 provider_max_attempts=1, **overrides)
        self.http = new_http_client(self.settings)
        self.provider = BrightDataProvider(self.settings, CHATGPT, self.http, anyio.CapacityLimiter(5), has_key=True)

    async def __aenter__(self) -> BrightDataProvider:
        return self.provider

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()


def _query(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query)


# --- way 1: our client against the documented answers ---------------------------------------------------------


async def test_client_triggers_as_documented_and_parses_the_documented_records(documented_server: Any) -> None:
    trigger, ready, records = (load_fixture("brightdata", n) for n in
                               ("trigger_200_snapshot_id", "progress_ready", "snapshot_200_chatgpt_records"))
    for fx in (trigger, ready, records):
        documented_server.serve(fx)
    async with Client(documented_server.url) as provider:
        (o,) = await provider.complete_batch([_req(trigger)], deadline=Deadline(20))
    assert isinstance(o, CompletionResult), o
    doc = records.body[0]
    assert (o.text, o.model, o.snapshot_id) == (doc["answer_text"], doc["model"], DOC_SID)
    assert o.web_search_triggered is True
    assert [(c.url, c.title) for c in o.citations] == [(c["url"], c["title"]) for c in doc["citations"]]
    sent = documented_server.received[0]
    assert (sent.method, urlsplit(sent.path).path) == ("POST", "/datasets/v3/trigger")
    q = _query(sent.path)
    assert q["dataset_id"] == [trigger.request["query"]["dataset_id"]] and q["include_errors"] == ["true"]
    assert "answer_text" in q["custom_output_fields"][0].split("|")  # documented on /trigger (crawl-rest-api.json)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    (item,) = sent.json()
    documented = trigger.request["json"][0]
    assert {k: item[k] for k in documented} == documented  # url, prompt, country "us" as the docs send them
    paths = [(r.method, urlsplit(r.path).path) for r in documented_server.received[1:]]
    assert paths == [("GET", f"/datasets/v3/progress/{DOC_SID}"), ("GET", f"/datasets/v3/snapshot/{DOC_SID}")]


async def test_client_waits_on_running_and_202_then_cancels(documented_server: Any) -> None:
    for n in ("progress_running", "snapshot_202_building", "cancel_200_ok"):
        documented_server.serve(load_fixture("brightdata", n))
    async with Client(documented_server.url, brightdata_timeout_seconds=0.5) as provider:
        (o,) = await provider.collect_batch(DOC_SID, 1, deadline=Deadline(20))
    assert isinstance(o, ItemFailure) and o.code == "DEADLINE_EXCEEDED" and "cancelled" in o.message
    calls = [(r.method, urlsplit(r.path).path) for r in documented_server.received]
    assert calls.count(("GET", f"/datasets/v3/progress/{DOC_SID}")) >= 2  # running = pending: polled again
    assert calls[-1] == ("POST", f"/datasets/v3/snapshot/{DOC_SID}/cancel")


async def test_client_fails_a_failed_snapshot_with_its_error_message(documented_server: Any) -> None:
    fx = load_fixture("brightdata", "progress_failed")
    documented_server.serve(fx)
    async with Client(documented_server.url) as provider:
        (o,) = await provider.collect_batch(DOC_SID, 1, deadline=Deadline(20))
    assert isinstance(o, ItemFailure) and o.provider_error_code == "snapshot_failed"
    assert fx.body["error_message"] in o.message


async def test_client_finds_its_snapshot_in_the_documented_list(documented_server: Any) -> None:
    fx = load_fixture("brightdata", "snapshots_list")
    documented_server.serve(fx)
    created = datetime.fromisoformat(fx.body[0]["created"].replace("Z", "+00:00")).timestamp()
    async with Client(documented_server.url) as provider:
        found = await provider._snapshots_since(created - 60)
    assert found == [DOC_SID]
    (sent,) = documented_server.received
    q = _query(sent.path)
    assert set(q) == set(fx.request["query"]) and q["dataset_id"] == [fx.request["query"]["dataset_id"]]
    assert q["skip"] == ["0"] and q["limit"] == ["1000"] and q["from_date"][0].endswith("Z")


async def test_client_cancels_with_the_documented_ok(documented_server: Any) -> None:
    documented_server.serve(load_fixture("brightdata", "cancel_200_ok"))
    async with Client(documented_server.url) as provider:
        assert await provider.cancel_batch(DOC_SID) is True


@pytest.mark.parametrize("name", sorted(ERRORS))
async def test_client_maps_the_documented_error(documented_server: Any, name: str) -> None:
    fx = load_fixture("brightdata", name)
    documented_server.serve(fx)
    async with Client(documented_server.url) as provider:
        with pytest.raises(VantageError) as ei:
            await provider.submit_batch([_req(fx)], deadline=Deadline(20))
    code, reason = ERRORS[name]
    assert (ei.value.code, ei.value.reason, ei.value.provider) == (code, reason, "brightdata_chatgpt")
    assert KEY not in ei.value.message
    if name == "trigger_400_validation_error":  # each documented [field, reason] pair names a field
        field, why = fx.body["errors"][0]
        assert ei.value.violations == [(field, f"Bright Data {field}: {why}")]  # type: ignore[attr-defined]
    elif fx.status == 400:
        assert (fx.body["error"] if isinstance(fx.body, dict) else fx.body) in ei.value.message


# --- way 2: the sandbox against the same fixtures --------------------------------------------------------------


async def _send(client: httpx.AsyncClient, base: str, fx: ContractFixture, *, path: str | None = None,
                auth: bool = True) -> httpx.Response:
    req = fx.request
    headers = dict(req.get("headers") or {})
    if auth and "Authorization" not in headers:
        headers["Authorization"] = f"Bearer {KEY}"
    kw: dict[str, Any] = {"content": req["content"]} if "content" in req else {"json": req.get("json")}
    if req["method"] == "GET":
        kw = {}
    return await client.request(req["method"], base.rstrip("/") + (path or req["path"]), headers=headers,
                                params=req.get("query"), **kw)


async def _new_snapshot(client: httpx.AsyncClient, base: str) -> str:
    r = await _send(client, base, load_fixture("brightdata", "trigger_200_snapshot_id"))
    return str(assert_matches_fixture(r, load_fixture("brightdata", "trigger_200_snapshot_id"))["snapshot_id"])


async def test_sandbox_trigger_answers_the_documented_shape(sandbox_http: Any, sandbox_base: Any) -> None:
    await _new_snapshot(sandbox_http, sandbox_base("brightdata"))


@pytest.mark.parametrize("name,knobs", [
    ("progress_running", {"brightdata_duration_s": 60, "brightdata_starting_fraction": 0}),
    ("progress_ready", {"brightdata_duration_s": 0}),
    ("progress_failed", {"brightdata_duration_s": 0, "brightdata_fail_rate": 1.0}),
    ("snapshot_202_building", {"brightdata_duration_s": 60}),
    ("snapshot_200_chatgpt_records", {"brightdata_duration_s": 0}),
    ("cancel_200_ok", {"brightdata_duration_s": 60}),
])
async def test_sandbox_snapshot_endpoints_answer_the_documented_shape(
    sandbox_http: Any, sandbox_base: Any, sandbox_knobs: Any, name: str, knobs: dict[str, Any]
) -> None:
    await sandbox_knobs(knobs)
    base = sandbox_base("brightdata")
    sid = await _new_snapshot(sandbox_http, base)
    fx = load_fixture("brightdata", name)
    try:
        r = await _send(sandbox_http, base, fx, path=fx.request["path"].replace(DOC_SID, sid))
    finally:  # a 60-second snapshot of the shared sandbox must not stay running for the next tests
        await sandbox_http.post(f"{base}/datasets/v3/snapshot/{sid}/cancel", headers={"Authorization": f"Bearer {KEY}"})
    body = assert_matches_fixture(r, fx)
    if name.startswith("progress"):
        assert body["snapshot_id"] == sid and body["status"] == fx.body["status"]
    if name == "snapshot_200_chatgpt_records":  # the record of the documented trigger's one input
        (rec,) = body
        assert rec["prompt"] == load_fixture("brightdata", "trigger_200_snapshot_id").request["json"][0]["prompt"]


async def test_sandbox_lists_snapshots_in_the_documented_shape(sandbox_http: Any, sandbox_base: Any) -> None:
    base = sandbox_base("brightdata")
    sid = await _new_snapshot(sandbox_http, base)
    fx = load_fixture("brightdata", "snapshots_list")
    body = assert_matches_fixture(await _send(sandbox_http, base, fx), fx)
    assert sid in {s["id"] for s in body}


@pytest.mark.parametrize("name", sorted(ERRORS))
async def test_sandbox_answers_the_documented_error(sandbox_http: Any, sandbox_base: Any, name: str) -> None:
    fx = load_fixture("brightdata", name)
    r = await _send(sandbox_http, sandbox_base("brightdata"), fx, auth=name != "trigger_401_credentials_missing")
    body = assert_matches_fixture(r, fx)
    if name == "trigger_400_validation_error":
        assert [f for f, _ in body["errors"]] == ["url"]
