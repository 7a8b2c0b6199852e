"""AI visibility (ORG_EVAL runs): ask every question × model × location of an org's market to AI assistants, read
each answer for the org, its competitors and its citations, and persist everything as it lands.

Flow of one run (streamed; no barrier between asking and reading):

1. **Set-up, once per run** — each model is routed (``InferenceService/Route``: an unknown model fails the run
   before anything is paid); the org's name variations are computed once per org and stored on ``orgs``: the
   deterministic ones (``ExtractionService/NormalizeOrg``: the extraction service is the one home of org identity
   — case, legal suffixes, the registrable domain and its stem) plus the ones an LLM suggests through ``CompleteBatch`` packing (cached by the inference service), and are
   reused by every later run of the same org.
2. **Question runs** — each (question, model, location) is a ``run_items`` row claimed like a research item
   (leases, attempts as fencing tokens, events) and fed into ONE long-lived bidirectional
   ``InferenceService/CompleteStream`` per run (:class:`StreamSession`). The inference service packs the batch
   providers' questions (ChatGPT and Perplexity through Bright Data) per (model, location) into snapshots of ≤ 20
   and runs the API models (OpenAI Responses + web search, Anthropic + web search, Perplexity Sonar) concurrently.
   Each ``BatchSubmitted`` is persisted at once (``provider_batches``, members in submission order, a pending ledger
   row per member) — before the snapshot's answers exist.
   A question asked before (same question, model and location; any run) is answered from the inference service's
   response cache — Bright Data answers included — at $0, ``question_runs.cached`` set, no snapshot and no ledger
   row; ``--no-cache`` (``no_cache``) asks again.
3. **Each answer** → ``question_runs`` (or, for an error record or an API error, the error and its code: a failed
   question run, never an answer) → ``ExtractionService/Extract`` (org name, domain and variations, the known
   competitors, the provider's citations) → ``org_evals`` / ``org_competitors`` / ``org_citations`` → item done.
   Cost per answer goes into the ledger: Bright Data records × ``brightdata_record_usd`` ($0.0015), API tokens ×
   price + web-search calls × price — the ``cost_usd`` the inference service computed for that call.
4. **End of the run** — the competitor names found across all answers are merged ("Lambda" / "Lambda Labs" /
   "Lambda Cloud" → one) through the packing helper :func:`services.orchestrator.app.jobs.enrich.merge_competitor_variants`
   and stored as ``org_competitors.canonical`` for the report (:mod:`services.orchestrator.reports.visibility`).

**Resume** (``vantage resume`` / ``ResumeRun`` after a crash or a cancel): a question run whose answer exists goes
straight to extraction (or is done); one whose snapshot is stored with status ``submitted`` is re-attached with
``ResumeBatch{snapshot_id, model, location, member_ids}`` — polled and downloaded, never triggered again; the rest
are asked. **CancelRun** cancels the run's in-flight snapshots (``CancelBatch``); their members are asked again on
resume.

This module knows gRPC stubs and the store; the run lifecycle (claims, heartbeats, cancel) is
:class:`services.orchestrator.app.runs.Orchestrator`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import pycountry
import structlog

from services.orchestrator.app.inputs import MAX_DOMAIN_CHARS, InputError, content_text, read_server_input
from services.orchestrator.app.jobs import enrich
from services.orchestrator.app.jobs.base import (
    ItemFailed,
    JobContext,
    SetupError,
    atomic_input,
    describe,
    item_stage,
    stage_call,
)
from services.orchestrator.app.pipeline import Budgets, Inflight
from services.orchestrator.clients import Clients
from services.orchestrator.domain import normalise_domain
from services.orchestrator.store import ClaimedItem, RunRow, Store
from services.orchestrator.store.eval_repo import (
    Answer,
    BatchRow,
    Bill,
    EvalStore,
    Evaluation,
    MatrixReport,
    QuestionRunState,
)
from shared.catalogue import load_catalogue
from shared.config import OrchestratorSettings
from shared.errors import FailedPrecondition, InvalidArgument, NotFound, VantageError, from_rpc_error
from shared.grpc_client import call_metadata
from shared.text import merge_variations
from vantage.common.v1 import common_pb2
from vantage.extraction.v1 import extraction_pb2
from vantage.inference.v1 import inference_pb2 as ipb
from vantage.inference.v1 import inference_pb2_grpc as ipb_grpc

if TYPE_CHECKING:
    from vantage.orchestrator.v1 import orchestrator_pb2

T = TypeVar("T")
log = structlog.get_logger("vantage.evaluation")

#: Items of an ORG_EVAL run admitted at once (when ``settings.max_items_in_flight`` is 0): most of them only wait for
#: a snapshot, so the bound is 20 full snapshots rather than the research budgets' sum.
EVAL_MIN_IN_FLIGHT = 400
#: Question-run states read at once ahead of the claims (one query per claim batch rather than one per item) …
READ_AHEAD = 200
#: … and how long (s) such a read stays good to use (another process may have changed a state since).
READ_AHEAD_TTL = 5.0
#: Output tokens an API assistant may use for one answer (list answers with explanations run long).
ANSWER_MAX_OUTPUT_TOKENS = 2048
#: Longest model name accepted (the inference service's bound).
MAX_MODEL_CHARS = 200
#: Times each question × model × location is asked when the caller does not say (``--samples``, StartRun
#: ``samples`` = 0): Elmo asks each prompt 5 times, openllmrank 3 (peers-2026-12.md); 3 keeps a sweep's cost at 3×.
DEFAULT_SAMPLES = 3
#: Most samples per cell accepted (StartRunRequest.samples 1-20).
MAX_SAMPLES = 20
#: A run of more question runs than this shows its matrix and estimated cost and asks before it starts
#: (``vantage evaluate``; ``--yes`` skips the question).
CONFIRM_ABOVE_QUESTION_RUNS = 500
#: Assumed size of one API answer for the cost estimate before a run (tokens: the question, the web-search results
#: read as input, a list answer with explanations), and one web-search call per answer.
ESTIMATE_INPUT_TOKENS = 3000
ESTIMATE_OUTPUT_TOKENS = 1000


def is_country_code(code: str) -> bool:
    """An ISO 3166-1 alpha-2 code that is assigned (pycountry's copy of the ISO 3166 Maintenance Agency list): "US",
    "GB" yes; "UK", "XX", "EU" no."""
    return len(code) == 2 and code.isascii() and code.isalpha() and pycountry.countries.get(alpha_2=code) is not None


# --- options and input ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOptions:
    """An ORG_EVAL run's options as stored in ``runs.options`` (JSON): the org, the matrix, the switches."""

    org_id: str
    org_name: str
    org_domain: str
    models: tuple[str, ...]
    locations: tuple[str, ...]
    known_competitors: tuple[str, ...] = ()
    name_variations: tuple[str, ...] = ()  # given by the caller, on top of the org's stored ones
    no_cache: bool = False
    #: Times each question × model × location is asked (each sample its own question run); 1 for runs stored
    #: before repeated samples.
    samples: int = 1
    #: The earlier sweep whose answers were copied into this one (``--reuse-answers``), "" = none.
    reuse_answers: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id, "org_name": self.org_name, "org_domain": self.org_domain,
            "models": list(self.models), "locations": list(self.locations),
            "known_competitors": list(self.known_competitors), "name_variations": list(self.name_variations),
            "no_cache": self.no_cache, "model": ",".join(self.models), "samples": self.samples,
            "reuse_answers": self.reuse_answers,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalOptions:
        return cls(
            org_id=str(d.get("org_id") or ""), org_name=str(d.get("org_name") or ""),
            org_domain=str(d.get("org_domain") or ""), models=tuple(d.get("models") or ()),
            locations=tuple(d.get("locations") or ()), known_competitors=tuple(d.get("known_competitors") or ()),
            name_variations=tuple(d.get("name_variations") or ()), no_cache=bool(d.get("no_cache")),
            samples=int(d.get("samples") or 1), reuse_answers=str(d.get("reuse_answers") or ""),
        )


def read_questions(path: str | Path, *, max_bytes: int | None = None) -> list[str]:
    """Questions from a text file: one per line; blank lines and lines starting with ``#`` are ignored. Raises
    :class:`InputError` for a missing or unreadable file, one over ``max_bytes``, or one without any question."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file", field="input_path")
    if not p.is_file():
        raise InputError(f"{p}: not a file", field="input_path")
    try:
        if max_bytes is not None and p.stat().st_size > max_bytes:
            raise InputError(f"{p}: larger than {max_bytes} bytes (VANTAGE_MAX_INPUT_BYTES)", field="input_path")
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text", field="input_path") from None
    except OSError as e:
        raise InputError(f"{p}: cannot open: {e.strerror}", field="input_path") from None
    out = [q for q in parse_questions(text)]
    if not out:
        raise InputError(f"{p}: no questions (one per line; # starts a comment)", field="input_path")
    return out


def parse_questions(text: str) -> list[str]:
    """Non-blank, non-comment lines of ``text``, whitespace collapsed."""
    out = []
    for line in text.splitlines():
        q = " ".join(line.split())
        if q and not q.startswith("#"):
            out.append(q)
    return out


def check_limits(settings: OrchestratorSettings, *, questions: Sequence[str] = (), models: Sequence[str] = (),
                 known_competitors: Sequence[str] = (), name_variations: Sequence[str] = (),
                 locations: Sequence[str] = (), samples: int = 1) -> None:
    """``InvalidArgument`` (one violation per field, the limit in its text) when an ORG_EVAL input breaks a bound:
    questions (``max_questions`` of ≤ ``max_question_chars``), models (``max_models`` of ≤ 200 chars), competitors
    and variations (``max_known_competitors`` / ``max_name_variations`` of ≤ ``max_name_chars``), locations (≤ 249,
    the ISO 3166-1 list), samples (1 … :data:`MAX_SAMPLES`), and questions × models × locations × samples ≤
    ``max_run_items``. Counted before de-duplication."""
    s = settings
    v: list[tuple[str, str]] = []

    def bound(field: str, values: Sequence[str], most: int, chars: int, what: str) -> None:
        if len(values) > most:
            v.append((field, f"at most {most} {what}, got {len(values)}"))
        else:
            long = next((i for i, x in enumerate(values) if len(x) > chars), None)
            if long is not None:
                v.append((field, f"each at most {chars} characters; #{long + 1} has {len(values[long])}"))

    bound("questions", questions, s.max_questions, s.max_question_chars, "questions (VANTAGE_MAX_QUESTIONS)")
    bound("models", models, s.max_models, MAX_MODEL_CHARS, "models (VANTAGE_MAX_MODELS)")
    # A location's spelling is validate_matrix's (the ISO 3166-1 message); here only their number.
    bound("locations", locations, len(pycountry.countries), 10**9, "locations (ISO 3166-1 has no more)")
    bound("known_competitors", known_competitors, s.max_known_competitors, s.max_name_chars,
          "known competitors (VANTAGE_MAX_KNOWN_COMPETITORS)")
    bound("name_variations", name_variations, s.max_name_variations, s.max_name_chars,
          "name variations (VANTAGE_MAX_NAME_VARIATIONS)")
    if not 1 <= samples <= MAX_SAMPLES:
        v.append(("samples", f"samples must be 1-{MAX_SAMPLES}, got {samples}"))
    if not v:
        n = (len(questions) * max(1, len(split_list(list(models)))) * max(1, len(split_list(list(locations))))
             * samples)
        if n > s.max_run_items:
            v.append(("questions", f"questions × models × locations × samples must be at most {s.max_run_items} "
                                   f"question runs (VANTAGE_MAX_RUN_ITEMS), got {n}"))
    if v:
        raise InvalidArgument("; ".join(f"{f}: {d}" for f, d in v), violations=v)


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """``"chatgpt, perplexity"`` or ``["chatgpt", "perplexity"]`` → ``["chatgpt", "perplexity"]`` (blanks and
    case-insensitive repeats dropped, first spelling kept)."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    seen: set[str] = set()
    out = []
    for p in parts:
        p = " ".join(p.split())
        if p and p.casefold() not in seen:
            seen.add(p.casefold())
            out.append(p)
    return out


def validate_matrix(org_name: str, org_domain: str, models: Sequence[str], locations: Sequence[str], *,
                    max_name_chars: int = 300) -> tuple[str, str, list[str], list[str]]:
    """(name, domain, models, locations) cleaned; ``InvalidArgument`` with field violations otherwise (a name over
    ``max_name_chars``, a domain over 253 characters, a location that is not an assigned ISO 3166-1 alpha-2 code).
    No location means one run per question and model without a location ("")."""
    violations: list[tuple[str, str]] = []
    name = " ".join(org_name.split())
    if not name:
        violations.append(("org_name", "the org's name is required (e.g. --org \"Together AI\")"))
    elif len(name) > max_name_chars:
        violations.append(("org_name", f"at most {max_name_chars} characters (VANTAGE_MAX_NAME_CHARS), got "
                                       f"{len(name)}"))
    domain = normalise_domain(org_domain)
    if len(domain) > MAX_DOMAIN_CHARS:
        violations.append(("org_domain", f"at most {MAX_DOMAIN_CHARS} characters (a host name), got {len(domain)}"))
    elif domain and "." not in domain:
        violations.append(("org_domain", f"{org_domain[:200]!r} is not a domain name such as together.ai"))
    models = split_list(models)
    if not models:
        violations.append(("models", "at least one model is required (e.g. chatgpt,perplexity,gpt-4.1)"))
    locs = [loc.upper() for loc in split_list(locations)]
    bad = [loc for loc in locs if not is_country_code(loc)]
    if bad:
        shown = ", ".join(repr(b[:10]) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        violations.append(("locations", f"locations are ISO 3166-1 alpha-2 country codes such as US, GB; not "
                                        f"{shown}"))
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations)
    return name, domain, models, locs or [""]


async def normalize_org(orch: JobContext, run_id: str, name: str, domain: str) -> extraction_pb2.NormalizeOrgResponse:
    """The org as the extraction service sees it (``ExtractionService/NormalizeOrg``: registrable domain, stem,
    deterministic name variations — the name, case and squashed forms, the base without legal suffixes and with
    Inc / Ltd / Labs / AI, the domain and its stem). Raises :class:`SetupError` when the call fails."""
    s = orch.settings
    req = extraction_pb2.NormalizeOrgRequest(org=extraction_pb2.Org(name=name, domain=domain))

    async def call(seconds_left: float) -> extraction_pb2.NormalizeOrgResponse:
        return await orch.clients.extraction.NormalizeOrg(req, timeout=seconds_left, metadata=call_metadata(run_id=run_id))
    try:
        return await stage_call(call, s)
    except VantageError as e:
        raise SetupError(describe("extraction", e), e) from None
    except grpc.aio.AioRpcError as e:
        err = from_rpc_error(e)
        raise SetupError(describe("extraction", err), err) from None


# --- creating a run ---------------------------------------------------------------------------------------------


async def create_eval_run(
    orch: JobContext,
    *,
    org_name: str,
    org_domain: str,
    questions: Iterable[str],
    models: Sequence[str],
    locations: Sequence[str],
    known_competitors: Sequence[str] = (),
    name_variations: Sequence[str] = (),
    name: str = "",
    no_cache: bool = False,
    input_path: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    reuse_answers: str = "",
    reuse_field: str = "reuse_answers",
) -> tuple[RunRow, MatrixReport]:
    """Store a new ORG_EVAL run (a sweep): the org (created with its deterministic variations, or found and
    reused), the questions, and one item + question run per (question, model, location, sample) — ``samples``
    (1 … :data:`MAX_SAMPLES`) per cell —, atomically with respect to the input
    (:func:`services.orchestrator.app.runs.atomic_input`). ``reuse_answers``: the id of an earlier ORG_EVAL run whose
    answers are copied in (:meth:`EvalStore.copy_answers`: same question, model, location and sample; those are
    only read again, the rest are asked). Raises :class:`InvalidArgument` for a bad org/matrix/samples, no question
    at all, or a ``reuse_answers`` run that is not an evaluation (naming ``reuse_field``), :class:`NotFound` for a
    ``reuse_answers`` run that does not exist (no run is then left)."""
    org_name, org_domain, models_l, locs = validate_matrix(org_name, org_domain, models, locations)
    if not 1 <= samples <= MAX_SAMPLES:
        raise InvalidArgument(f"samples must be 1-{MAX_SAMPLES}, got {samples}", field="samples")
    source = await resolve_reuse_run(orch.store, reuse_answers, field=reuse_field) if reuse_answers else ""
    ev = EvalStore(orch.store)
    org = await ev.get_or_create_org(org_name, org_domain, [])  # variations: NormalizeOrg at the run's set-up
    opts = EvalOptions(
        org_id=org.id, org_name=org_name, org_domain=org_domain, models=tuple(models_l), locations=tuple(locs),
        known_competitors=tuple(split_list(list(known_competitors))),
        name_variations=tuple(split_list(list(name_variations))), no_cache=no_cache, samples=samples,
        reuse_answers=source,
    )
    run = await orch.store.create_run(
        kind="org_eval", name=name or f"{org_name} visibility", options=opts.to_dict(), input_path=input_path,
        input_complete=False,
    )
    async with atomic_input(orch.store, run.id):  # no run is left when storing the matrix fails or is interrupted
        report = await ev.add_matrix(run.id, questions, models_l, locs, samples)
        if report.items == 0:
            raise InvalidArgument("no questions in the input", field="questions")
        if source:
            reused = await ev.copy_answers(run.id, source)
            log.info("answers_reused", run_id=run.id, source=source, copied=reused.copied, asked=reused.missing)
    stored = await orch.store.get_run(run.id)
    if stored is None:  # deleted under us (a concurrent `vantage db` clean-up): say so rather than return None
        raise FailedPrecondition(f"run {run.id} vanished while it was being created")
    return stored, report


async def resolve_reuse_run(store: Store, run_id: str, *, field: str = "reuse_answers") -> str:
    """The full id of the earlier sweep ``run_id`` (a full id, or its first ≥ 4 characters when they name one run)
    whose answers a new sweep reuses. Raises :class:`NotFound` (no such run) or :class:`InvalidArgument` (an
    ambiguous prefix, or a run that is not an ORG_EVAL run), both naming ``field``."""
    rid = run_id.strip()
    if len(rid) < 4 or len(rid) > 36 or not all(c in "0123456789abcdef-" for c in rid.lower()):
        raise InvalidArgument(f"{field}: {run_id[:40]!r} is not a run id", field=field)
    run = await store.get_run(rid) if len(rid) == 36 else None
    if run is None:
        found = await store.find_run_ids(rid.lower())
        if len(found) > 1:
            raise InvalidArgument(f"{field}: {rid!r} names more than one run; give more characters", field=field)
        run = await store.get_run(found[0]) if found else None
    if run is None:
        raise NotFound(f"{field}: run {rid} not found", reason="RUN_NOT_FOUND", metadata={"field": field})
    if run.kind != "org_eval":
        raise InvalidArgument(f"{field}: run {run.id} is a {run.kind} run, not an evaluation (org_eval)", field=field)
    return run.id


async def check_models(orch: JobContext, models: Sequence[str], *, field: str, rpc_timeout: float = 5.0) -> None:
    """``InvalidArgument`` (naming ``field``) for the first model the inference service does not route, or refuses
    as retired (model catalogue: FAILED_PRECONDITION naming the successor); an unreachable inference service is left
    for the run to report."""
    for model in split_list(list(models)):
        try:
            await orch.clients.inference.Route(ipb.RouteRequest(model=model), timeout=rpc_timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise InvalidArgument(e.details() or f"unknown model {model!r}", field=field) from None


@dataclass(frozen=True)
class SweepEstimate:
    """The size and estimated cost of a sweep before it starts (``vantage evaluate`` asks above
    :data:`CONFIRM_ABOVE_QUESTION_RUNS`). ``usd``: an estimate — Bright Data records × ``brightdata_record_usd``,
    API answers × (:data:`ESTIMATE_INPUT_TOKENS` / :data:`ESTIMATE_OUTPUT_TOKENS` at the model catalogue's prices,
    ``default_token_prices`` for a model it does not list) + one web-search call each; answers the response cache
    or ``--reuse-answers`` supplies cost less."""

    questions: int
    models: int
    locations: int
    samples: int
    usd: float

    @property
    def question_runs(self) -> int:
        return self.questions * self.models * self.locations * self.samples

    def describe(self) -> str:
        """``"20 questions × 4 models × 2 locations × 3 samples = 480 question runs, estimated cost $4.10"``."""
        return (f"{self.questions} questions × {self.models} models × {self.locations} locations × {self.samples} "
                f"samples = {self.question_runs:,} question runs, estimated cost ${self.usd:,.2f}")


def answer_usd_estimate(settings: OrchestratorSettings, model: str, batching: bool) -> float:
    """Estimated USD of one answer of ``model`` (see :class:`SweepEstimate`)."""
    if batching:
        return settings.brightdata_record_usd
    p_in, p_out = settings.token_prices(model)
    info = load_catalogue(settings.model_catalogue_path).lookup(model)
    search = info.web_search_usd_per_call if info is not None else settings.web_search_call_usd
    return (ESTIMATE_INPUT_TOKENS * p_in + ESTIMATE_OUTPUT_TOKENS * p_out) / 1e6 + search


async def estimate_sweep(orch: JobContext, *, questions: int, models: Sequence[str], locations: Sequence[str],
                         samples: int, rpc_timeout: float = 5.0) -> SweepEstimate:
    """The matrix size and estimated cost of a sweep; each model is routed (``InferenceService/Route``, free) to
    know whether it is scraped (Bright Data) or asked through its API. A model that cannot be routed is priced as
    an API model."""
    models_l = split_list(list(models))
    locs = split_list(list(locations)) or [""]
    usd = 0.0
    for model in models_l:
        try:
            rt = await orch.clients.inference.Route(ipb.RouteRequest(model=model), timeout=rpc_timeout)
            batching = rt.supports_batching
        except grpc.aio.AioRpcError:
            batching = False
        usd += answer_usd_estimate(orch.settings, model, batching) * questions * len(locs) * samples
    return SweepEstimate(questions, len(models_l), len(locs), samples, usd)


async def start_request(
    orch: JobContext, request: orchestrator_pb2.StartRunRequest, *, rpc_timeout: float = 5.0,
    upload_text: str | None = None,
) -> RunRow:
    """``StartRun`` with kind ORG_EVAL: inline ``org_eval`` (org, questions, models, locations…), or the questions
    as ``questions_text`` / an upload (``upload_text``, resolved by the server) / ``input_path`` (a file under
    ``VANTAGE_INPUT_DIR`` only: :func:`~services.orchestrator.app.inputs.server_input_path`), with the org and matrix in
    ``org_eval_options``. Every bound of :func:`check_limits` and :func:`validate_matrix` is checked first
    (INVALID_ARGUMENT naming the field). A model the inference service does not route is refused now
    (INVALID_ARGUMENT naming it) rather than failing the run later; an unreachable inference service is left for
    the run to report. Raises :class:`~services.orchestrator.app.inputs.PermissionDenied` for a path outside
    ``VANTAGE_INPUT_DIR`` (or any path when it is unset)."""
    s = orch.settings
    samples = request.samples or DEFAULT_SAMPLES  # 0 on the wire: the server's default
    if not 1 <= samples <= MAX_SAMPLES:
        raise InvalidArgument(f"samples must be 0 (the default, {DEFAULT_SAMPLES}) or 1-{MAX_SAMPLES}, got "
                              f"{request.samples}", field="samples")
    which = request.WhichOneof("input")
    input_path = None
    if which == "org_eval":
        spec = request.org_eval
        prefix = "org_eval"
        questions = [q for q in spec.questions if q.strip()]
        if not questions:
            raise InvalidArgument("org_eval.questions is empty", field="org_eval.questions")
        _check_spec(s, spec, prefix, list(spec.questions), samples)
    elif which in ("input_path", "questions_text", "upload_id"):
        spec = request.org_eval_options
        prefix = "org_eval_options"
        if which == "input_path":
            path, text = await read_server_input(request.input_path, s.input_dir, max_bytes=s.max_input_bytes)
            input_path = str(path)
        elif which == "questions_text":
            text = content_text(request.questions_text, max_bytes=s.max_input_bytes, field="questions_text")
        else:
            assert upload_text is not None  # the server resolved the upload id
            text = upload_text
        questions = parse_questions(text)
        try:
            check_limits(s, questions=questions, models=list(spec.models), locations=list(spec.locations),
                         samples=samples)
        except InvalidArgument as e:
            raise InvalidArgument(e.message, violations=[(which, d) for _, d in e.violations]) from None
        if not questions:
            raise InvalidArgument(f"{which}: no questions (one per line; # starts a comment)", field=which)
        _check_spec(s, spec, prefix, [])
    elif which is None:
        raise InvalidArgument("give the questions: org_eval (inline), questions_text, upload_id (UploadInput), or "
                              "input_path (a file under VANTAGE_INPUT_DIR)", field="input")
    else:
        raise InvalidArgument(f"{which} input needs kind RESEARCH; ORG_EVAL takes org_eval, questions_text, "
                              "upload_id or input_path", field=which)
    if request.reuse_answers:  # before anything is stored: NOT_FOUND / INVALID_ARGUMENT naming reuse_answers
        await resolve_reuse_run(orch.store, request.reuse_answers)
    await check_models(orch, list(spec.models), field=f"{prefix}.models", rpc_timeout=rpc_timeout)
    run, _ = await create_eval_run(
        orch, org_name=spec.org_name, org_domain=spec.org_domain, questions=questions, models=list(spec.models),
        locations=list(spec.locations), known_competitors=list(spec.known_competitors),
        name_variations=list(spec.name_variations), name=request.name.strip(), no_cache=request.no_cache,
        input_path=input_path, samples=samples, reuse_answers=request.reuse_answers,
    )
    return run


def _check_spec(s: OrchestratorSettings, spec: orchestrator_pb2.OrgEvalInput, prefix: str, questions: list[str],
                samples: int = 1) -> None:
    """The bounds and the org/matrix of an OrgEvalInput, violations named ``prefix.field`` (the matrix bound
    counts ``samples`` per cell)."""
    violations: list[tuple[str, str]] = []
    for check in (
        lambda: check_limits(s, questions=questions, models=list(spec.models), locations=list(spec.locations),
                             known_competitors=list(spec.known_competitors),
                             name_variations=list(spec.name_variations), samples=samples),
        lambda: validate_matrix(spec.org_name, spec.org_domain, list(spec.models), list(spec.locations),
                                max_name_chars=s.max_name_chars),
    ):
        try:
            check()
        except InvalidArgument as e:
            violations += [(f"{prefix}.{f}", d) for f, d in e.violations]
    if violations:
        raise InvalidArgument("; ".join(f"{f}: {d}" for f, d in violations), violations=violations)


# --- the stream -------------------------------------------------------------------------------------------------


class StreamBroken(Exception):
    """The run's CompleteStream ended or failed; answers still awaited on it will not come. ``code`` is the stream's
    gRPC status when it ended with one (None when it just ended or was closed)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


#: Stream statuses that another attempt cannot change (a wrong token, a refused request): the question run fails at
#: once with that status instead of re-opening the stream until ``rpc_timeout_seconds`` runs out.
PERMANENT_STREAM_CODES = frozenset({
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.ALREADY_EXISTS,
})


OnBatch = Callable[[ipb.BatchSubmitted], Awaitable[None]]


class StreamSession:
    """The run's one long-lived ``InferenceService/CompleteStream``.

    Item tasks call :meth:`ask` (a new question) or :meth:`resume` (a member of a snapshot submitted earlier) and
    await their own :class:`ItemResult`; one reader task persists each ``BatchSubmitted`` (``on_batch``, shielded
    from cancellation so that a snapshot id is never half-recorded) before it reads on, and hands each result to its
    waiter. When the stream breaks, every waiter gets :class:`StreamBroken` and the next call opens a new stream
    (a resumed snapshot is then re-attached on it). Requests go through a queue of :attr:`QUEUE_MAX` into the
    stream (the number of open items is bounded by the run's admission; a full queue makes the asker wait).

    Use as ``async with session:`` (the job's set-up enters it, :meth:`aclose` leaves it): the reader and the
    recording of each ``BatchSubmitted`` are tasks of its TaskGroup.
    """

    #: Requests queued for the stream at most (a question or a resume each).
    QUEUE_MAX = 4096

    def __init__(self, stub: ipb_grpc.InferenceServiceStub, *, run_id: str, on_batch: OnBatch) -> None:
        self._stub = stub
        self._run_id = run_id
        self._on_batch = on_batch
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[ipb.CompleteStreamRequest | None] | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[Exception | None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tg: asyncio.TaskGroup | None = None
        self._open = False
        self._waiters: dict[str, asyncio.Future[ipb.ItemResult]] = {}
        self._snapshot_of: dict[str, str] = {}  # item id → snapshot it went out in (this stream)
        self._resumed: set[str] = set()  # snapshots re-attached on this stream
        self._expected: set[str] = set()  # members of those snapshots
        self._early: dict[str, ipb.ItemResult] = {}  # their results that arrived before their item asked
        self.batches_submitted = 0
        self.streams_opened = 0

    async def __aenter__(self) -> StreamSession:
        self._tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _ensure_open(self) -> asyncio.Queue[ipb.CompleteStreamRequest | None]:
        if self._tg is None:
            raise RuntimeError("StreamSession used outside 'async with'")
        async with self._lock:
            if self._open and self._queue is not None:
                return self._queue
            queue: asyncio.Queue[ipb.CompleteStreamRequest | None] = asyncio.Queue(self.QUEUE_MAX)

            async def requests() -> AsyncIterator[ipb.CompleteStreamRequest]:
                while (msg := await queue.get()) is not None:
                    yield msg

            # No deadline: the stream lives as long as the run (the inference service then applies each provider's
            # own limits, e.g. brightdata_timeout_seconds per snapshot).
            call = self._stub.CompleteStream(requests(), metadata=call_metadata(run_id=self._run_id))
            self._queue, self._call, self._open = queue, call, True
            self._resumed, self._expected, self._early = set(), set(), {}
            self.streams_opened += 1
            self._reader = self._tg.create_task(self._read(call, queue), name=f"eval-stream-{self._run_id}")
            return queue

    async def _read(self, call: Any, queue: asyncio.Queue[ipb.CompleteStreamRequest | None]) -> None:
        assert self._tg is not None
        error: BaseException | None = None
        try:
            async for resp in call:
                kind = resp.WhichOneof("kind")
                if kind == "batch_submitted":
                    b = resp.batch_submitted
                    for mid in b.member_ids:
                        self._snapshot_of[mid] = b.snapshot_id
                    self._writing = self._tg.create_task(self._record(b))
                    failed = await asyncio.shield(self._writing)
                    if failed is not None:
                        raise failed
                    self.batches_submitted += 1
                elif kind == "result":
                    self._deliver(resp.result)
            error = StreamBroken("inference: the stream ended before every answer came back")
        except asyncio.CancelledError:
            error = StreamBroken("inference: the stream was closed")
            raise
        except grpc.aio.AioRpcError as e:
            error = StreamBroken(describe("inference", from_rpc_error(e)), e.code())
        except Exception as e:  # persisting a BatchSubmitted failed (database): fatal for the run
            error = e
        finally:
            if self._call is call:
                self._open = False
            waiters, self._waiters = self._waiters, {}
            for fut in waiters.values():
                if not fut.done():
                    fut.set_exception(error or StreamBroken("inference: stream closed"))
            while not queue.empty():  # nobody sends these any more: wake the askers waiting for room
                queue.get_nowait()

    async def _record(self, b: ipb.BatchSubmitted) -> Exception | None:
        """``on_batch(b)``; its error returned, not raised (a task of the TaskGroup must not fail it)."""
        try:
            await self._on_batch(b)
        except Exception as e:
            return e
        return None

    def _deliver(self, r: ipb.ItemResult) -> None:
        fut = self._waiters.pop(r.id, None)
        if fut is not None and not fut.done():
            fut.set_result(r)
        elif r.id in self._expected:
            self._early[r.id] = r  # a member of a re-attached snapshot whose item is not claimed yet
        self._expected.discard(r.id)

    def pop_snapshot_of(self, item_id: str) -> str:
        """The snapshot ``item_id`` went out in on this stream ("" when none was announced); forgotten after."""
        return self._snapshot_of.pop(item_id, "")

    async def _wait(self, item_id: str, fut: asyncio.Future[ipb.ItemResult]) -> ipb.ItemResult:
        try:
            return await fut
        finally:
            if self._waiters.get(item_id) is fut:
                del self._waiters[item_id]

    async def ask(self, item_id: str, request: ipb.CompleteRequest) -> ipb.ItemResult:
        """Send a new question; its result (answer or error)."""
        queue = await self._ensure_open()
        fut: asyncio.Future[ipb.ItemResult] = asyncio.get_running_loop().create_future()
        self._waiters[item_id] = fut
        await queue.put(ipb.CompleteStreamRequest(item=ipb.StreamItem(id=item_id, request=request)))
        return await self._wait(item_id, fut)

    async def resume(self, item_id: str, batch: BatchRow) -> ipb.ItemResult:
        """The result of ``item_id`` from snapshot ``batch`` submitted before: the snapshot is re-attached
        (``ResumeBatch``, polled and downloaded, never triggered) once per stream, whichever member asks first."""
        queue = await self._ensure_open()
        if item_id in self._early:
            return self._early.pop(item_id)
        fut: asyncio.Future[ipb.ItemResult] = asyncio.get_running_loop().create_future()
        self._waiters[item_id] = fut
        self._snapshot_of[item_id] = batch.snapshot_id
        if batch.snapshot_id not in self._resumed:
            self._resumed.add(batch.snapshot_id)
            self._expected.update(batch.member_ids)
            await queue.put(ipb.CompleteStreamRequest(resume=ipb.ResumeBatch(
                snapshot_id=batch.snapshot_id, model=batch.model, location=batch.location,
                member_ids=list(batch.member_ids),
            )))
        return await self._wait(item_id, fut)

    async def aclose(self) -> None:
        """Half-close and cancel the stream, stop the reader; a BatchSubmitted being recorded is finished first.
        Leaves the TaskGroup (``async with``)."""
        if self._queue is not None:
            with contextlib.suppress(asyncio.QueueFull):  # the call is cancelled next anyway
                self._queue.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._writing is not None and not self._writing.done():
            with contextlib.suppress(BaseException):
                await self._writing
        self._open = False
        self._tg = None
        await self._stack.aclose()


# --- the per-run evaluator --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRoute:
    provider: str  # e.g. brightdata_chatgpt, openai
    batching: bool  # answers come from provider batches (snapshots)


@dataclass
class EvalSetup:
    routes: dict[str, ModelRoute]
    org_name: str
    org_domain: str
    variations: list[str] = field(default_factory=list)


class Evaluator:
    """Processes the claimed question runs of one ORG_EVAL run (the ``process(item)`` of
    :class:`EvaluationJob`)."""

    def __init__(
        self, *, store: Store, clients: Clients, budgets: Budgets, settings: OrchestratorSettings, run_id: str,
        options: EvalOptions, setup: EvalSetup, inflight: Inflight,
    ) -> None:
        self.store = store
        self.ev = EvalStore(store)
        self.clients = clients
        self.budgets = budgets
        self.settings = settings
        self.run_id = run_id
        self.opts = options
        self.setup = setup
        self.inflight = inflight
        self.session = StreamSession(clients.inference, run_id=run_id, on_batch=self._on_batch)
        self.max_in_flight = settings.max_items_in_flight or max(budgets.total, EVAL_MIN_IN_FLIGHT)
        self._ahead: dict[str, tuple[float, QuestionRunState]] = {}
        self._ahead_lock = asyncio.Lock()

    # --- batches ------------------------------------------------------------------------------------------------

    def _bd_key(self, item_id: str, provider: str, snapshot_id: str) -> str:
        """Ledger key of a scraped record: one per (item, snapshot) whatever the attempt, since a resumed snapshot
        is the same paid record."""
        return f"{self.run_id}:{item_id}:{provider}:{snapshot_id}"

    async def _on_batch(self, b: ipb.BatchSubmitted) -> None:
        members = list(b.member_ids)
        await self.ev.record_batch(
            self.run_id, b.snapshot_id, b.provider, b.model, b.location, members,
            [self._bd_key(i, b.provider, b.snapshot_id) for i in members],
        )
        log.info("batch_recorded", run_id=self.run_id, snapshot_id=b.snapshot_id, provider=b.provider,
                 model=b.model, location=b.location, members=len(members))

    # --- one question run ---------------------------------------------------------------------------------------

    async def process(self, item: ClaimedItem) -> tuple[bool, str]:
        """Ask (or re-attach, or reuse the stored answer), persist the answer, extract, persist, done. Returns
        (done?, one-line summary or failure reason)."""
        st = await self._load(item)
        if st is None:
            with self.inflight.critical():
                await self.store.fail_item(item, "internal: the item has no question run")
            return False, "internal: the item has no question run"
        try:
            if not st.answered:
                outcome = await self._ask(item, st)
                if isinstance(outcome, str):  # failure recorded
                    return False, outcome
                st = outcome
            ev = await self._extract(item, st)
        except ItemFailed as f:
            with self.inflight.critical():
                await self.store.fail_item(item, f.reason)
            return False, f.reason
        message = summary(ev)
        with self.inflight.critical():
            # Read before (vantage reextract, or a re-processed item): the new extraction replaces the stored one.
            ok = await self.ev.complete(item, ev, message, replace=st.has_evaluation)
        if not ok:
            return False, "stale attempt: the item was claimed again elsewhere; result discarded"
        return True, message

    async def _load(self, item: ClaimedItem) -> QuestionRunState | None:
        """The item's state, from a read-ahead of the next :data:`READ_AHEAD` unfinished items when that is fresh
        (≤ :data:`READ_AHEAD_TTL` s old): the items of one claim batch then cost one query, and reach the stream
        together — so that a (model, location) group fills its snapshot instead of being split by the linger."""
        hit = self._ahead.pop(item.id, None)
        if hit is not None and time.monotonic() - hit[0] <= READ_AHEAD_TTL:
            return hit[1]
        async with self._ahead_lock:
            hit = self._ahead.pop(item.id, None)
            if hit is not None and time.monotonic() - hit[0] <= READ_AHEAD_TTL:
                return hit[1]
            states = await self.ev.load_ahead(self.run_id, item.seq, READ_AHEAD)
            now = time.monotonic()
            mine = None
            for st in states:
                if st.item_id == item.id:
                    mine = st
                else:
                    self._ahead[st.item_id] = (now, st)
            while len(self._ahead) > 2 * READ_AHEAD:  # oldest first: never more than two pages in memory
                self._ahead.pop(next(iter(self._ahead)))
        return mine or await self.ev.load(item.id)

    def cache_scope(self, st: QuestionRunState) -> str:
        """The response-cache scope of a question run: ``"<run id>:<sample>"``. Within the sweep the answer is
        reused (resume, retry, crash recovery never pay twice); another sweep, or another sample of the same cell,
        asks the provider again."""
        return f"{self.run_id}:{st.sample}"

    def _request(self, st: QuestionRunState, key: str) -> ipb.CompleteRequest:
        return ipb.CompleteRequest(
            cache_scope=self.cache_scope(st),
            model=st.model,
            messages=[ipb.Message(role="user", content=st.question)],
            location=st.location,
            web_search=True,
            max_output_tokens=ANSWER_MAX_OUTPUT_TOKENS,
            no_cache=self.opts.no_cache,
            idempotency_key=key,
        )

    async def _ask(self, item: ClaimedItem, st: QuestionRunState) -> QuestionRunState | str:
        """The question run's answer, persisted; or the failure reason (recorded on the item and the question run).
        When the stream breaks (the inference service restarted), it is re-opened with back-off for up to
        ``rpc_timeout_seconds`` and the question re-attached (its snapshot was recorded) or asked again."""
        route = self.setup.routes.get(st.model.lower()) or ModelRoute("", False)
        s = self.settings
        sends = tries = 0
        give_up = time.monotonic() + s.rpc_timeout_seconds
        while True:
            api_key = ""
            tries += 1
            try:
                if st.resumable:
                    batch = BatchRow(st.snapshot_id or "", route.provider, st.model, st.location, "submitted",
                                     st.batch_members)
                    result = await self.session.resume(item.id, batch)
                else:
                    sends += 1
                    if not route.batching:
                        api_key = f"{self.run_id}:{item.id}:{route.provider or 'llm'}:{item.attempt}"
                        api_key += f":{sends}" if sends > 1 else ""
                        with self.inflight.critical():
                            await self.store.ledger_begin(
                                run_id=self.run_id, item_id=item.id, provider=route.provider or "llm", kind="llm",
                                key=api_key, unit_type="tokens", attempt=item.attempt,
                            )
                    result = await self.session.ask(item.id, self._request(st, api_key))
                break
            except StreamBroken as e:
                if e.code in PERMANENT_STREAM_CODES:
                    raise ItemFailed(str(e), e.code) from None
                # The outcome of a call in flight is unknown: its pending ledger row (if any) stays.
                # An inference restart takes seconds: keep re-opening (with back-off) for up to rpc_timeout_seconds.
                pause = min(s.retry_max_seconds, s.retry_initial_seconds * 2 ** min(tries, 16))
                if time.monotonic() + pause > give_up:
                    raise ItemFailed(f"{e} (after {tries} attempts)", grpc.StatusCode.UNAVAILABLE) from None
                await asyncio.sleep(pause)
                reloaded = await self.ev.load(item.id)  # a BatchSubmitted may have been recorded meanwhile
                st = reloaded or st
                if st.answered:
                    return st
        snapshot = self.session.pop_snapshot_of(item.id) or ((st.snapshot_id or "") if st.resumable else "")
        if result.WhichOneof("outcome") == "error":
            err = result.error
            code = err.provider_error_code or err.code or "UNKNOWN"
            provider = err.provider or route.provider
            reason = f"{provider or 'inference'}: {code}: {err.message}"
            discard = api_key or (self._bd_key(item.id, provider, snapshot) if snapshot else None)
            with self.inflight.critical():
                ok = await self.ev.record_failure(
                    item, reason=reason, error=err.message, error_code=code, provider=provider, snapshot_id=snapshot,
                    discard_key=discard,
                )
            return reason if ok else "stale attempt: the item was claimed again elsewhere; result discarded"
        r = result.response
        answer = Answer(
            provider=r.provider or route.provider, markdown=r.markdown or r.text, text=r.text,
            citations=[{"url": c.url, "title": c.title} for c in r.citations],
            search_queries=list(r.search_queries),
            # A cached answer was scraped in an earlier run's snapshot: this run paid nothing and holds no snapshot.
            snapshot_id=snapshot if r.cached else (r.snapshot_id or snapshot), cost_usd=r.cost_usd,
            input_tokens=r.usage.input_tokens, output_tokens=r.usage.output_tokens,
            web_search_calls=r.web_search_calls, cached=r.cached,
            web_search_triggered=r.web_search_triggered if r.HasField("web_search_triggered") else None,
            links_attached=[{"url": c.url, "title": c.title} for c in r.links_attached],
            model_version=r.model,
        )
        bill: Bill | None = None
        if answer.snapshot_id and not api_key and not r.cached:
            bill = Bill(key=self._bd_key(item.id, answer.provider, answer.snapshot_id), provider=answer.provider,
                        kind="scrape", unit_type="records", units=1, usd=r.cost_usd)
        elif api_key and (r.cost_usd > 0 or (not r.cached and r.usage.input_tokens + r.usage.output_tokens > 0)):
            bill = Bill(key=api_key, provider=answer.provider, kind="llm", unit_type="tokens",
                        units=r.usage.input_tokens + r.usage.output_tokens, usd=r.cost_usd,
                        input_tokens=r.usage.input_tokens, output_tokens=r.usage.output_tokens,
                        cost_estimated=r.cost_estimated)
        with self.inflight.critical():
            if bill is None and api_key:
                await self.store.ledger_discard(api_key)  # answered from the cache: nothing was billed
            ok = await self.ev.record_answer(item, answer, bill)
        if not ok:
            return "stale attempt: the item was claimed again elsewhere; result discarded"
        return QuestionRunState(
            item_id=st.item_id, question_id=st.question_id, question=st.question, question_seq=st.question_seq,
            model=st.model, location=st.location, status="answered", provider=answer.provider,
            answer_markdown=answer.markdown, answer_text=answer.text, citations=answer.citations,
            snapshot_id=answer.snapshot_id or None, batch_status=st.batch_status, batch_members=st.batch_members,
            has_evaluation=st.has_evaluation, sample=st.sample,
        )

    async def _extract(self, item: ClaimedItem, st: QuestionRunState) -> Evaluation:
        req = extraction_pb2.ExtractRequest(
            answer_markdown=st.answer_markdown or st.answer_text or "",
            org=extraction_pb2.Org(name=self.setup.org_name, domain=self.setup.org_domain,
                                   name_variations=self.setup.variations),
            known_competitors=list(self.opts.known_competitors),
            provider_citations=[common_pb2.Citation(url=c.get("url", ""), title=c.get("title", ""))
                                for c in st.citations if c.get("url")],
        )
        md = call_metadata(run_id=self.run_id, item_id=item.id)
        resp = await item_stage(self.settings, "extraction", self.budgets.extraction,
                           lambda t: self.clients.extraction.Extract(req, timeout=t, metadata=md))
        return evaluation_from_proto(resp)


def evaluation_from_proto(resp: extraction_pb2.ExtractResponse) -> Evaluation:
    oe = resp.org_eval
    return Evaluation(
        mentioned=oe.mentioned, mention_count=oe.mention_count, rank=oe.rank, first_offset=oe.first_offset,
        sentiment=extraction_pb2.OrgEval.Sentiment.Name(oe.sentiment).replace("SENTIMENT_", ""),
        evidence=oe.evidence, owned_citation_count=oe.owned_citation_count,
        competitors=[(c.name, c.rank, c.mention_count) for c in resp.competitors if c.name.strip()],
        citations=[
            (c.position, c.url, c.domain, c.title,
             extraction_pb2.ExtractedCitation.Source.Name(c.source).replace("SOURCE_", ""), c.owned, c.competitor,
             c.competitor_name)
            for c in resp.citations if c.url
        ],
    )


def summary(ev: Evaluation) -> str:
    """One line per evaluated answer: ``"named #2 (POSITIVE) · 5 competitors · 4 citations"``."""
    head = f"named #{ev.rank} ({ev.sentiment})" if ev.mentioned else "not named"
    return f"{head} · {len(ev.competitors)} competitors · {len(ev.citations)} citations"


# --- set-up, execution, end, cancel -----------------------------------------------------------------------------


async def fetch_eval_setup(orch: JobContext, run: RunRow, opts: EvalOptions) -> EvalSetup:
    """Route every model (an unknown one is INVALID_ARGUMENT → :class:`SetupError`), and the org's name variations:
    stored ones, plus — once per org — the LLM's suggestions (stored on the org for later runs)."""
    s = orch.settings
    md = call_metadata(run_id=run.id)
    routes: dict[str, ModelRoute] = {}
    for model in opts.models:
        async def route(seconds_left: float, model: str = model) -> ipb.RouteResponse:
            return await orch.clients.inference.Route(ipb.RouteRequest(model=model), timeout=seconds_left, metadata=md)
        try:
            rt = await stage_call(route, s)
        except VantageError as e:
            raise SetupError(describe("inference", e), e) from None
        routes[model.lower()] = ModelRoute(rt.provider, rt.supports_batching)
    ev = EvalStore(orch.store)
    org = await ev.get_org(opts.org_id) if opts.org_id else None
    if org is None:  # a run created by another version, or the org row is gone: make it again
        org = await ev.get_or_create_org(opts.org_name, opts.org_domain, [])
    norm = await normalize_org(orch, run.id, org.name, org.domain)
    variations = merge_variations(org.name_variations, norm.name_variations)
    if org.variations_model is None:
        suggested = await _suggest_variations(orch, run.id, org.id, org.name, opts.no_cache)
        if suggested is not None:
            variations = merge_variations(variations, suggested)
            await ev.set_org_variations(org.id, variations, s.research_model)
    variations = merge_variations(variations, opts.name_variations)
    return EvalSetup(routes=routes, org_name=org.name, org_domain=org.domain, variations=variations)


async def _suggest_variations(orch: JobContext, run_id: str, org_id: str, name: str, no_cache: bool
                              ) -> list[str] | None:
    """The LLM's name variations for ``name`` (one packed CompleteBatch item, cached by the inference service); its
    cost goes to the run's ledger. None when the call failed (logged; the deterministic variations stand)."""
    s = orch.settings
    key = f"{run_id}:org:{org_id}:variations"
    await orch.store.ledger_begin(run_id=run_id, item_id=None, provider="llm", kind="llm", key=key,
                                  unit_type="tokens")
    try:
        results, totals = await enrich.pack_complete(
            orch.clients.inference, instruction=enrich.NAME_VARIATIONS_INSTRUCTION,
            item_schema=enrich.NAME_VARIATIONS_SCHEMA, items=[("0", {"name": name})], model=s.research_model,
            no_cache=no_cache, rpc_timeout=s.rpc_timeout_seconds, settings=s,
        )
    except VantageError as e:
        await orch.store.ledger_discard(key)
        log.warning("name_variations_failed", run_id=run_id, org=name, error=e.message)
        return None
    await _bill_run_call(orch.store, key, totals)
    if not results or results[0].fields is None:
        log.warning("name_variations_failed", run_id=run_id, org=name, error=results[0].error if results else "")
        return None
    found = results[0].fields.get("variations") or []
    return [v for v in found if isinstance(v, str)]


async def _bill_run_call(store: Store, key: str, totals: enrich.EnrichTotals) -> None:
    if totals.cost_usd > 0 or totals.computed:
        await store.ledger_complete(key, units=totals.input_tokens + totals.output_tokens, usd=totals.cost_usd,
                                    input_tokens=totals.input_tokens, output_tokens=totals.output_tokens)
    else:
        await store.ledger_discard(key)


async def merge_competitors(orch: JobContext, run_id: str, *, no_cache: bool = False) -> int:
    """Give every competitor name of the run that has none a canonical name ("Lambda Labs" → "Lambda") through
    :func:`services.orchestrator.app.jobs.enrich.merge_competitor_variants` (packed, cached); the call's cost goes to the
    run's ledger; then every canonical name of the run through ``ExtractionService/MergeCompetitors`` (identity
    keys: "Lambda" / "Lambda Labs" / "lambdalabs.com" → one, shown under the spelling most answers use), also when
    the LLM call failed (logged). Returns how many names were given a canonical name."""
    ev = EvalStore(orch.store)
    names = await ev.competitor_names(run_id, unmerged_only=True)
    if not names:
        return 0
    s = orch.settings
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    key = f"{run_id}:competitors:{digest}"
    await orch.store.ledger_begin(run_id=run_id, item_id=None, provider="llm", kind="llm", key=key,
                                  unit_type="tokens")
    unique = enrich.unique_names(names)
    try:
        results, totals = await enrich.pack_complete(
            orch.clients.inference, instruction=enrich.MERGE_INSTRUCTION, item_schema=enrich.MERGE_SCHEMA,
            items=[(str(i), {"name": n}) for i, n in enumerate(unique)], model=s.research_model, no_cache=no_cache,
            rpc_timeout=s.rpc_timeout_seconds, settings=s,
        )
    except VantageError as e:
        await orch.store.ledger_discard(key)
        log.warning("competitor_merge_failed", run_id=run_id, error=e.message)
        results, totals = [], None
    if totals is not None:
        await _bill_run_call(orch.store, key, totals)
    canon_of: dict[str, str] = {}
    for r in results:
        name = unique[int(r.id)]
        canon = (r.fields or {}).get("canonical")
        canon_of[name.casefold()] = " ".join(canon.split()) if isinstance(canon, str) and canon.strip() else name
    spelled = {n.casefold(): n for n in reversed(unique)}
    mapping = {}
    for n in names:
        c = canon_of.get(n.casefold(), n)
        mapping[n] = spelled.get(c.casefold(), c)
    await ev.set_canonical_names(run_id, mapping)
    await _merge_by_identity(orch, run_id)
    return len(mapping)


async def _merge_by_identity(orch: JobContext, run_id: str) -> None:
    """Merge the run's canonical competitor names by identity (``ExtractionService/MergeCompetitors``, weighted by
    the answers naming each); a failure is logged and leaves the names as they are."""
    ev = EvalStore(orch.store)
    weights: dict[str, int] = {}
    found_as: dict[str, set[str]] = {}
    for _m, _l, found, canonical, answers, _mentions, _ranks in await ev.competitor_stats(run_id):
        weights[canonical] = weights.get(canonical, 0) + answers
        found_as.setdefault(canonical, set()).add(found)
    if not weights:
        return
    s = orch.settings
    req = extraction_pb2.MergeCompetitorsRequest(
        names=[extraction_pb2.WeightedName(name=n, weight=w) for n, w in weights.items()])

    async def call(seconds_left: float) -> extraction_pb2.MergeCompetitorsResponse:
        return await orch.clients.extraction.MergeCompetitors(req, timeout=seconds_left,
                                                              metadata=call_metadata(run_id=run_id))
    try:
        resp = await stage_call(call, s)
    except (VantageError, grpc.aio.AioRpcError) as e:
        log.warning("competitor_identity_merge_failed", run_id=run_id, error=str(e)[:200])
        return
    mapping = {found: m.canonical for m in resp.names if m.canonical != m.name for found in found_as.get(m.name, ())}
    if mapping:
        await ev.set_canonical_names(run_id, mapping)


class EvaluationJob:
    """The ``org_eval`` kind of run (:class:`~services.orchestrator.app.jobs.base.Job`): set-up routes every model
    and computes the org's name variations; each question run is asked and read by an :class:`Evaluator` over one
    ``CompleteStream``; when nothing is left to do, the run's competitor names are merged; a cancel cancels its
    snapshots in flight."""

    def __init__(self, ctx: JobContext, run: RunRow, inflight: Inflight) -> None:
        self.ctx = ctx
        self.run = run
        self.inflight = inflight
        self.options = EvalOptions.from_dict(run.options)
        self.max_in_flight: int | None = None
        self._evaluator: Evaluator | None = None

    async def setup(self) -> None:
        """Raises :class:`SetupError` when a model is not routed or the org cannot be normalised."""
        setup = await fetch_eval_setup(self.ctx, self.run, self.options)
        self._evaluator = Evaluator(
            store=self.ctx.store, clients=self.ctx.clients, budgets=self.ctx.budgets, settings=self.ctx.settings,
            run_id=self.run.id, options=self.options, setup=setup, inflight=self.inflight,
        )
        await self._evaluator.session.__aenter__()  # left by aclose (the orchestrator always calls it)
        self.max_in_flight = self._evaluator.max_in_flight

    async def process(self, item: ClaimedItem) -> tuple[bool, str]:
        if self._evaluator is None:
            raise RuntimeError("EvaluationJob.process before setup")
        return await self._evaluator.process(item)

    async def finish(self) -> None:
        """Merge the run's competitor names once every question run is finished (not when items other processes
        hold are still unfinished: the last process to finish does it)."""
        if not (await self.ctx.store.run_totals(self.run.id)).unfinished:
            await merge_competitors(self.ctx, self.run.id, no_cache=self.options.no_cache)

    async def cancel(self) -> None:
        """Cancel the run's snapshots still in flight (:func:`cancel_batches`)."""
        await cancel_batches(self.ctx, self.run.id)

    async def aclose(self) -> None:
        """Close the run's ``CompleteStream``."""
        if self._evaluator is not None:
            await self._evaluator.session.aclose()


async def reextract(store: Store, run_id: str) -> int:
    """``vantage reextract RUN_ID`` before the run is executed again: every finished question run of the ORG_EVAL
    run ``run_id`` that holds an answer goes back to pending, so that executing the run reads the stored answers
    through extraction again (after an extractor upgrade) and replaces their extraction results — for $0: nothing
    is asked (an answered question run is never sent to a provider), and competitor names found before keep their
    canonical name (no merge call for them). Question runs without an answer stay as they are. Returns how many
    will be read. Raises :class:`NotFound` (no such run) or :class:`FailedPrecondition` (not an ORG_EVAL run)."""
    run = await store.get_run(run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if run.kind != "org_eval":
        raise FailedPrecondition(f"run {run_id} is a {run.kind} run: reextract reads the answers of an evaluation")
    return await EvalStore(store).requeue_answered(run_id)


async def cancel_batches(orch: JobContext, run_id: str) -> int:
    """CancelRun of an ORG_EVAL run: cancel its snapshots still in flight (``CancelBatch``), mark them
    ``cancelled`` and drop their members' pending ledger rows (a cancelled snapshot is not billed). Their members
    are asked again on resume. Returns how many were cancelled; a snapshot the provider would not cancel (already
    finished) stays ``submitted`` and is re-attached on resume."""
    ev = EvalStore(orch.store)
    n = 0
    s = orch.settings
    for b in await ev.batches(run_id, ("submitted",)):
        try:
            async def cancel(seconds_left: float, b: BatchRow = b) -> ipb.CancelBatchResponse:
                return await orch.clients.inference.CancelBatch(
                    ipb.CancelBatchRequest(snapshot_id=b.snapshot_id, provider=b.provider),
                    timeout=seconds_left, metadata=call_metadata(run_id=run_id),
                )
            resp = await stage_call(cancel, s, seconds=min(s.rpc_timeout_seconds, 30.0))
        except VantageError as e:
            log.warning("cancel_batch_failed", run_id=run_id, snapshot_id=b.snapshot_id, error=e.message)
            continue
        if resp.cancelled and await ev.set_batch_status(b.snapshot_id, "cancelled"):
            n += 1
            await ev.discard_pending_ledger(run_id, [f"{run_id}:{i}:{b.provider}:{b.snapshot_id}"
                                                     for i in b.member_ids])
    return n


__all__ = [
    "CONFIRM_ABOVE_QUESTION_RUNS",
    "DEFAULT_SAMPLES",
    "MAX_SAMPLES",
    "EvalOptions",
    "EvalSetup",
    "EvaluationJob",
    "Evaluator",
    "StreamBroken",
    "StreamSession",
    "SweepEstimate",
    "answer_usd_estimate",
    "cancel_batches",
    "check_models",
    "create_eval_run",
    "estimate_sweep",
    "fetch_eval_setup",
    "merge_competitors",
    "merge_variations",
    "parse_questions",
    "read_questions",
    "reextract",
    "resolve_reuse_run",
    "split_list",
    "start_request",
    "validate_matrix",
]
