"""Packed enrichment from the orchestrator's side: ``vantage enrich`` over a CSV, and helpers for lists of names.

Everything here goes through ``InferenceService/CompleteBatch`` in packing mode (one instruction, an item JSON
Schema, many items with ids — :mod:`services.inference.packing`): the inference service packs ≤ 20 items per LLM call,
validates, retries, falls back to one call per item, and caches every item's result in the database, so a re-run
of the same input costs no call and $0.

- :func:`pack_complete` — one packing request from a client: ``[(id, input)]`` → one :class:`PackedResult` per item
  (fields or error, cached or not) + the request's :class:`EnrichTotals`.
- :func:`name_variations` — organisation → the ways a text may write its name (for finding mentions of many orgs).
- :func:`merge_competitor_variants` — competitor names as found ("Lambda", "Lambda Labs", "Lambda Cloud") → one
  canonical name each, so that reports count one competitor once (:func:`group_variants` inverts the mapping).
- :func:`enrich_csv` — ``vantage enrich FILE.csv --instruction "…" --schema schema.json``: streams the rows (id = the
  row number, input = the row as an object) in requests of ``10 × batch size`` rows, several in flight, writes the
  original columns + one column per schema property + ``enrich_error`` in input order, and prints a summary (total,
  cache hits, newly computed, failed, success rate, LLM calls, USD).

Units: USD for money, tokens as the providers count them, items = rows / names.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from shared.config import OrchestratorSettings
from shared.exitcodes import EXIT_FAILED_ITEMS, EXIT_OK, EXIT_USAGE
from shared.grpc_client import Channels, call_metadata, call_under_deadline
from shared.text import csv_safe_row
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

log = structlog.get_logger("vantage.enrich")

#: Column of the enriched CSV holding why a row failed ("" when it did not).
ERROR_COLUMN = "enrich_error"
#: Rows per CompleteBatch request, in packs: big enough to fill whole packs, small enough to stream.
PACKS_PER_REQUEST = 10
#: Items per pack the inference service uses when the caller does not say (its ``pack_max_items`` default).
DEFAULT_PACK = 20


# --- one packing request -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedResult:
    """One item's outcome: ``fields`` (the item schema's properties) or ``error`` ("CODE: message")."""

    id: str
    fields: dict[str, Any] | None
    error: str = ""
    cached: bool = False
    cost_usd: float = 0.0


@dataclass
class EnrichTotals:
    """Totals over one or more packing requests. ``computed``: items answered by a provider call now;
    ``cache_hits``: items answered from the cache ($0); ``failed``: items that came back with an error."""

    items: int = 0
    cache_hits: int = 0
    computed: int = 0
    failed: int = 0
    llm_calls: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def success_rate(self) -> float:
        """Share of items that got a result, 0..1 (1.0 for no items)."""
        return (self.items - self.failed) / self.items if self.items else 1.0

    def add(self, other: EnrichTotals) -> None:
        for name in ("items", "cache_hits", "computed", "failed", "llm_calls", "input_tokens", "output_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd


def batch_request(
    *,
    instruction: str,
    item_schema: Mapping[str, Any],
    items: Sequence[tuple[str, Any]],
    model: str,
    max_items_per_call: int = 0,
    no_cache: bool = False,
    location: str = "",
) -> pb.CompleteBatchRequest:
    """The packing-mode ``CompleteBatchRequest`` for ``items`` (``(id, input)`` pairs; input is any JSON value)."""
    return pb.CompleteBatchRequest(
        model=model,
        instruction=instruction,
        item_json_schema=json.dumps(item_schema, ensure_ascii=False),
        items=[pb.BatchItem(id=item_id, input_json=json.dumps(value, ensure_ascii=False)) for item_id, value in items],
        max_items_per_call=max_items_per_call,
        no_cache=no_cache,
        location=location,
    )


def read_response(resp: pb.CompleteBatchResponse) -> tuple[list[PackedResult], EnrichTotals]:
    """Per-item results (in response order) and the request's totals."""
    results: list[PackedResult] = []
    totals = EnrichTotals(
        llm_calls=resp.llm_calls, cost_usd=resp.cost_usd,
        input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens,
    )
    for r in resp.results:
        totals.items += 1
        if r.WhichOneof("outcome") == "response":
            try:
                value = json.loads(r.response.json or "null")
            except ValueError:
                value = None
            if isinstance(value, dict):
                cached = r.response.cached
                totals.cache_hits += int(cached)
                totals.computed += int(not cached)
                results.append(PackedResult(r.id, value, cached=cached, cost_usd=r.response.cost_usd))
                continue
            error = "INTERNAL: the answer is not a JSON object"
        else:
            error = f"{r.error.code}: {r.error.message}" if r.error.code else "UNKNOWN: no result"
        totals.failed += 1
        results.append(PackedResult(r.id, None, error=error))
    return results, totals


