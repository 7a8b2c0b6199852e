"""Bright Data Datasets API v3 emulator for the ChatGPT and Perplexity "search by prompt"
scrapers, under ``/brightdata`` (providers.md §2).

Endpoints (Bearer auth on all):

- ``POST /datasets/v3/trigger?dataset_id=…&include_errors=true`` — body a bare array of inputs
  or ``{"input": [...]}`` → 200 ``{"snapshot_id": "s_…"}``; 400 ``{"validation_errors": [...]}``
  (url, prompt ≤ 4096 chars, country, fields a dataset rejects); 404 unknown dataset; 429 "You
  have too many running jobs for this dataset…" above ``brightdata_max_running`` running
  snapshots of that dataset.
- ``GET /datasets/v3/progress/{id}`` → ``{snapshot_id, dataset_id, status, records, errors}``;
  status ``starting`` → ``running`` → ``ready`` (or ``failed`` with ``error_message``), timed by
  ``brightdata_duration_s``.
- ``GET /datasets/v3/snapshot/{id}?format=json|ndjson`` → 202 ``{"status": "building",
  "message": "Snapshot is not ready yet, try again in 10s"}`` until ready, then 200 with the
  records in input order; 404 text ``Snapshot does not exist``.
- ``POST /datasets/v3/snapshot/{id}/cancel`` → 200 text ``OK``; the snapshot becomes ``failed``.
- ``POST /datasets/v3/scrape`` (≤ 20 inputs) → 200 records if ready within
  ``brightdata_scrape_timeout_s``, else 202 ``{snapshot_id, message}`` handoff.
- ``GET /datasets/v3/snapshots?dataset_id=…&status=…``, ``GET /datasets/v3/snapshot/{id}/parts``.

Records (§2.6): every record has ``index`` (the input's own ``index``, else its 1-based
position) and ``input`` (echo) and ``timestamp``. Error records (rate ``brightdata_error_rate``)
keep only those plus ``error`` and ``error_code``. ``brightdata_drop_records`` removes records
from a ready snapshot (count-mismatch tests). Successful records are billed once, when the
snapshot first becomes ready.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from . import answers
from .common import bearer_token, stable_hash
from .config import CHATGPT_DATASET_ID, PERPLEXITY_DATASET_ID
from .corpus import domain_of
from .state import SandboxState

router = APIRouter(prefix="/brightdata/datasets/v3")

DATASETS = {CHATGPT_DATASET_ID: "chatgpt", PERPLEXITY_DATASET_ID: "perplexity"}
MAX_PROMPT_CHARS = 4096
MAX_SCRAPE_INPUTS = 20
NOT_READY = {"status": "building", "message": "Snapshot is not ready yet, try again in 10s"}
_ERRORS = {
    "chatgpt": (
        ("dead_page", "dead_page"),
        (
            "timeout",
            "waiting for selector `[data-message-author-role=assistant]` failed: timeout 30000ms exceeded",
        ),
        ("blocked", "Request blocked: challenge page detected"),
    ),
    "perplexity": (
        ("auth_wall", "Auth wall: sign-up prompt detected"),
        ("dead_page", "dead_page"),
        ("timeout", "waiting for selector `div.prose` failed: timeout 30000ms exceeded"),
    ),
}
_ALPHABET = string.ascii_lowercase + string.digits


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass
class Snapshot:
    id: str
    dataset_id: str
    inputs: list[dict[str, Any]]
    include_errors: bool
    custom_fields: list[str] | None
    duration_s: float
    starting_s: float
    created_mono: float
    created_wall: float
    error_positions: set[int]
    dropped_positions: set[int]
    fail_message: str | None = None
    cancelled: bool = False
    records: list[dict[str, Any]] | None = None
    finished_wall: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return DATASETS[self.dataset_id]

    def status(self) -> str:
        if self.cancelled:
            return "failed"
        elapsed = time.monotonic() - self.created_mono
        if elapsed < self.starting_s:
            return "starting"
        if elapsed < self.duration_s:
            return "running"
        return "failed" if self.fail_message else "ready"

    @property
    def error_message(self) -> str | None:
        if self.cancelled:
            return "Snapshot was cancelled by the user"
        return self.fail_message if self.status() == "failed" else None


class SnapshotStore:
    """All snapshots of one sandbox app, by id."""

    def __init__(self) -> None:
        self.snapshots: dict[str, Snapshot] = {}

    def clear(self) -> None:
        self.snapshots.clear()

    def running(self, dataset_id: str) -> int:
        return sum(
            1
            for s in self.snapshots.values()
            if s.dataset_id == dataset_id and s.status() in ("starting", "running")
        )

    def running_by_dataset(self) -> dict[str, int]:
        return {d: n for d in DATASETS if (n := self.running(d))}

    @staticmethod
    def new_id() -> str:
        return "s_" + "".join(secrets.choice(_ALPHABET) for _ in range(17))


# -- request validation -------------------------------------------------------------------------


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _auth(request: Request, state: SandboxState) -> Response | None:
    if state.knobs.require_auth and not bearer_token(request):
        return _json_error(401, "Unauthorized: missing or invalid API token")
    return None


def _validate_inputs(kind: str, body: Any) -> tuple[list[dict[str, Any]] | None, list[str], dict[str, Any]]:
    """(inputs, validation errors, wrapper options) for a trigger/scrape body."""
    opts: dict[str, Any] = {}
    if isinstance(body, dict):
        opts = {k: v for k, v in body.items() if k != "input"}
        body = body.get("input")
    if not isinstance(body, list):
        return None, ['body: expected a JSON array of inputs or {"input": [...]}'], opts
    errors: list[str] = []
    host = "chatgpt.com" if kind == "chatgpt" else "perplexity.ai"
    for i, item in enumerate(body):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: must be an object")
            continue
        url = item.get("url")
        if not isinstance(url, str) or not url:
            errors.append(f"{where}.url: is required")
        elif not url.startswith("https://") or domain_of(url) != host:
            errors.append(
                f"{where}.url: must be https://{'chatgpt.com/' if kind == 'chatgpt' else 'www.perplexity.ai'}"
            )
        prompt = item.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            errors.append(f"{where}.prompt: is required")
        elif len(prompt) > MAX_PROMPT_CHARS:
            errors.append(
                f"{where}.prompt: must be at most {MAX_PROMPT_CHARS} characters (got {len(prompt)})"
            )
        country = item.get("country")
        if country not in (None, "") and (
            not isinstance(country, str) or len(country) != 2 or not country.isalpha()
        ):
            errors.append(f"{where}.country: must be a 2-letter country code")
        if kind == "perplexity":
            for bad in ("web_search", "additional_prompt", "require_sources"):
                if bad in item:
                    errors.append(f"{where}.{bad}: field is not allowed for this dataset")
    return body, errors, opts


# -- record generation --------------------------------------------------------------------------


def _base(snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    item = snap.inputs[pos]
    return {"index": item.get("index", pos + 1), "input": item, "timestamp": _iso(ts)}


def _chatgpt_record(state: SandboxState, snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    item = snap.inputs[pos]
    prompt: str = item["prompt"]
    country = (item.get("country") or "").upper()
    ans = answers.generate(state.corpus, prompt, "chatgpt", country or None)
    web = item.get("web_search", True) is not False
    if web:
        md, _ = ans.render_openai()
        cited = ans.cited
    else:
        md, cited = ans.render_plain(), []
    rec: dict[str, Any] = {
        "url": "https://chatgpt.com/?q=" + quote(prompt[:200]),
        "prompt": prompt,
        "answer_text": answers.markdown_to_text(md),
        "answer_text_markdown": md,
        "answer_html": answers.markdown_to_html(md),
        "model": "gpt-5",
        "web_search": item.get("web_search", True),
        "web_search_triggered": bool(web and cited),
        "web_search_query": ans.queries if web else [],
        "citations": [
            {"title": p.title, "url": p.url, "position": i, "domain": p.domain, "cited": True}
            for i, p in enumerate(cited, 1)
        ],
        "search_sources": [
            {"url": p.url, "title": p.title, "favicon": answers.favicon(p.url)}
            for p in (ans.search_results if web else [])
        ],
        "links_attached": answers.inline_links(md),
        "recommendations": [],
        "references": [],
        "country": country or None,
        "is_map": False,
        "shopping_visible": False,
        "shopping": [],
        "prompt_sent_at": _iso(snap.created_wall),
        **_base(snap, pos, ts),
    }
    if isinstance(item.get("additional_prompt"), str) and item["additional_prompt"]:
        follow = answers.generate(state.corpus, item["additional_prompt"], "chatgpt", country or None)
        rec["additional_answer_text"] = answers.markdown_to_text(follow.render_plain())
    return rec


def _perplexity_record(state: SandboxState, snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    item = snap.inputs[pos]
    prompt: str = item["prompt"]
    country = (item.get("country") or "").upper()
    ans = answers.generate(state.corpus, prompt, "perplexity", country or None)
    md, cited = ans.render_numbered()
    html = answers.markdown_to_html(md)
    slug = quote("-".join(prompt.lower().split()[:8]))[:80]
    related = [f"{q.rstrip('?')}: pricing comparison?" for q in ans.queries[:1]] + [
        f"How does {v} compare with {w}?" for v, w in zip(ans.vendors[:2], ans.vendors[1:3], strict=False)
    ]
    return {
        "url": f"https://www.perplexity.ai/search/{slug}-{stable_hash(prompt) % 10**8:08d}",
        "prompt": prompt,
        "answer_text": answers.markdown_to_text(md),
        "answer_text_markdown": md,
        "answer_html": html,
        "answer_section_html": html,
        "exported_markdown": md if item.get("export_markdown_file") else None,
        "citations": [
            {"domain": p.domain, "position": i, "title": p.title, "url": p.url}
            for i, p in enumerate(cited, 1)
        ],
        "sources": [
            {"url": p.url, "title": p.title, "domain": p.domain, "snippet": p.snippet}
            for p in ans.search_results
        ],
        "web_search_query": ans.queries,
        "related_prompts": related,
        "suggested_followup": related,
        "links_attached": answers.inline_links(md),
        "is_shopping_data": False,
        "shopping_data": [],
        "country": country or None,
        **_base(snap, pos, ts),
    }


def _error_record(snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    options = _ERRORS[snap.kind]
    code, message = options[stable_hash(snap.id, pos) % len(options)]
    return {**_base(snap, pos, ts), "error": message, "error_code": code}


def materialise(state: SandboxState, snap: Snapshot) -> list[dict[str, Any]]:
    """Build (once) and bill the records of a ready snapshot."""
    if snap.records is not None:
        return snap.records
    ts = snap.created_wall + snap.duration_s
    records: list[dict[str, Any]] = []
    ok = errs = 0
    for pos in range(len(snap.inputs)):
        if pos in snap.dropped_positions:
            continue
        if pos in snap.error_positions:
            errs += 1
            if snap.include_errors:
                records.append(_error_record(snap, pos, ts))
            continue
        builder = _chatgpt_record if snap.kind == "chatgpt" else _perplexity_record
        rec = builder(state, snap, pos, ts)
        if snap.kind == "chatgpt" and snap.inputs[pos].get("require_sources") and not rec["citations"]:
            errs += 1
            records.append(
                {**_base(snap, pos, ts), "error": "No sources in the answer", "error_code": "no_sources"}
            )
            continue
        ok += 1
        records.append(rec)
    if snap.custom_fields:
        keep = set(snap.custom_fields) | {"index", "input", "timestamp", "error", "error_code"}
        records = [{k: v for k, v in r.items() if k in keep} for r in records]
    snap.records = records
    snap.finished_wall = ts
    state.stats.bd_records[snap.dataset_id] += ok
    state.stats.bd_error_records[snap.dataset_id] += errs
    state.stats.bill("brightdata", records=ok, error_records=errs)
    return records


def _create(
    state: SandboxState, dataset_id: str, inputs: list[dict[str, Any]], request: Request, opts: dict[str, Any]
) -> Snapshot:
    knobs = state.knobs
    rng = state.rng(f"brightdata:{dataset_id}")
    n = len(inputs)
    error_positions = {i for i in range(n) if rng.random() < knobs.brightdata_error_rate}
    drop = min(knobs.brightdata_drop_records, n)
    dropped = set(rng.sample(range(n), drop)) if drop else set()
    failed = rng.random() < knobs.brightdata_fail_rate
    custom = request.query_params.get("custom_output_fields") or opts.get("custom_output_fields")
    snap = Snapshot(
        id=SnapshotStore.new_id(),
        dataset_id=dataset_id,
        inputs=inputs,
        include_errors=request.query_params.get("include_errors", "true").lower() != "false",
        custom_fields=[f for f in str(custom).split("|") if f] if custom else None,
        duration_s=knobs.brightdata_duration_s,
        starting_s=knobs.brightdata_duration_s * knobs.brightdata_starting_fraction,
        created_mono=time.monotonic(),
        created_wall=time.time(),
        error_positions=error_positions,
        dropped_positions=dropped,
        fail_message="No data found in discovery" if failed else None,
    )
    state.snapshots.snapshots[snap.id] = snap
    state.stats.bd_triggers[dataset_id] += 1
    state.stats.bd_inputs[dataset_id] += n
    return snap


async def _accept(request: Request, state: SandboxState, scrape: bool) -> Snapshot | Response:
    """Shared trigger/scrape front half: auth, dataset, body, cap → a new snapshot or an error."""
    if (denied := _auth(request, state)) is not None:
        return denied
    dataset_id = request.query_params.get("dataset_id")
    if not dataset_id:
        return _json_error(400, "dataset_id is missing")
    if dataset_id not in DATASETS:
        return _json_error(404, "dataset does not exist")
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"validation_errors": ["body: invalid JSON"]}, status_code=400)
    inputs, errors, opts = _validate_inputs(DATASETS[dataset_id], body)
    if errors or inputs is None:
        return JSONResponse({"validation_errors": errors}, status_code=400)
    if not inputs:
        return _json_error(400, "No data to trigger")
    if scrape and len(inputs) > MAX_SCRAPE_INPUTS:
        return JSONResponse(
            {"validation_errors": [f"input: at most {MAX_SCRAPE_INPUTS} inputs for synchronous requests"]},
            status_code=400,
        )
    if state.snapshots.running(dataset_id) >= state.knobs.brightdata_max_running:
        state.stats.bd_rejected[dataset_id] += 1
        return _json_error(
            429, "You have too many running jobs for this dataset. Please wait for some of them to finish."
        )
    return _create(state, dataset_id, inputs, request, opts)


# -- routes ---------------------------------------------------------------------------------------


@router.post("/trigger")
async def trigger(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    result = await _accept(request, state, scrape=False)
    if isinstance(result, Response):
        return result
    return JSONResponse({"snapshot_id": result.id})


@router.post("/scrape")
async def scrape(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    result = await _accept(request, state, scrape=True)
    if isinstance(result, Response):
        return result
    snap = result
    deadline = time.monotonic() + state.knobs.brightdata_scrape_timeout_s
    while snap.status() in ("starting", "running") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if await request.is_disconnected():
            return Response(status_code=499)
    status = snap.status()
    if status == "ready":
        return _records_response(state, snap, request.query_params.get("format", "json"))
    if status == "failed":
        return JSONResponse({"status": "failed", "error": snap.error_message}, status_code=400)
    return JSONResponse(
        {
            "snapshot_id": snap.id,
            "message": "Your request is still in progress and may take more time. "
            "You can use the snapshot_id to check the status and download the results.",
        },
        status_code=202,
        headers={"retry-after": "30"},
    )


def _not_found() -> PlainTextResponse:
    return PlainTextResponse("Snapshot does not exist", status_code=404)


@router.get("/progress/{snapshot_id}")
async def progress(snapshot_id: str, request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if (denied := _auth(request, state)) is not None:
        return denied
    snap = state.snapshots.snapshots.get(snapshot_id)
    if snap is None:
        return _not_found()
    status = snap.status()
    body: dict[str, Any] = {"snapshot_id": snap.id, "dataset_id": snap.dataset_id, "status": status}
    if status == "ready":
        records = materialise(state, snap)
        errors = sum(1 for r in records if "error" in r)
        body.update(
            records=len(records) - errors,
            errors=errors,
            collection_duration=int(snap.duration_s * 1000),
            avg_duration_per_input=int(snap.duration_s * 1000 / max(1, len(snap.inputs))),
        )
    else:
        body.update(records=0, errors=0)
    if status == "failed":
        body["error_message"] = snap.error_message
    return JSONResponse(body)


def _records_response(state: SandboxState, snap: Snapshot, fmt: str) -> Response:
    records = materialise(state, snap)
    if fmt == "ndjson" or fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return Response(text, media_type="application/x-ndjson")
    return JSONResponse(records)


@router.get("/snapshot/{snapshot_id}")
async def download(snapshot_id: str, request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if (denied := _auth(request, state)) is not None:
        return denied
    snap = state.snapshots.snapshots.get(snapshot_id)
    if snap is None:
        return _not_found()
    fmt = request.query_params.get("format", "json").lower()
    if fmt not in ("json", "ndjson", "jsonl"):
        return _json_error(400, f"Unsupported format: {fmt}")
    status = snap.status()
    if status in ("starting", "running"):
        return JSONResponse(NOT_READY, status_code=202)
    if status == "failed":
        return _json_error(400, f"Snapshot failed: {snap.error_message}")
    return _records_response(state, snap, fmt)


@router.get("/snapshot/{snapshot_id}/parts")
async def parts(snapshot_id: str, request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if (denied := _auth(request, state)) is not None:
        return denied
    if snapshot_id not in state.snapshots.snapshots:
        return _not_found()
    return JSONResponse({"parts": 1})


@router.post("/snapshot/{snapshot_id}/cancel")
async def cancel(snapshot_id: str, request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if (denied := _auth(request, state)) is not None:
        return denied
    snap = state.snapshots.snapshots.get(snapshot_id)
    if snap is None:
        return _not_found()
    if snap.status() in ("starting", "running"):
        snap.cancelled = True
        state.stats.bd_cancels += 1
    return PlainTextResponse("OK")


@router.get("/snapshots")
async def list_snapshots(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if (denied := _auth(request, state)) is not None:
        return denied
    dataset_id = request.query_params.get("dataset_id")
    wanted = request.query_params.get("status")
    out = []
    for s in state.snapshots.snapshots.values():
        st = s.status()
        if (dataset_id and s.dataset_id != dataset_id) or (wanted and st != wanted):
            continue
        out.append({"id": s.id, "dataset_id": s.dataset_id, "status": st, "created": _iso(s.created_wall)})
    return JSONResponse(out)
