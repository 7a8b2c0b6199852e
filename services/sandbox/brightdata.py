"""Bright Data Datasets API v3 emulator for the ChatGPT and Perplexity "search by prompt"
scrapers, under ``/brightdata`` (providers.md §2).

Endpoints (Bearer auth on all):

- ``POST /datasets/v3/trigger?dataset_id=…&include_errors=true`` — body a bare array of inputs
  or ``{"input": [...]}`` → 200 ``{"snapshot_id": "s_…"}``; 400 ``{"error": "Invalid input provided",
  "code": "validation_error", "errors": [[field, reason], …]}`` (url, prompt ≤ 4096 chars, country,
  fields a dataset rejects; docs.brightdata.com/products/scrapers/error-codes), 400 ``{"error":
  "Parser cannot parse input: …", "code": "parse_error"}``, 400 text ``No data to trigger``; 404
  text ``Collector not found`` (no or unknown dataset_id); 429 "You have too many running jobs for
  this dataset…" above ``brightdata_max_running`` running snapshots of that dataset.
  ``custom_output_fields=a|b`` (query or wrapper) trims the records; with
  ``brightdata_trigger_output_fields`` off, /trigger refuses it (whether the real /trigger takes it
  is undocumented; /scrape does).
- ``GET /datasets/v3/progress/{id}`` → ``{snapshot_id, dataset_id, status, records, errors}``;
  status ``starting`` → ``running`` → ``ready`` (or ``failed`` with ``error_message``), timed by
  ``brightdata_duration_s``.
- ``GET /datasets/v3/snapshot/{id}?format=json|ndjson`` → 202 ``{"status": "building",
  "message": "Snapshot is not ready yet, try again in 10s"}`` until ready, then 200 with the
  records in input order; 404 text ``Snapshot does not exist``.
- ``POST /datasets/v3/snapshot/{id}/cancel`` → 200 text ``OK``; the snapshot becomes ``failed``.
- ``POST /datasets/v3/scrape`` (≤ 20 inputs) → 200 records if ready within
  ``brightdata_scrape_timeout_s``, else 202 ``{snapshot_id, message}`` handoff.
- ``GET /datasets/v3/snapshots?dataset_id=…&status=…&from_date=…&to_date=…&skip=…&limit=…`` →
  ``[{id, dataset_id, status, created}]`` (limit default 1,000, max 5,000; docs
  api-reference/scrapers/management-apis/get-snapshots), ``GET /datasets/v3/snapshot/{id}/parts``.

The 429 IP block (docs products/scrapers/error-codes): once ``brightdata_block_after_429s`` 429s
(25) were sent within ``brightdata_block_window_s`` (300 s), every Bright Data call answers 403
until ``POST /_sandbox/reset`` (the fault middleware counts and enforces it; stats under
``brightdata.rate_limited``). ``brightdata_answer_html_bytes`` pads ChatGPT ``answer_html`` to
live sizes (2–3 MB); ``brightdata_progress_status`` makes progress report another status.

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
BLOCKED_MESSAGE = (
    "Your IP was blocked after receiving too many 429 (Too Many Requests) responses. Contact Bright Data support."
)
MAX_LIST_LIMIT = 5000
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
        self.clear()

    def clear(self) -> None:
        self.snapshots.clear()
        self.rate_limited: list[float] = []  # monotonic times of the 429s sent (bounded below)
        self.max_in_window = 0  # most 429s seen within one block window
        self.blocked_at: float | None = None
        self._window_s = 300.0

    @property
    def blocked(self) -> bool:
        return self.blocked_at is not None

    def note_429(self, now: float, knobs: Any) -> None:
        """Count one 429 sent on a Bright Data path; block the IP at the threshold."""
        self._window_s = knobs.brightdata_block_window_s
        self.rate_limited.append(now)
        if len(self.rate_limited) > 100_000:
            del self.rate_limited[:50_000]
        n = sum(1 for t in self.rate_limited if t > now - self._window_s)
        self.max_in_window = max(self.max_in_window, n)
        threshold = knobs.brightdata_block_after_429s
        if threshold and n >= threshold and self.blocked_at is None:
            self.blocked_at = now

    def block_stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "total": len(self.rate_limited),
            "in_window": sum(1 for t in self.rate_limited if t > now - self._window_s),
            "max_in_window": self.max_in_window,
            "window_s": self._window_s,
            "blocked": self.blocked,
        }

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
    if state.knobs.require_auth and not bearer_token(request):  # plain text (docs products/scrapers/error-codes)
        return PlainTextResponse("Credentials are missing", status_code=401)
    return None


def validation_error(errors: list[tuple[str, str]]) -> JSONResponse:
    """The documented 400 of a field that failed validation: ``{"error": "Invalid input provided", "code":
    "validation_error", "errors": [[FIELD, REASON], …]}`` (docs.brightdata.com/products/scrapers/error-codes)."""
    return JSONResponse(
        {"error": "Invalid input provided", "code": "validation_error", "errors": [list(e) for e in errors]},
        status_code=400,
    )


def _validate_inputs(
    kind: str, body: Any
) -> tuple[list[dict[str, Any]] | None, list[tuple[str, str]], dict[str, Any]]:
    """(inputs, validation errors as (field, reason), wrapper options) for a trigger/scrape body."""
    opts: dict[str, Any] = {}
    if isinstance(body, dict):
        opts = {k: v for k, v in body.items() if k != "input"}
        body = body.get("input")
    if not isinstance(body, list):
        return None, [("input", 'expected a JSON array of inputs or {"input": [...]}')], opts
    errors: list[tuple[str, str]] = []
    host = "chatgpt.com" if kind == "chatgpt" else "perplexity.ai"
    for item in body:
        if not isinstance(item, dict):
            errors.append(("input", "must be an object"))
            continue
        url = item.get("url")
        if not isinstance(url, str) or not url:
            errors.append(("url", "This field is required"))
        elif not url.startswith("https://") or domain_of(url) != host:
            errors.append(("url", f"must be https://{'chatgpt.com/' if kind == 'chatgpt' else 'www.perplexity.ai'}"))
        prompt = item.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            errors.append(("prompt", "This field is required"))
        elif len(prompt) > MAX_PROMPT_CHARS:
            errors.append(("prompt", f"must be at most {MAX_PROMPT_CHARS} characters (got {len(prompt)})"))
        country = item.get("country")
        if country not in (None, "") and (
            not isinstance(country, str) or len(country) != 2 or not country.isalpha()
        ):
            errors.append(("country", "must be a 2-letter country code"))
        if kind == "perplexity":
            for bad in ("web_search", "additional_prompt", "require_sources"):
                if bad in item:
                    errors.append((bad, "field is not allowed for this dataset"))
    return body, errors, opts


# -- record generation --------------------------------------------------------------------------


def _base(snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    item = snap.inputs[pos]
    return {"index": item.get("index", pos + 1), "input": item, "timestamp": _iso(ts)}


def _chatgpt_record(state: SandboxState, snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    item = snap.inputs[pos]
    prompt: str = item["prompt"]
    country = (item.get("country") or "").upper()
    ans = answers.generate(state.corpus, prompt, "chatgpt", country or None, state.knobs.answer_mention_probability)
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
    pad = state.knobs.brightdata_answer_html_bytes - len(rec["answer_html"])
    if pad > 0:  # live records carry 2-3 MB of page markup here (providers-2026-12.md)
        filler = '<div class="sr-only" data-pad="1">' + "x" * 1000 + "</div>"
        rec["answer_html"] += filler * (pad // len(filler) + 1)
    if isinstance(item.get("additional_prompt"), str) and item["additional_prompt"]:
        follow = answers.generate(state.corpus, item["additional_prompt"], "chatgpt", country or None, state.knobs.answer_mention_probability)
        rec["additional_answer_text"] = answers.markdown_to_text(follow.render_plain())
    return rec


def _perplexity_record(state: SandboxState, snap: Snapshot, pos: int, ts: float) -> dict[str, Any]:
    item = snap.inputs[pos]
    prompt: str = item["prompt"]
    country = (item.get("country") or "").upper()
    ans = answers.generate(state.corpus, prompt, "perplexity", country or None, state.knobs.answer_mention_probability)
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
    if not dataset_id or dataset_id not in DATASETS:
        return PlainTextResponse("Collector not found", status_code=404)
    try:
        body = await request.json()
    except ValueError as e:
        return JSONResponse(
            {"error": f"Parser cannot parse input: {str(e)[:100]}", "code": "parse_error"}, status_code=400
        )
    inputs, errors, opts = _validate_inputs(DATASETS[dataset_id], body)
    if not scrape and not state.knobs.brightdata_trigger_output_fields and (
        "custom_output_fields" in request.query_params or "custom_output_fields" in opts
    ):
        errors.append(("custom_output_fields", "This field is not allowed"))
    if errors or inputs is None:
        return validation_error(errors)
    if not inputs:
        return PlainTextResponse("No data to trigger", status_code=400)
    if scrape and len(inputs) > MAX_SCRAPE_INPUTS:
        return validation_error([("input", f"at most {MAX_SCRAPE_INPUTS} inputs for synchronous requests")])
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
    shown = state.knobs.brightdata_progress_status if status in ("starting", "running") else ""
    body: dict[str, Any] = {"snapshot_id": snap.id, "dataset_id": snap.dataset_id, "status": shown or status}
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
    q = request.query_params
    dataset_id = q.get("dataset_id")
    wanted = q.get("status")
    try:
        skip = max(0, int(q.get("skip") or 0))
        limit = int(q.get("limit") or 1000)
        after = _parse_date(q.get("from_date"))
        before = _parse_date(q.get("to_date"))
    except ValueError as e:
        return validation_error([("query", str(e)[:200])])
    if not 0 < limit <= MAX_LIST_LIMIT:
        return validation_error([("limit", f"must be between 1 and {MAX_LIST_LIMIT}")])
    out = []
    for s in state.snapshots.snapshots.values():  # oldest first (the real order is not documented)
        st = s.status()
        if (dataset_id and s.dataset_id != dataset_id) or (wanted and st != wanted):
            continue
        if (after is not None and s.created_wall < after) or (before is not None and s.created_wall > before):
            continue
        out.append({"id": s.id, "dataset_id": s.dataset_id, "status": st, "created": _iso(s.created_wall)})
    return JSONResponse(out[skip : skip + limit])


def _parse_date(value: str | None) -> float | None:
    """Unix seconds of an ISO 8601 date or date-time (``Z`` or an offset; naive = UTC), None when absent."""
    if not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