async def pack_complete(
    stub: pb_grpc.InferenceServiceStub,
    *,
    instruction: str,
    item_schema: Mapping[str, Any],
    items: Sequence[tuple[str, Any]],
    model: str,
    max_items_per_call: int = 0,
    no_cache: bool = False,
    rpc_timeout: float = 180.0,
    settings: OrchestratorSettings | None = None,
) -> tuple[list[PackedResult], EnrichTotals]:
    """Run the packing requests for ``items``: one ``CompleteBatch`` per ``complete_batch_max_items`` items (the
    inference service refuses larger requests; 1,000 without ``settings``), one after the other; with ``settings``,
    each retried on UNAVAILABLE / RESOURCE_EXHAUSTED as configured (``retry_attempts``…). Raises
    :class:`shared.errors.VantageError` for a request as a whole (bad schema or model: ``InvalidArgument``; service
    down: ``Unavailable``); an item's trouble is that item's ``error``."""
    if not items:
        return [], EnrichTotals()
    per_request = max(1, settings.complete_batch_max_items if settings is not None else 1000)
    results: list[PackedResult] = []
    totals = EnrichTotals()
    for start in range(0, len(items), per_request):
        part, part_totals = await _pack_request(
            stub, instruction=instruction, item_schema=item_schema, items=items[start:start + per_request],
            model=model, max_items_per_call=max_items_per_call, no_cache=no_cache, rpc_timeout=rpc_timeout,
            settings=settings,
        )
        results.extend(part)
        totals.add(part_totals)
    return results, totals


async def _pack_request(
    stub: pb_grpc.InferenceServiceStub,
    *,
    instruction: str,
    item_schema: Mapping[str, Any],
    items: Sequence[tuple[str, Any]],
    model: str,
    max_items_per_call: int,
    no_cache: bool,
    rpc_timeout: float,
    settings: OrchestratorSettings | None,
) -> tuple[list[PackedResult], EnrichTotals]:
    req = batch_request(
        instruction=instruction, item_schema=item_schema, items=items, model=model,
        max_items_per_call=max_items_per_call, no_cache=no_cache,
    )

    async def call(seconds_left: float) -> pb.CompleteBatchResponse:
        return await stub.CompleteBatch(req, timeout=seconds_left, metadata=call_metadata())

    # CompleteBatch is not in the channel's retry policy (not idempotent for the caller's bill): a transport failure
    # is resent here, under one deadline; the inference service retries the provider itself.
    if settings is None:
        resp = await call_under_deadline(call, seconds=rpc_timeout, attempts=1, initial=0.0, maximum=0.0)
    else:
        resp = await call_under_deadline(
            call, seconds=rpc_timeout, attempts=settings.retry_attempts, initial=settings.retry_initial_seconds,
            maximum=settings.retry_max_seconds,
        )
    return read_response(resp)


# --- name variations and competitor merging ----------------------------------------------------------------------

NAME_VARIATIONS_INSTRUCTION = (
    "List the ways a web page or an AI assistant's answer may write this organisation's name: its full name, the "
    "short name people use, former names, common abbreviations or acronyms, and spellings with or without legal "
    "suffixes (Inc, Labs, AI). Only names that refer to this organisation; no product names of other companies."
)
NAME_VARIATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "variations": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Names of this organisation as written in text, most common first.",
        }
    },
}
MERGE_INSTRUCTION = (
    "Give the canonical name of the organisation this name refers to: the name the company is best known by, "
    "without product, division or legal suffixes — e.g. 'Lambda' for both 'Lambda Labs' and 'Lambda Cloud'. "
    "Names of different companies must keep different canonical names."
)
MERGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"canonical": {"type": "string", "description": "The organisation's canonical name."}},
}


