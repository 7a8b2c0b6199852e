"""The client's surface types: frozen dataclasses converted from the services' protobuf messages (the field meanings
and bounds are those of ``protos/vantage/*/v1/*.proto``). Money is USD, search cost is Tavily credits, times are
timezone-aware UTC ``datetime``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vantage_client._pb.vantage.common.v1 import common_pb2
from vantage_client._pb.vantage.extraction.v1 import extraction_pb2 as xpb
from vantage_client._pb.vantage.inference.v1 import inference_pb2 as ipb
from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2 as opb
from vantage_client._pb.vantage.search.v1 import search_pb2 as spb


class RunKind(enum.StrEnum):
    """``vantage.orchestrator.v1.RunKind``."""

    UNSPECIFIED = "RUN_KIND_UNSPECIFIED"
    RESEARCH = "RESEARCH"
    ORG_EVAL = "ORG_EVAL"


class RunStatus(enum.StrEnum):
    """``vantage.orchestrator.v1.Run.Status``."""

    UNSPECIFIED = "STATUS_UNSPECIFIED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


#: Statuses after which a run changes no more (until resumed).
TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED})


def _time(ts: Any) -> datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


@dataclass(frozen=True)
class RunCounts:
    """Items of a run by status."""

    total: int = 0
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Run:
    """A research or org-evaluation run (``vantage.orchestrator.v1.Run``). ``cost_usd`` is the sum of its cost
    ledger (USD), ``credits`` the Tavily credits it used, tokens are LLM tokens."""

    run_id: str
    kind: RunKind
    status: RunStatus
    name: str = ""
    counts: RunCounts = field(default_factory=RunCounts)
    cost_usd: float = 0.0
    credits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        """True once the run is COMPLETED, CANCELLED or FAILED."""
        return self.status in TERMINAL

    @classmethod
    def from_pb(cls, m: opb.Run) -> Run:
        c = m.counts
        return cls(
            run_id=m.run_id, kind=RunKind(opb.RunKind.Name(m.kind)), status=RunStatus(opb.Run.Status.Name(m.status)),
            name=m.name, counts=RunCounts(c.total, c.pending, c.running, c.done, c.failed, c.skipped),
            cost_usd=m.cost_usd, credits=m.credits, input_tokens=m.usage.input_tokens,
            output_tokens=m.usage.output_tokens, created_at=_time(m.created_at), started_at=_time(m.started_at),
            finished_at=_time(m.finished_at), error=m.error,
        )


@dataclass(frozen=True)
class RunEvent:
    """One progress event of ``WatchRun``. ``type`` is the ``RunEvent.Type`` name (``ITEM_DONE``, ``RUN_FINISHED``…);
    ``run`` is set on the run-level events."""

    sequence: int
    type: str
    run_id: str
    item_id: str = ""
    item_key: str = ""
    message: str = ""
    run: Run | None = None
    time: datetime | None = None

    @property
    def ends_run(self) -> bool:
        return self.type in ("RUN_FINISHED", "RUN_CANCELLED")

    @classmethod
    def from_pb(cls, m: opb.RunEvent) -> RunEvent:
        return cls(
            sequence=m.sequence, type=opb.RunEvent.Type.Name(m.type), run_id=m.run_id, item_id=m.item_id,
            item_key=m.item_key, message=m.message, run=Run.from_pb(m.run) if m.HasField("run") else None,
            time=_time(m.time),
        )


@dataclass(frozen=True)
class ResearchResult:
    """A researched company: ``tier`` (HOT / WARM / WATCH / COLD), ``score`` 0..100, the category, the rationale and
    the evidence URLs; ``cost_usd`` of its LLM call and searches."""

    tier: str
    score: int
    category: str
    rationale: str
    evidence_urls: tuple[str, ...]
    results_kept: int
    results_returned: int
    tokens: int
    cost_usd: float

    @classmethod
    def from_pb(cls, m: opb.ResearchResult) -> ResearchResult:
        return cls(common_pb2.Tier.Name(m.tier), m.score, m.category, m.rationale, tuple(m.evidence_urls),
                   m.results_kept, m.results_returned, m.tokens, m.cost_usd)


@dataclass(frozen=True)
class QuestionRunResult:
    """One question × model × location of an evaluation and what its answer says about the org (``rank`` 1 =
    named first, 0 = not named; ``sentiment`` POSITIVE / NEUTRAL / NEGATIVE / MIXED or "")."""

    question: str
    model: str
    location: str
    provider: str
    snapshot_id: str
    mentioned: bool
    rank: int
    mention_count: int
    sentiment: str
    competitors: tuple[str, ...]
    citations: int
    owned_citations: int
    error_code: str
    cost_usd: float

    @classmethod
    def from_pb(cls, m: opb.QuestionRunResult) -> QuestionRunResult:
        return cls(m.question, m.model, m.location, m.provider, m.snapshot_id, m.mentioned, m.rank, m.mention_count,
                   m.sentiment, tuple(m.competitors), m.citations, m.owned_citations, m.error_code, m.cost_usd)


@dataclass(frozen=True)
class RunItem:
    """One item of a run (a company, or a question run) with its result once done. ``status`` is the
    ``RunItem.Status`` name (PENDING, RUNNING, DONE, FAILED, SKIPPED)."""

    item_id: str
    key: str
    status: str
    attempts: int = 0
    error: str = ""
    domain: str = ""
    research: ResearchResult | None = None
    question_run: QuestionRunResult | None = None

    @classmethod
    def from_pb(cls, m: opb.RunItem) -> RunItem:
        return cls(
            item_id=m.item_id, key=m.key, status=opb.RunItem.Status.Name(m.status), attempts=m.attempts, error=m.error,
            domain=m.domain, research=ResearchResult.from_pb(m.research) if m.HasField("research") else None,
            question_run=QuestionRunResult.from_pb(m.question_run) if m.HasField("question_run") else None,
        )


@dataclass(frozen=True)
class SearchResult:
    """A Tavily result kept by the search service (``score`` 0..1, Tavily's relevance)."""

    title: str
    url: str
    content: str
    score: float
    raw_content: str = ""


@dataclass(frozen=True)
class SearchResponse:
    """``SearchService/SearchCompany``'s answer: kept results (highest score first), the LLM context built from them,
    Tavily ``credits`` billed (0 on a cache hit) and their ``cost_usd``."""

    query: str
    results: tuple[SearchResult, ...]
    llm_context: str
    credits: int
    cost_usd: float
    cached: bool
    returned_count: int
    filtered_out_count: int
    context_truncated: bool
    request_id: str

    @classmethod
    def from_pb(cls, m: spb.SearchResponse) -> SearchResponse:
        return cls(
            m.query, tuple(SearchResult(r.title, r.url, r.content, r.score, r.raw_content) for r in m.results),
            m.llm_context, m.credits, m.cost_usd, m.cached, m.returned_count, m.filtered_out_count,
            m.context_truncated, m.request_id,
        )


@dataclass(frozen=True)
class Route:
    """Which provider serves a model (``InferenceService/Route``) and what it can do."""

    provider: str
    provider_name: str
    rule: str
    supports_batching: bool
    max_batch_size: int
    supports_web_search: bool
    supports_locations: bool

    @classmethod
    def from_pb(cls, m: ipb.RouteResponse) -> Route:
        return cls(m.provider, m.provider_name, m.rule, m.supports_batching, m.max_batch_size, m.supports_web_search,
                   m.supports_locations)


@dataclass(frozen=True)
class Citation:
    url: str
    title: str = ""


@dataclass(frozen=True)
class Completion:
    """One completion (``InferenceService/Complete``): the text, the parsed JSON text when a schema was given, the
    citations, tokens, ``cost_usd`` (0 on a cache hit) and who answered."""

    text: str
    json: str
    citations: tuple[Citation, ...]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    provider: str
    model: str
    cached: bool
    finish_reason: str

    @classmethod
    def from_pb(cls, m: ipb.CompleteResponse) -> Completion:
        return cls(m.text, m.json, tuple(Citation(c.url, c.title) for c in m.citations), m.usage.input_tokens,
                   m.usage.output_tokens, m.cost_usd, m.provider, m.model, m.cached, m.finish_reason)


@dataclass(frozen=True)
class Competitor:
    name: str
    rank: int
    mention_count: int


@dataclass(frozen=True)
class ExtractedCitation:
    """A citation of an answer, normalised (``position`` 1-based; ``owned`` = the org's own domain)."""

    url: str
    domain: str
    title: str
    position: int
    source: str
    owned: bool
    competitor: bool
    competitor_name: str


@dataclass(frozen=True)
class Extraction:
    """What an answer says about an org (``ExtractionService/Extract``): whether and how often it is named, its
    ``rank`` among the organisations named (1 = first, 0 = not named), the ``sentiment`` (POSITIVE / NEUTRAL /
    NEGATIVE / MIXED, "" when not named), the evidence sentence, the competitors and the citations."""

    mentioned: bool
    mention_count: int
    rank: int
    sentiment: str
    evidence: str
    language: str
    owned_citation_count: int
    competitors: tuple[Competitor, ...]
    citations: tuple[ExtractedCitation, ...]

    @classmethod
    def from_pb(cls, m: xpb.ExtractResponse) -> Extraction:
        e = m.org_eval
        sentiment = xpb.OrgEval.Sentiment.Name(e.sentiment)
        return cls(
            e.mentioned, e.mention_count, e.rank, "" if sentiment == "SENTIMENT_UNSPECIFIED" else sentiment,
            e.evidence, e.language, e.owned_citation_count,
            tuple(Competitor(c.name, c.rank, c.mention_count) for c in m.competitors),
            tuple(ExtractedCitation(c.url, c.domain, c.title, c.position, xpb.ExtractedCitation.Source.Name(c.source),
                                    c.owned, c.competitor, c.competitor_name) for c in m.citations),
        )


@dataclass(frozen=True)
class GroupVisibility:
    """Visibility figures of one model × location of an evaluation (``None`` when nothing was evaluated)."""

    model: str
    location: str
    evaluated: int
    named: int
    visibility_rate: float | None
    average_rank: float | None


@dataclass(frozen=True)
class Report:
    """A run's report, computed by the client from ``GetRun`` + ``ListRunItems``.

    RESEARCH: ``tiers`` counts the done companies per tier. ORG_EVAL: ``visibility_rate`` = answers naming the org /
    evaluated answers (0..1), ``average_rank`` = mean position when named (1 = first), ``sentiments`` over the answers
    naming it, ``top_competitors`` = (name, answers naming it) most first, ``owned_citation_share`` = owned citations /
    citations, and the same per model × location in ``groups``. The server's ``vantage report`` also gives the share
    of voice, which needs each competitor's mention count: ``ListRunItems`` does not carry it, so it is not here.
    """

    run: Run
    items: int
    failed: int
    tiers: dict[str, int] = field(default_factory=dict)
    evaluated: int = 0
    visibility_rate: float | None = None
    average_rank: float | None = None
    sentiments: dict[str, int] = field(default_factory=dict)
    top_competitors: tuple[tuple[str, int], ...] = ()
    citations: int = 0
    owned_citation_share: float | None = None
    groups: tuple[GroupVisibility, ...] = ()


@dataclass(frozen=True)
class DiffEstimate:
    """A figure with its interval in the figure's unit (0..1 for rates, positions for ranks; a delta is B − A);
    None when undefined (``DiffEstimate`` of orchestrator.proto)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    method: str

    @classmethod
    def from_pb(cls, m: opb.DiffEstimate) -> DiffEstimate:
        def opt(name: str) -> float | None:
            return getattr(m, name) if m.HasField(name) else None

        return cls(opt("value"), opt("ci_low"), opt("ci_high"), m.n, m.method)


@dataclass(frozen=True)
class DiffFigure:
    """One figure of a sweep diff: ``verdict`` is moved_up | moved_down | within_noise | insufficient_data;
    ``needed_n`` the sample per sweep needed (insufficient_data) or that vouches for within_noise (None = none)."""

    name: str
    a: DiffEstimate
    b: DiffEstimate
    delta: DiffEstimate
    verdict: str
    needed_n: int | None
    unit: str
    reason: str

    @classmethod
    def from_pb(cls, m: opb.DiffFigure) -> DiffFigure:
        return cls(m.name, DiffEstimate.from_pb(m.a), DiffEstimate.from_pb(m.b), DiffEstimate.from_pb(m.delta),
                   m.verdict, m.needed_n or None, m.unit, m.reason)


@dataclass(frozen=True)
class DiffCell:
    """A model × location cell of a sweep diff (``model`` = ``location`` = "all": the overall)."""

    model: str
    location: str
    questions: int
    model_version_changed: bool
    figures: dict[str, DiffFigure]

    @classmethod
    def from_pb(cls, m: opb.DiffCell) -> DiffCell:
        return cls(m.model, m.location, m.questions, m.model_version_changed,
                   {f.name: DiffFigure.from_pb(f) for f in m.figures})


@dataclass(frozen=True)
class CompanyDiff:
    """A company of a research diff: tiers ("" = not in that run), scores 0..100 (None = not in that run),
    ``tier_change`` up | down | same | new | gone, and B's evidence URLs not among A's."""

    company: str
    domain: str
    tier_a: str
    tier_b: str
    tier_change: str
    score_a: int | None
    score_b: int | None
    new_evidence_urls: list[str]

    @classmethod
    def from_pb(cls, m: opb.CompanyDiff) -> CompanyDiff:
        return cls(m.company, m.domain, m.tier_a, m.tier_b, m.tier_change,
                   m.score_a if m.HasField("score_a") else None, m.score_b if m.HasField("score_b") else None,
                   list(m.new_evidence_urls))


@dataclass(frozen=True)
class RunDiff:
    """``OrchestratorService/DiffRuns``: run B against run A. Sweeps: ``cells`` (the overall last) with the
    basket counts; research runs: ``companies``."""

    kind: RunKind
    run_a: str
    run_b: str
    basket: int
    only_a: int
    only_b: int
    resamples: int
    seed: int
    confidence: float
    model_versions_stored: bool
    cells: list[DiffCell]
    companies: list[CompanyDiff]
    notes: list[str]

    @property
    def overall(self) -> DiffCell | None:
        return self.cells[-1] if self.cells else None

    @classmethod
    def from_pb(cls, m: opb.DiffRunsResponse) -> RunDiff:
        return cls(RunKind(opb.RunKind.Name(m.kind)), m.run_a, m.run_b, m.basket, m.only_a, m.only_b, m.resamples, m.seed,
                   m.confidence, m.model_versions_stored, [DiffCell.from_pb(c) for c in m.cells],
                   [CompanyDiff.from_pb(c) for c in m.companies], list(m.notes))


__all__ = [
    "TERMINAL",
    "Citation",
    "CompanyDiff",
    "Competitor",
    "Completion",
    "DiffCell",
    "DiffEstimate",
    "DiffFigure",
    "ExtractedCitation",
    "Extraction",
    "GroupVisibility",
    "QuestionRunResult",
    "Report",
    "ResearchResult",
    "Route",
    "Run",
    "RunCounts",
    "RunDiff",
    "RunEvent",
    "RunItem",
    "RunKind",
    "RunStatus",
    "SearchResponse",
    "SearchResult",
]
