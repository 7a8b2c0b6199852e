"""Tavily Search emulator: ``POST /tavily/search`` (providers.md §1).

Request: JSON body per §1.2 (``query`` required; ``search_depth``, ``max_results`` 0..20,
``chunks_per_source`` 1..3, ``topic``, ``include_raw_content``, ``include_domains``, ...).
Auth: ``Authorization: Bearer <key>`` or, for old SDKs, ``api_key`` in the body (§1.1).

Response (200 only — the SDK treats any other 2xx as an error, §1.4)::

    {"query": str, "follow_up_questions": null, "answer": str|null, "images": [],
     "results": [{"title", "url", "content", "score": 0..1, "raw_content": str|null,
                  "favicon"?: str, "published_date"?: str}],
     "response_time": float seconds, "request_id": uuid,
     "usage"?: {"credits": 1|2}, "auto_parameters"?: {...}}

Errors: ``{"detail": {"error": "..."}}`` with 400 (validation) / 401 (no key) / 432 / 433 (plan and pay-as-you-go
limits, forced with ``X-Sandbox-Fault: 432|433``).
Credits (§1.5): advanced = 2, every other depth = 1; always counted in stats.

Not emulated: ``time_range`` / ``days`` filtering (accepted, validated, ignored — corpus pages
have no crawl time), images (always ``[]``), ``country`` boosting.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request

from .common import json_response
from .corpus import Corpus, SearchHit
from .errors import error_response
from .state import SandboxState

router = APIRouter()

DEPTHS = ("basic", "advanced", "fast", "ultra-fast")
TOPICS = ("general", "news", "finance")
TIME_RANGES = ("day", "week", "month", "year", "d", "w", "m", "y")
MAX_QUERY_CHARS = 400
#: Plan (432) and pay-as-you-go (433) limit answers, forced with ``X-Sandbox-Fault: 432`` / ``433`` (messages from
#: Tavily's OpenAPI spec and https://help.tavily.com/articles/8645538886-understanding-http-errors; the SDK maps
#: both to ``ForbiddenError``). Fixtures: tests/contract/fixtures/tavily/search_43[23]_*.json.
LIMIT_FAULTS = {
    "432": "This request exceeds your plan's set usage limit. Please upgrade your plan or contact support@tavily.com.",
    "433": "This request exceeds the pay-as-you-go limit. You can increase your limit on the Tavily dashboard.",
}


class TavilyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_date(name: str, v: Any) -> None:
    if v is None:
        return
    try:
        datetime.strptime(str(v), "%Y-%m-%d")
    except ValueError:
        raise TavilyError(400, f"Invalid {name}. Must be in the format YYYY-MM-DD.") from None


def validate(body: Any) -> dict[str, Any]:
    """Validate a search body; returns normalised parameters or raises :class:`TavilyError`."""
    if not isinstance(body, dict):
        raise TavilyError(400, "Invalid request body. Expected a JSON object.")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise TavilyError(400, "Query is missing.")
    if len(query) > MAX_QUERY_CHARS:
        raise TavilyError(400, f"Query is too long. Max query length is {MAX_QUERY_CHARS} characters.")
    depth = body.get("search_depth") or "basic"
    if depth not in DEPTHS:
        raise TavilyError(400, "Invalid search depth. Must be one of: " + ", ".join(DEPTHS) + ".")
    topic = body.get("topic") or "general"
    if topic not in TOPICS:
        raise TavilyError(400, "Invalid topic. Must be one of: " + ", ".join(TOPICS) + ".")
    max_results = body.get("max_results", 5)
    if max_results is None:
        max_results = 5
    if not _is_int(max_results) or not 0 <= max_results <= 20:
        raise TavilyError(400, "max_results must be an integer between 0 and 20.")
    chunks = body.get("chunks_per_source", 3)
    if chunks is None:
        chunks = 3
    if not _is_int(chunks) or not 1 <= chunks <= 3:
        raise TavilyError(400, "chunks_per_source must be an integer between 1 and 3.")
    time_range = body.get("time_range")
    if time_range is not None and time_range not in TIME_RANGES:
        raise TavilyError(400, "Invalid time range. Must be one of: day, week, month, year.")
    _check_date("start_date", body.get("start_date"))
    _check_date("end_date", body.get("end_date"))
    raw = body.get("include_raw_content", False)
    if raw not in (None, True, False, "markdown", "text"):
        raise TavilyError(400, "include_raw_content must be a boolean, 'markdown' or 'text'.")
    answer = body.get("include_answer", False)
    if answer not in (None, True, False, "basic", "advanced"):
        raise TavilyError(400, "include_answer must be a boolean, 'basic' or 'advanced'.")
    inc = body.get("include_domains") or []
    exc = body.get("exclude_domains") or []
    if not isinstance(inc, list) or not all(isinstance(d, str) for d in inc) or len(inc) > 300:
        raise TavilyError(400, "include_domains must be a list of at most 300 domains.")
    if not isinstance(exc, list) or not all(isinstance(d, str) for d in exc) or len(exc) > 150:
        raise TavilyError(400, "exclude_domains must be a list of at most 150 domains.")
    country = body.get("country")
    if country is not None and (not isinstance(country, str) or topic != "general"):
        raise TavilyError(400, "country must be a country name and is only supported with topic 'general'.")
    return {
        "query": query,
        "search_depth": depth,
        "topic": topic,
        "max_results": max_results,
        "chunks_per_source": chunks,
        "include_raw_content": raw or False,
        "include_answer": answer or False,
        "include_images": bool(body.get("include_images")),
        "include_favicon": bool(body.get("include_favicon")),
        "include_usage": bool(body.get("include_usage")),
        "auto_parameters": bool(body.get("auto_parameters")),
        "include_domains": inc,
        "exclude_domains": exc,
        "start_date": body.get("start_date"),
        "end_date": body.get("end_date"),
    }


@lru_cache(maxsize=4096)  # pure; the corpus's chunks and pages come back request after request
def markdown_to_text(md: str) -> str:
    """Strip markdown markup (for ``include_raw_content: "text"``)."""
    t = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", md)
    t = re.sub(r"^#{1,6}\s*", "", t, flags=re.MULTILINE)
    t = re.sub(r"[*_`]+", "", t)
    t = re.sub(r"^\s*[-+]\s+", "", t, flags=re.MULTILINE)
    t = re.sub(r"^\|?[-:| ]+\|?$", "", t, flags=re.MULTILINE)
    return re.sub(r"\n{3,}", "\n\n", t).strip()


def _published(date: str | None) -> str | None:
    if not date:
        return None
    return datetime.strptime(date, "%Y-%m-%d").strftime("%a, %d %b %Y 09:00:00 GMT")


def build_results(corpus: Corpus, p: dict[str, Any]) -> list[dict[str, Any]]:
    hits: list[SearchHit] = corpus.search(
        p["query"],
        limit=len(corpus.pages),
        include_domains=p["include_domains"] or None,
        exclude_domains=p["exclude_domains"] or None,
    )
    if p["topic"] == "news":
        hits = [h for h in hits if h.page.date]
    if p["start_date"]:
        hits = [h for h in hits if h.page.date and h.page.date >= p["start_date"]]
    if p["end_date"]:
        hits = [h for h in hits if h.page.date and h.page.date <= p["end_date"]]
    hits = hits[: p["max_results"]]
    advanced = p["search_depth"] == "advanced"
    results = []
    for h in hits:
        chunks = corpus.best_chunks(h.page, p["query"], p["chunks_per_source"] if advanced else 1)
        item: dict[str, Any] = {
            "url": h.page.url,
            "title": h.page.title,
            # Tavily snippets are plain text; markdown survives only in raw_content.
            "content": " [...] ".join(markdown_to_text(c) for c in chunks),
            "score": h.score,
            "raw_content": None,
        }
        raw = p["include_raw_content"]
        if raw in (True, "markdown"):
            item["raw_content"] = h.page.content
        elif raw == "text":
            item["raw_content"] = markdown_to_text(h.page.content)
        if p["include_favicon"]:
            item["favicon"] = f"https://{h.page.domain}/favicon.ico"
        if p["topic"] == "news":
            item["published_date"] = _published(h.page.date)
        results.append(item)
    return results


def _answer(results: list[dict[str, Any]], advanced: bool) -> str | None:
    if not results:
        return None
    sentences = []
    for r in results[: 4 if advanced else 2]:
        first = re.split(r"(?<=[.!?])\s", r["content"].replace(" [...] ", " "), maxsplit=1)[0]
        first = re.sub(r"^#+\s*", "", first).strip()
        if first and first not in sentences:
            sentences.append(first if first.endswith((".", "!", "?")) else first + ".")
    return " ".join(sentences)


@router.post("/tavily/search")
async def search(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    started = getattr(request.state, "sandbox_started", None) or time.perf_counter()
    try:
        body = await request.json()
    except ValueError:
        return error_response("tavily", 400, "Invalid JSON in request body.")
    key = _bearer(request) or (body.get("api_key") if isinstance(body, dict) else None)
    if state.knobs.require_auth and not key:
        return error_response("tavily", 401, "Unauthorized: missing or invalid API key.")
    limit = LIMIT_FAULTS.get(request.headers.get("x-sandbox-fault", ""))
    if limit:
        return error_response("tavily", int(request.headers["x-sandbox-fault"]), limit)
    try:
        p = validate(body)
    except TavilyError as e:
        return error_response("tavily", e.status, e.message)

    results = build_results(state.corpus, p)
    credits = 2 if p["search_depth"] == "advanced" else 1
    state.stats.bill("tavily", searches=1, credits=credits)
    payload: dict[str, Any] = {
        "query": p["query"],
        "follow_up_questions": None,
        "answer": _answer(results, p["include_answer"] == "advanced") if p["include_answer"] else None,
        "images": [],
        "results": results,
        "response_time": round(time.perf_counter() - started, 2),
        "request_id": str(uuid.uuid4()),
    }
    if p["auto_parameters"]:
        payload["auto_parameters"] = {"topic": p["topic"], "search_depth": p["search_depth"]}
    if p["include_usage"]:
        payload["usage"] = {"credits": credits}
    return json_response(payload)