def unique_names(names: Iterable[str]) -> list[str]:
    """Names stripped, blanks dropped, each once (first spelling kept, case-insensitive)."""
    seen: set[str] = set()
    out = []
    for n in names:
        n = " ".join(str(n).split())
        if n and n.casefold() not in seen:
            seen.add(n.casefold())
            out.append(n)
    return out


async def name_variations(
    stub: pb_grpc.InferenceServiceStub,
    orgs: Iterable[str],
    *,
    model: str = "gpt-4.1-mini",
    no_cache: bool = False,
    rpc_timeout: float = 180.0,
    settings: OrchestratorSettings | None = None,
) -> dict[str, list[str]]:
    """Each organisation (as given, blanks and case-insensitive repeats dropped) → its name variations: the name
    itself first, then the model's, each once (case-insensitive). One packed request: 150 orgs = 8 LLM calls, a
    repeat is all cache hits. An org whose item failed maps to ``[org]`` (logged with its error) — the name itself
    is always a valid variation, so callers can still look for it."""
    names = unique_names(orgs)
    results, _ = await pack_complete(
        stub, instruction=NAME_VARIATIONS_INSTRUCTION, item_schema=NAME_VARIATIONS_SCHEMA,
        items=[(str(i), {"name": n}) for i, n in enumerate(names)], model=model, no_cache=no_cache,
        rpc_timeout=rpc_timeout, settings=settings,
    )
    out: dict[str, list[str]] = {}
    for r in results:
        org = names[int(r.id)]
        found = (r.fields or {}).get("variations") or []
        if r.error:
            log.warning("name_variations_failed", org=org, error=r.error)
        out[org] = unique_names([org, *(v for v in found if isinstance(v, str))])
    return out


async def merge_competitor_variants(
    stub: pb_grpc.InferenceServiceStub,
    names: Iterable[str],
    *,
    model: str = "gpt-4.1-mini",
    no_cache: bool = False,
    rpc_timeout: float = 180.0,
    settings: OrchestratorSettings | None = None,
) -> dict[str, str]:
    """Each competitor name (as given; blanks dropped) → its canonical name, so that "Lambda", "Lambda Labs" and
    "Lambda Cloud" count as one competitor. Names equal up to case and spacing are merged without asking; the rest
    go through one packed request. The canonical spelling is one of the input names when one matches the model's
    canonical name (case-insensitively), else the model's. A name whose item failed maps to itself (logged)."""
    given = [" ".join(str(n).split()) for n in names]
    given = [n for n in given if n]
    unique = unique_names(given)
    results, _ = await pack_complete(
        stub, instruction=MERGE_INSTRUCTION, item_schema=MERGE_SCHEMA,
        items=[(str(i), {"name": n}) for i, n in enumerate(unique)], model=model, no_cache=no_cache,
        rpc_timeout=rpc_timeout, settings=settings,
    )
    canonical_of: dict[str, str] = {}  # casefolded name → canonical as the model wrote it
    for r in results:
        name = unique[int(r.id)]
        canon = (r.fields or {}).get("canonical")
        if r.error or not isinstance(canon, str) or not canon.strip():
            log.warning("merge_competitor_failed", name=name, error=r.error or "empty canonical name")
            canon = name
        canonical_of[name.casefold()] = " ".join(canon.split())
    spelled = {n.casefold(): n for n in reversed(unique)}  # an input spelling of each name (the first one wins)
    return {n: spelled.get(canonical_of[n.casefold()].casefold(), canonical_of[n.casefold()]) for n in given}


def group_variants(mapping: Mapping[str, str]) -> dict[str, list[str]]:
    """``{name: canonical}`` → ``{canonical: [names…]}`` (names in first-seen order)."""
    out: dict[str, list[str]] = {}
    for name, canon in mapping.items():
        out.setdefault(canon, []).append(name)
    return out


# --- vantage enrich ----------------------------------------------------------------------------------------------


class EnrichError(Exception):
    """A one-line error for the user, with the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def load_schema(path: Path) -> dict[str, Any]:
    """The item JSON Schema in ``path``: an object schema with ``properties`` (one output column each), no ``id``.
    Raises :class:`EnrichError` (exit 2) naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnrichError(f"schema file not found: {path}") from None
    except OSError as e:
        raise EnrichError(f"cannot read schema file {path}: {e.strerror or e}") from None
    try:
        schema = json.loads(text)
    except ValueError as e:
        raise EnrichError(f"schema file {path} is not valid JSON: {e}") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        raise EnrichError(f'schema file {path} must hold a JSON Schema object with "properties" (one per new column)')
    if schema.get("type", "object") != "object":
        raise EnrichError(f'schema file {path}: the item schema must have "type": "object"')
    if "id" in schema["properties"]:
        raise EnrichError(f'schema file {path} must not define "id" (rows are identified by their number)')
    return schema


def output_columns(fieldnames: Sequence[str], properties: Iterable[str]) -> list[tuple[str, str]]:
    """``(column name, schema property)`` of the new columns; a property whose name is already a column is written
    as ``<name>_enriched`` (the original column is kept as it was)."""
    taken = set(fieldnames) | {ERROR_COLUMN}
    out = []
    for prop in properties:
        col = prop
        while col in taken:
            col += "_enriched"
        taken.add(col)
        out.append((col, prop))
    return out


def cell(value: Any) -> str:
    """A result value as CSV text: strings as they are, null as empty, anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class EnrichOptions:
    instruction: str
    schema: dict[str, Any]
    model: str
    out_path: Path
    no_cache: bool = False
    batch_size: int = 0  # items per LLM call; 0 = the inference service's default
    concurrency: int = 4  # CompleteBatch requests in flight
    timeout: float = 180.0


@dataclass
class EnrichSummary:
    totals: EnrichTotals = field(default_factory=EnrichTotals)
    out_path: Path | None = None


@contextlib.contextmanager
def open_rows(path: Path) -> Iterator[tuple[list[str], Iterator[dict[str, str]]]]:
    """``(fieldnames, rows)`` of the CSV at ``path``, the rows streamed (the file is read as they are consumed).
    Raises :class:`EnrichError` for a missing, unreadable or headerless file."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise EnrichError(f"input file not found: {path}") from None
    except OSError as e:
        raise EnrichError(f"cannot read input file {path}: {e.strerror or e}") from None
    with f:
        reader = csv.DictReader(f, strict=True)
        try:
            header = reader.fieldnames
        except (UnicodeDecodeError, csv.Error) as e:
            raise EnrichError(f"input file {path} is not a UTF-8 CSV: {e}") from None
        if not header:
            raise EnrichError(f"input file {path} has no header row")
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise EnrichError(f"input file {path}, line 1: the column {name!r} appears twice in the header")
            seen.add(name)

        def rows() -> Iterator[dict[str, str]]:
            last_line = reader.line_num  # the line a bad row starts on is the one after the last good row
            try:
                for row in reader:
                    last_line = reader.line_num
                    row.pop(None, None)  # cells beyond the header are not sent
                    yield {k: (v if v is not None else "") for k, v in row.items()}
            except (UnicodeDecodeError, csv.Error) as e:
                raise EnrichError(f"input file {path}, line {last_line + 1}: {e}") from None

        yield [str(c) for c in header], rows()


async def enrich_csv(
    stub: pb_grpc.InferenceServiceStub, csv_path: Path, opts: EnrichOptions, settings: OrchestratorSettings
) -> EnrichSummary:
    """Enrich every row of ``csv_path`` into ``opts.out_path`` (written to a temporary file, renamed at the end: a
    failed run leaves no half-written output). Raises :class:`EnrichError` for bad input and
    :class:`shared.errors.VantageError` when the inference service fails a request as a whole."""
    summary = EnrichSummary(out_path=opts.out_path)
    per_request = max(1, opts.batch_size or DEFAULT_PACK) * PACKS_PER_REQUEST
    tmp = opts.out_path.with_name(f".{opts.out_path.name}.{os.getpid()}.tmp")
    try:
        with open_rows(csv_path) as (fieldnames, rows), _open_out(tmp) as out:
            columns = output_columns(fieldnames, opts.schema["properties"])
            writer = csv.writer(out)
            writer.writerow(csv_safe_row([*fieldnames, *(c for c, _ in columns), ERROR_COLUMN]))

            def on_chunk(chunk: list[tuple[str, dict[str, str]]], results: list[PackedResult],
                         totals: EnrichTotals) -> None:
                summary.totals.add(totals)
                _write(writer, fieldnames, columns, chunk, results)

            await _run_chunks(stub, _chunks(rows, per_request), opts, settings, on_chunk)
        os.replace(tmp, opts.out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return summary


@contextlib.contextmanager
def _open_out(path: Path) -> Iterator[IO[str]]:
    # Local-file reads and writes of a CLI process: small, buffered, and nothing else shares this event loop.
    with open(path, "w", newline="", encoding="utf-8") as f:
        yield f


def _chunks(rows: Iterator[dict[str, str]], size: int) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """``(row id, row)`` lists of ``size``; the id is the row's number, from 1 (the header is not counted)."""
    chunk: list[tuple[str, dict[str, str]]] = []
    for n, row in enumerate(rows, start=1):
        chunk.append((str(n), row))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _run_chunks(
    stub: pb_grpc.InferenceServiceStub,
    chunks: Iterator[list[tuple[str, dict[str, str]]]],
    opts: EnrichOptions,
    settings: OrchestratorSettings,
    on_chunk: Callable[[list[tuple[str, dict[str, str]]], list[PackedResult], EnrichTotals], None],
) -> None:
    """Send chunks as CompleteBatch requests, ``opts.concurrency`` in flight (tasks of one TaskGroup), and hand
    their results to ``on_chunk(chunk, results, totals)`` in input order (a bounded window: memory holds at most
    that many chunks). The first error (of a request, of ``chunks`` or of ``on_chunk``) cancels the requests in
    flight and is raised as it is (not wrapped in an ExceptionGroup)."""

    async def one(chunk: list[tuple[str, dict[str, str]]]) -> tuple[list[PackedResult], EnrichTotals]:
        return await pack_complete(
            stub, instruction=opts.instruction, item_schema=opts.schema, items=chunk, model=opts.model,
            max_items_per_call=opts.batch_size, no_cache=opts.no_cache, rpc_timeout=opts.timeout, settings=settings,
        )

    window: deque[tuple[list[tuple[str, dict[str, str]]], asyncio.Task[tuple[list[PackedResult], EnrichTotals]]]] = \
        deque()
    try:
        async with asyncio.TaskGroup() as tg:
            for chunk in chunks:
                window.append((chunk, tg.create_task(one(chunk))))
                if len(window) >= max(1, opts.concurrency):
                    head, task = window.popleft()
                    on_chunk(head, *await task)
            while window:
                head, task = window.popleft()
                on_chunk(head, *await task)
    except BaseExceptionGroup as group:
        first = next((e for e in group.exceptions if not isinstance(e, asyncio.CancelledError)), group.exceptions[0])
        raise first from None


def _write(
    writer: Any,
    fieldnames: Sequence[str],
    columns: Sequence[tuple[str, str]],
    chunk: Sequence[tuple[str, dict[str, str]]],
    results: Sequence[PackedResult],
) -> None:
    by_id = {r.id: r for r in results}
    for row_id, row in chunk:
        r = by_id.get(row_id) or PackedResult(row_id, None, error="INTERNAL: no result for this row")
        fields = r.fields or {}
        writer.writerow(csv_safe_row([
            *(row.get(c, "") for c in fieldnames), *(cell(fields.get(p)) for _, p in columns), r.error,
        ]))


def format_summary(summary: EnrichSummary) -> str:
    """The summary block ``vantage enrich`` prints."""
    t = summary.totals
    lines = [
        f"enriched {t.items} rows → {summary.out_path}",
        f"  total           {t.items}",
        f"  cache hits      {t.cache_hits}",
        f"  newly computed  {t.computed}",
        f"  failed          {t.failed}",
        f"  success rate    {t.success_rate * 100:.1f}%",
        f"  LLM calls       {t.llm_calls}",
        f"  total USD       ${t.cost_usd:.4f}",
        f"  tokens          {t.input_tokens} in / {t.output_tokens} out",
    ]
    return "\n".join(lines)


async def run_enrich(settings: OrchestratorSettings, csv_path: Path, opts: EnrichOptions, *, stdout: IO[str] | None = None) -> int:
    """The ``vantage enrich`` command: exit 0 (every row enriched), 1 (some rows failed; see ``enrich_error``)."""
    channels = Channels(settings)
    try:
        stub = pb_grpc.InferenceServiceStub(channels.for_service("inference"))
        summary = await enrich_csv(stub, csv_path, opts, settings)
    finally:
        await channels.close()
    print(format_summary(summary), file=stdout or sys.stdout, flush=True)
    return EXIT_FAILED_ITEMS if summary.totals.failed else EXIT_OK
