"""The AI-visibility report of an ORG_EVAL run (``vantage report RUN_ID``, the end of ``vantage evaluate``, and the
``report`` part of ``vantage export`` for ORG_EVAL runs), computed from the database: the counts by aggregate
queries, the figures with intervals and the source funnel from one small row per evaluated answer (memory grows with
the question runs, about 100 bytes each, plus the bootstrap's resamples × questions weights per cell).

Figures, per model × location and overall:

- **visibility rate** = answers naming the org / evaluated answers (0..1) — Profound's "visibility score" and Peec
  AI's "visibility": the share of AI answers in which the brand appears.
- **average rank when named** = mean of the org's position among all organisations named in an answer, in order of
  first appearance (1 = named first), over the answers naming it — Peec AI's "position" metric.
- **share of voice** = the org's mentions / all brand mentions (the org's + every competitor's) in the answers —
  Profound's definition ("your brand's mentions as a share of all brand mentions in the category").
- **sentiment** counts over the answers naming the org (POSITIVE / NEUTRAL / NEGATIVE / MIXED).
- **top competitors** — names merged across answers by the canonical names the run stored at its end
  (``org_competitors.canonical``: the LLM packing helper, then ``ExtractionService/MergeCompetitors`` — identity
  keys, "Lambda" / "Lambda Labs" / "Lambda Cloud" / "lambdalabs.com" → one; the report keeps no rule of its own),
  ranked by the answers naming them. A report read before the run's end shows the names as found.
- **top cited domains** (registrable domains of the answers' citations) and the **owned-citation share** = citations
  of the org's own domain / all citations.

Every headline figure — visibility rate, share of voice, first-mention rate (answers naming the org first),
average and median rank when named — comes with its 95 % interval from
:func:`services.orchestrator.app.measurement.summarize` over every evaluated answer of the run (all K samples of
each question × model × location): per model × location cell a Wilson score interval for the visibility rate and a
cluster bootstrap over questions for the other figures; per model (over its locations) and overall a cluster
bootstrap for every figure. Deterministic given ``seed`` (``--seed``, default 0). The table shows ``81 % [74–87]``;
JSON and CSV give ``<figure>``, ``<figure>_ci_low``, ``<figure>_ci_high``, ``<figure>_n`` (its sample, in
``<figure>_unit``) and ``<figure>_method``; :func:`~services.orchestrator.app.measurement.methods_note` is printed
under the table. The **rank histogram** per model (buckets 1, 2, 3, 4–5, 6+, not named; plus named without a
position) counts answers. The **source funnel** (:mod:`services.orchestrator.app.report_data`): per domain the
answers that retrieved it and that cited it, the cited share and its class (owned / competitor / third-party),
and per question the domains retrieved but never cited (the content gap).

Plus the summary line ``N processed, N evaluations, N citations, N competitors, $X total cost`` (processed = question
runs finished, done or failed; competitors = distinct after merging; cost = Σ of the run's ledger, USD), the Bright
Data snapshots triggered (and the most questions in one), the answers served from the response cache ($0) against
those newly asked, and the failures grouped by reason. When a run asked for a location that a model's provider has
no way to apply (its ``supports_locations`` capability, :data:`services.inference.router.PROVIDERS`), a note says
so per model and location (:func:`location_notes`) instead of presenting the group as located.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from services.inference.router import PROVIDERS
from services.orchestrator.app.diff import check_params, eval_answers
from services.orchestrator.app.measurement import (
    DEFAULT_RESAMPLES,
    FIGURES,
    RANK_BUCKETS,
    CellSummary,
    SweepSummary,
    format_estimate,
    methods_note,
    summarize,
)
from services.orchestrator.app.report_data import SourceFunnel, load_source_funnel
from services.orchestrator.reports.tables import run_record, usd
from services.orchestrator.store import RunRow, RunTotals, Store
from services.orchestrator.store import models as m
from services.orchestrator.store.eval_repo import EvalStore
from shared.text import csv_safe_row

#: Competitors / domains listed per table.
TOP_N = 10
#: … and in the per-group table's columns.
TOP_IN_GROUP = 3
SENTIMENTS = ("POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED")
EXPORT_FIELDS = (
    "seq", "question_seq", "question", "model", "location", "status", "answer_status", "provider", "snapshot_id",
    "mentioned", "rank", "mention_count", "sentiment", "evidence", "owned_citation_count", "competitors", "citations",
    "input_tokens", "output_tokens", "web_search_calls", "cost_usd", "cached", "attempts", "error_code", "error",
)


# --- figures ----------------------------------------------------------------------------------------------------


@dataclass
class CompetitorStat:
    name: str
    answers: int = 0  # answers naming it
    mentions: int = 0
    rank_sum: int = 0
    variants: set[str] = field(default_factory=set)

    @property
    def average_rank(self) -> float | None:
        return self.rank_sum / self.answers if self.answers else None


@dataclass
class DomainStat:
    domain: str
    citations: int = 0
    owned: int = 0
    competitor: int = 0  # citations the extraction service matched to a competitor's domain


@dataclass
class GroupStats:
    """Figures of one (model, location) group, or of the whole run (model = location = "all")."""

    model: str
    location: str
    question_runs: int = 0
    finished: int = 0  # done or failed
    answered: int = 0  # an answer is stored
    cached: int = 0  # answers served from the inference service's response cache ($0, nothing asked)
    failed: int = 0  # items failed (provider or pipeline)
    answers: int = 0  # evaluated answers
    mentioned: int = 0
    rank_sum: int = 0
    ranked: int = 0
    org_mentions: int = 0
    competitor_mentions: int = 0
    citations: int = 0
    owned_citations: int = 0
    cost_usd: float = 0.0
    sentiments: Counter[str] = field(default_factory=Counter)
    competitors: dict[str, CompetitorStat] = field(default_factory=dict)
    domains: dict[str, DomainStat] = field(default_factory=dict)

    @property
    def visibility_rate(self) -> float | None:
        """Answers naming the org / evaluated answers (None without answers)."""
        return self.mentioned / self.answers if self.answers else None

    @property
    def average_rank(self) -> float | None:
        """Mean rank of the org over the answers naming it (1 = named first)."""
        return self.rank_sum / self.ranked if self.ranked else None

    @property
    def share_of_voice(self) -> float | None:
        """The org's mentions / all brand mentions (org + competitors)."""
        total = self.org_mentions + self.competitor_mentions
        return self.org_mentions / total if total else None

    @property
    def owned_citation_share(self) -> float | None:
        return self.owned_citations / self.citations if self.citations else None

    @property
    def top_competitors(self) -> list[CompetitorStat]:
        return sorted(self.competitors.values(), key=lambda c: (-c.answers, -c.mentions, c.name))[:TOP_N]

    @property
    def top_domains(self) -> list[DomainStat]:
        return sorted(self.domains.values(), key=lambda d: (-d.citations, d.domain))[:TOP_N]

    def add(self, other: GroupStats) -> None:
        for f in ("question_runs", "finished", "answered", "cached", "failed", "answers", "mentioned", "rank_sum",
                  "ranked", "org_mentions", "competitor_mentions", "citations", "owned_citations"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.cost_usd += other.cost_usd
        self.sentiments.update(other.sentiments)
        for c in other.competitors.values():
            mine = self.competitors.setdefault(c.name, CompetitorStat(c.name))
            mine.answers += c.answers
            mine.mentions += c.mentions
            mine.rank_sum += c.rank_sum
            mine.variants |= c.variants
        for d in other.domains.values():
            dm = self.domains.setdefault(d.domain, DomainStat(d.domain))
            dm.citations += d.citations
            dm.owned += d.owned
            dm.competitor += d.competitor


@dataclass(frozen=True)
class FailureStat:
    kind: str  # provider | pipeline
    code: str
    count: int
    example: str


@dataclass
class Report:
    run: RunRow
    totals: RunTotals
    org_name: str
    org_domain: str
    groups: list[GroupStats]
    overall: GroupStats
    snapshots: int
    max_snapshot_size: int
    snapshots_by_provider: dict[str, int]
    failures: list[FailureStat]
    #: "location GB was not applied for model X (...)" lines, see :func:`location_notes`.
    notes: list[str] = field(default_factory=list)
    #: The figures with their intervals (:func:`~services.orchestrator.app.measurement.summarize`), the per-model
    #: aggregates of ``groups`` (location "all", in the run's model order), and the source funnel.
    summary: SweepSummary | None = None
    models: list[GroupStats] = field(default_factory=list)
    funnel: SourceFunnel | None = None

    def cell(self, gs: GroupStats) -> CellSummary | None:
        """The figures of a group of :attr:`groups`, of a per-model aggregate (location "all") or of the overall."""
        s = self.summary
        if s is None:
            return None
        if gs is self.overall:
            return s.overall
        pool = s.models if gs.location == "all" and gs.model != "all" else s.cells
        return next((c for c in pool if c.model == gs.model and c.location == gs.location), None)

    def models_shown(self) -> list[GroupStats]:
        """Per-model rows worth a line of their own in the table: models evaluated in more than one location."""
        locs = Counter(g.model for g in self.groups)
        return [g for g in self.models if locs[g.model] > 1]

    @property
    def processed(self) -> int:
        return self.overall.finished

    @property
    def competitors(self) -> int:
        """Distinct competitors after merging."""
        return len(self.overall.competitors)

    def summary_line(self) -> str:
        """``N processed, N evaluations, N citations, N competitors, $X total cost``."""
        return (f"{self.processed} processed, {self.overall.answers} evaluations, {self.overall.citations} citations, "
                f"{self.competitors} competitors, {usd(self.totals.cost_usd)} total cost")

    def snapshot_line(self) -> str:
        if not self.snapshots:
            return "Bright Data snapshots: none"
        per = ", ".join(f"{p.removeprefix('brightdata_')} {n}" for p, n in sorted(self.snapshots_by_provider.items()))
        return (f"Bright Data snapshots: {self.snapshots} triggered ({per}), at most {self.max_snapshot_size} "
                "questions per snapshot")

    def cache_line(self) -> str:
        """``Answers: N total, N cache hits ($0), N newly asked, N failed, X% success``."""
        o = self.overall
        rate = f"{100 * o.answered / o.question_runs:.0f}%" if o.question_runs else "n/a"
        return (f"Answers: {o.question_runs} total, {o.cached} cache hits ($0), {o.answered - o.cached} newly asked, "
                f"{o.failed} failed, {rate} success")


async def build_report(store: Store, run_id: str, *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES) -> Report:
    """Every figure of the run's report: counts from aggregate queries, the figures with their intervals from the
    run's evaluated answers (:func:`~services.orchestrator.app.diff.eval_answers`, one row per answer: memory grows
    with the question runs, ~100 bytes each), the source funnel from its answered question runs. Deterministic
    given ``seed``. Raises KeyError for an unknown run, :class:`shared.errors.InvalidArgument` for a seed outside
    0..2³²−1 or resamples outside 1..10,000."""
    check_params(seed=seed, resamples=resamples)
    ev = EvalStore(store)
    run = await store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    totals = await store.run_totals(run_id)
    groups: dict[tuple[str, str], GroupStats] = {}

    def g(model: str, loc: str) -> GroupStats:
        return groups.setdefault((model, loc), GroupStats(model, loc))

    for r in await ev.group_stats(run_id):
        gs = g(r["model"], r["location"])
        gs.question_runs = int(r["question_runs"] or 0)
        gs.finished = int(r["finished"] or 0)
        gs.answered = int(r["answered"] or 0)
        gs.cached = int(r["cached"] or 0)
        gs.failed = int(r["items_failed"] or 0)
        gs.answers = int(r["evaluated"] or 0)
        gs.mentioned = int(r["mentioned"] or 0)
        gs.rank_sum = int(r["rank_sum"] or 0)
        gs.ranked = int(r["ranked"] or 0)
        gs.org_mentions = int(r["org_mentions"] or 0)
    for model, loc, cost in await ev.cost_by_group(run_id):
        g(model, loc).cost_usd = cost
    for model, loc, sentiment, n in await ev.sentiment_counts(run_id):
        g(model, loc).sentiments[sentiment] += n
    for model, loc, found, canonical, answers, mentions, rank_sum in await ev.competitor_stats(run_id):
        gs = g(model, loc)
        gs.competitor_mentions += mentions
        shown = canonical
        c = gs.competitors.setdefault(shown, CompetitorStat(shown))
        c.answers += answers
        c.mentions += mentions
        c.rank_sum += rank_sum
        c.variants.add(found)
    for model, loc, domain, n, owned, competitor in await ev.citation_stats(run_id):
        gs = g(model, loc)
        gs.citations += n
        gs.owned_citations += owned
        d = gs.domains.setdefault(domain, DomainStat(domain))
        d.citations += n
        d.owned += owned
        d.competitor += competitor
    ordered = _order(groups, run.options)
    overall = GroupStats("all", "all")
    for gs in ordered:
        overall.add(gs)
    overall.cost_usd = totals.cost_usd  # run-level calls (name variations, competitor merge) included
    batches = await ev.batches(run_id)
    by_provider = Counter(b.provider for b in batches)
    failures = [FailureStat(*f) for f in await ev.failure_stats(run_id)]
    per_model: dict[str, GroupStats] = {}
    for gs in ordered:
        per_model.setdefault(gs.model, GroupStats(gs.model, "all")).add(gs)
    summary = summarize(await eval_answers(store, run_id), resamples=resamples, seed=seed)
    funnel = await load_source_funnel(store, run_id, org_domain=str(run.options.get("org_domain", "")),
                                      known_competitors=[str(c) for c in run.options.get("known_competitors") or []])
    return Report(
        run=run, totals=totals, org_name=str(run.options.get("org_name", "")),
        org_domain=str(run.options.get("org_domain", "")), groups=ordered, overall=overall,
        snapshots=len(batches), max_snapshot_size=max((len(b.member_ids) for b in batches), default=0),
        snapshots_by_provider=dict(by_provider), failures=failures,
        notes=await _location_notes(store, run_id), summary=summary, models=list(per_model.values()),
        funnel=funnel,
    )


def location_notes(rows: list[tuple[str, str, str]], providers: dict[str, Any] = PROVIDERS) -> list[str]:
    """One line per distinct (model, location, provider) of a run's question runs whose provider cannot apply a
    location (its ``capabilities.supports_locations`` is false in ``providers``): those answers were not located,
    whatever the run asked."""
    out = []
    for model, location, provider in rows:
        spec = providers.get(provider)
        if location and spec is not None and not spec.capabilities.supports_locations:
            out.append(f"location {location} was not applied for model {model}: {spec.name} has no location option")
    return out


async def _location_notes(store: Store, run_id: str) -> list[str]:
    qr = m.question_runs.c
    stmt = (select(qr.model, qr.location, qr.provider).where(qr.run_id == run_id, qr.provider.is_not(None))
            .distinct().order_by(qr.model, qr.location))
    async with store.engine.connect() as conn:
        return location_notes([(r[0], r[1] or "", r[2]) for r in await conn.execute(stmt)])


def _order(groups: dict[tuple[str, str], GroupStats], options: dict[str, Any]) -> list[GroupStats]:
    """Groups in the run's model and location order."""
    models = [str(x) for x in options.get("models") or []]
    locs = [str(x) for x in options.get("locations") or []]

    def key(k: tuple[str, str]) -> tuple[int, int, str, str]:
        mi = models.index(k[0]) if k[0] in models else len(models)
        li = locs.index(k[1]) if k[1] in locs else len(locs)
        return mi, li, k[0], k[1]

    return [groups[k] for k in sorted(groups, key=key)]


# --- output -----------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _rank(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _sentiment(c: Counter[str]) -> str:
    return " ".join(f"{s[:3].lower()} {c[s]}" for s in SENTIMENTS if c.get(s)) or "–"


#: Table header of each figure.
FIGURE_HEADERS = {"visibility_rate": "Visibility", "share_of_voice": "Share of voice",
                  "first_mention_rate": "Named first", "average_rank": "Avg rank", "median_rank": "Median rank"}
#: Table header of each rank-histogram bucket.
BUCKET_HEADERS = {"1": "#1", "2": "#2", "3": "#3", "4-5": "#4–5", "6+": "#6+", "not_named": "Not named",
                  "named_unranked": "Named, no rank"}


def _figure_cells(rep: Report, gs: GroupStats) -> list[str]:
    cell = rep.cell(gs)
    return [format_estimate(cell.figures[f]) if cell is not None else "—" for f in FIGURES]


def _table_rows(rep: Report) -> list[GroupStats]:
    return [*rep.groups, *rep.models_shown(), rep.overall]


def groups_table(rep: Report) -> Table:
    """Per model × location, per model (when it has several locations) and overall: answers, answers naming the
    org, visibility rate, share of voice, first-mention rate, average and median rank when named — each with its
    95 % interval (``81 % [74–87]``) — and sentiment counts."""
    t = Table(title=f"AI visibility of {rep.org_name}" + (f" ({rep.org_domain})" if rep.org_domain else ""),
              header_style="bold")
    for col, right in (("Model", False), ("Loc", False), ("Answers", True), ("Named", True),
                       *((FIGURE_HEADERS[f], True) for f in FIGURES), ("Sentiment", False)):
        t.add_column(col, justify="right" if right else "left", no_wrap=True)
    models = rep.models_shown()
    ends = {id(x[-1]) for x in (rep.groups, models) if x}
    for gs in _table_rows(rep):
        t.add_row(
            Text(gs.model, style="bold" if gs.location == "all" else ""), gs.location or "-",
            str(gs.answers), str(gs.mentioned), *_figure_cells(rep, gs), _sentiment(gs.sentiments),
            end_section=id(gs) in ends,
        )
    return t


def costs_table(rep: Report) -> Table:
    """Per model × location and overall: question runs, answers served from the cache, citations, owned share,
    failed question runs, cost."""
    t = Table(title="Question runs, citations and cost", header_style="bold")
    for col, right in (("Model", False), ("Loc", False), ("Question runs", True), ("Cached", True),
                       ("Citations", True), ("Owned", True), ("Failed", True), ("Cost USD", True)):
        t.add_column(col, justify="right" if right else "left", no_wrap=col == "Model")
    for gs in [*rep.groups, rep.overall]:
        last = gs is rep.overall
        t.add_row(
            Text(gs.model, style="bold" if last else ""), gs.location or "-", str(gs.question_runs), str(gs.cached),
            str(gs.citations), pct(gs.owned_citation_share), Text(str(gs.failed), style="red" if gs.failed else ""),
            usd(gs.cost_usd), end_section=bool(rep.groups) and gs is rep.groups[-1],
        )
    return t


def _buckets(rep: Report) -> list[str]:
    """The buckets shown: all but "named, no rank" unless some answer is in it."""
    hist = rep.summary.rank_histograms if rep.summary else {}
    return [b for b in RANK_BUCKETS if b != "named_unranked" or any(h.get(b) for h in hist.values())]


def rank_table(rep: Report) -> Table:
    """Per model: the answers in each rank bucket of the org (1, 2, 3, 4–5, 6+, not named), count and share."""
    t = Table(title=f"Rank of {rep.org_name} in the answers, per model (answers, share)", header_style="bold")
    t.add_column("Model", no_wrap=True)
    buckets = _buckets(rep)
    for b in buckets:
        t.add_column(BUCKET_HEADERS[b], justify="right", no_wrap=True)
    t.add_column("Answers", justify="right")
    hist = rep.summary.rank_histograms if rep.summary else {}
    order = [g.model for g in rep.models] + sorted(set(hist) - {g.model for g in rep.models})
    for model in order:
        h = hist.get(model)
        if h is None:
            continue
        n = sum(h.values())
        t.add_row(model, *(f"{h[b]} · {100 * h[b] / n:.0f} %" if n else "0" for b in buckets), str(n))
    return t


#: Domains in the source-funnel table, questions in the content-gap table, domains per question there.
FUNNEL_TOP = 15
GAP_QUESTIONS = 10
GAP_DOMAINS = 5
CLASS_LABEL = {"owned": "owned", "competitor": "competitor", "third_party": "third-party"}


def funnel_table(rep: Report) -> Table:
    """The most retrieved domains: answers retrieving it, answers citing it, cited share, class."""
    f = rep.funnel
    shown = f.domains[:FUNNEL_TOP] if f else []
    more = f" (top {FUNNEL_TOP} of {len(f.domains)})" if f and len(f.domains) > FUNNEL_TOP else ""
    t = Table(title=f"Source funnel: domains retrieved and cited (answers){more}", header_style="bold")
    for col in ("Domain", "Class", "Retrieved", "Cited", "Cited share"):
        t.add_column(col, justify="left" if col in ("Domain", "Class") else "right", overflow="fold")
    for d in shown:
        cls = CLASS_LABEL[d.cls] + (f" ({d.competitor_name})" if d.competitor_name else "")
        t.add_row(d.domain, cls, str(d.retrieved), str(d.cited), pct(d.cited_share))
    return t


def gaps_table(rep: Report) -> Table:
    """Per question (the first :data:`GAP_QUESTIONS`): the domains retrieved but never cited."""
    gaps = rep.funnel.gaps if rep.funnel else []
    more = f" (first {GAP_QUESTIONS} of {len(gaps)} questions)" if len(gaps) > GAP_QUESTIONS else ""
    t = Table(title=f"Content gap: domains retrieved but never cited, per question{more}", header_style="bold")
    t.add_column("#", justify="right")
    t.add_column("Question", overflow="fold", max_width=70)
    t.add_column("Retrieved, never cited (answers)", overflow="fold")
    for g in gaps[:GAP_QUESTIONS]:
        ds = ", ".join(f"{d} {n}" for d, n, _ in g.domains[:GAP_DOMAINS])
        if len(g.domains) > GAP_DOMAINS:
            ds += f", +{len(g.domains) - GAP_DOMAINS} more"
        t.add_row(str(g.question_seq), g.question, ds)
    return t


def funnel_line(f: SourceFunnel) -> str:
    """``Sources: N answers, M report retrieved-only sources; owned x/y cited/retrieved, …``."""
    parts = [f"{CLASS_LABEL[c]} {b['cited']}/{b['retrieved']}" for c, b in f.by_class.items() if b["retrieved"]]
    return (f"Sources: {f.answers} answers, {f.answers_with_retrieved} with retrieved-only sources reported "
            f"(links_attached; the others retrieve what they cite); cited/retrieved answers by class: "
            + (", ".join(parts) or "none"))


def leaders_table(rep: Report) -> Table:
    """Per model × location and overall: the competitors named most often and the domains cited most often."""
    t = Table(title="Top competitors and cited domains", header_style="bold")
    t.add_column("Model", no_wrap=True)
    t.add_column("Loc")
    t.add_column("Top competitors (answers naming them)", overflow="fold")
    t.add_column("Top cited domains (citations)", overflow="fold")
    for gs in [*rep.groups, rep.overall]:
        t.add_row(
            Text(gs.model, style="bold" if gs is rep.overall else ""), gs.location or "-",
            ", ".join(f"{c.name} {c.answers}" for c in gs.top_competitors[:TOP_IN_GROUP]) or "–",
            ", ".join(f"{d.domain} {d.citations}" for d in gs.top_domains[:TOP_IN_GROUP]) or "–",
            end_section=gs is rep.groups[-1],
        )
    return t


def competitors_table(rep: Report) -> Table:
    t = Table(title="Top competitors (all answers)", header_style="bold")
    for col in ("Competitor", "Answers", "Share of answers", "Mentions", "Avg rank", "Also written"):
        t.add_column(col, justify="left" if col in ("Competitor", "Also written") else "right", overflow="fold")
    n = rep.overall.answers
    for c in rep.overall.top_competitors:
        t.add_row(c.name, str(c.answers), pct(c.answers / n if n else None), str(c.mentions), _rank(c.average_rank),
                  ", ".join(sorted(v for v in c.variants if v != c.name)))
    return t


def domains_table(rep: Report) -> Table:
    t = Table(title="Top cited domains", header_style="bold")
    for col in ("Domain", "Citations", "Share", "Owned"):
        t.add_column(col, justify="left" if col == "Domain" else "right")
    n = rep.overall.citations
    for d in rep.overall.top_domains:
        t.add_row(d.domain, str(d.citations), pct(d.citations / n if n else None), "yes" if d.owned else "")
    return t


def failures_table(rep: Report) -> Table:
    t = Table(title="Failures by reason", header_style="bold")
    for col in ("Kind", "Reason", "Count", "Example"):
        t.add_column(col, justify="right" if col == "Count" else "left", overflow="fold")
    for f in rep.failures:
        t.add_row(f.kind, f.code, str(f.count), f.example[:160])
    return t


def print_report(rep: Report, out: Console, *, wall_seconds: float | None = None) -> None:
    """The report as tables and lines (``vantage report``, end of ``vantage evaluate``)."""
    out.print(groups_table(rep))
    if rep.summary is not None:
        out.print(methods_note(rep.summary), markup=False, highlight=False, style="dim", soft_wrap=True)
    if rep.summary is not None and rep.summary.rank_histograms:
        out.print(rank_table(rep))
    out.print(costs_table(rep))
    if rep.overall.competitors or rep.overall.domains:
        out.print(leaders_table(rep))
    if rep.overall.competitors:
        out.print(competitors_table(rep))
    if rep.overall.domains:
        out.print(domains_table(rep))
    if rep.funnel is not None and rep.funnel.domains:
        out.print(funnel_table(rep))
        if rep.funnel.gaps:
            out.print(gaps_table(rep))
    if rep.failures:
        out.print(failures_table(rep))
    line = rep.summary_line() + (f" · wall {wall_seconds:.1f}s" if wall_seconds is not None else "")
    sources = [funnel_line(rep.funnel)] if rep.funnel is not None and rep.funnel.answers else []
    for text in (line, rep.snapshot_line(), rep.cache_line(), *sources, *rep.notes):
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    hints = [f"run {rep.run.id} ({rep.run.status})"]
    if rep.totals.unfinished:
        hints.append(f"resume: vantage resume {rep.run.id}")
    if rep.totals.counts.get("failed"):
        hints.append(f"retry the failed question runs: vantage retry-failed {rep.run.id}")
    hints.append(f"export: vantage export {rep.run.id} --format csv --out visibility.csv")
    for h in hints:
        out.print(h, markup=False, highlight=False, style="dim")


def figure_fields(cell: CellSummary | None) -> dict[str, Any]:
    """Per figure ``<f>``, ``<f>_ci_low``, ``<f>_ci_high``, ``<f>_n``, ``<f>_unit``, ``<f>_method`` (None when the
    group has no evaluated answer), then ``questions`` and ``max_answers_per_question`` (in a model × location
    cell: the samples K of a complete sweep; in an aggregate, K × its cells)."""
    out: dict[str, Any] = {}
    for name in FIGURES:
        est = cell.figures.get(name) if cell is not None else None
        if est is None:
            out.update({name: None, f"{name}_ci_low": None, f"{name}_ci_high": None, f"{name}_n": 0,
                        f"{name}_unit": None, f"{name}_method": None})
        else:
            out.update(est.fields(name))
            out[f"{name}_unit"] = est.unit
            out[f"{name}_method"] = est.method
    out["questions"] = cell.questions if cell is not None else 0
    out["max_answers_per_question"] = cell.max_samples if cell is not None else 0
    return out


def _group_dict(gs: GroupStats, cell: CellSummary | None = None) -> dict[str, Any]:
    return {
        "model": gs.model, "location": gs.location, "question_runs": gs.question_runs, "finished": gs.finished,
        "answered": gs.answered, "cached": gs.cached, "failed": gs.failed, "answers": gs.answers,
        "mentioned": gs.mentioned,
        "visibility_rate": gs.visibility_rate, "average_rank": gs.average_rank, "share_of_voice": gs.share_of_voice,
        "org_mentions": gs.org_mentions, "competitor_mentions": gs.competitor_mentions,
        "sentiment": {s: gs.sentiments.get(s, 0) for s in SENTIMENTS},
        "citations": gs.citations, "owned_citations": gs.owned_citations,
        "owned_citation_share": gs.owned_citation_share, "cost_usd": round(gs.cost_usd, 10),
        "top_competitors": [
            {"name": c.name, "answers": c.answers, "mentions": c.mentions, "average_rank": c.average_rank,
             "variants": sorted(c.variants)} for c in gs.top_competitors
        ],
        "top_domains": [{"domain": d.domain, "citations": d.citations, "owned": d.owned, "competitor": d.competitor}
                        for d in gs.top_domains],
        **figure_fields(cell),
    }


def measurement_dict(s: SweepSummary | None) -> dict[str, Any] | None:
    """How the intervals were computed: confidence, resamples, seed, sample sizes and the note under the table."""
    if s is None:
        return None
    return {"confidence": s.confidence, "resamples": s.resamples, "seed": s.seed, "answers": s.overall.answers,
            "questions": s.overall.questions,
            "max_samples_per_cell": max((c.max_samples for c in s.cells), default=0),
            "cell_visibility_method": "wilson", "aggregate_method": "cluster_bootstrap_percentile",
            "note": methods_note(s)}


def _histograms(rep: Report) -> dict[str, dict[str, int]]:
    hist = rep.summary.rank_histograms if rep.summary else {}
    order = [g.model for g in rep.models if g.model in hist] + sorted(set(hist) - {g.model for g in rep.models})
    return {model: dict(hist[model]) for model in order}


def report_dict(rep: Report) -> dict[str, Any]:
    """The report as JSON-able data (``vantage report --output json``, ``export`` of ORG_EVAL runs)."""
    return {
        "run_id": rep.run.id, "status": rep.run.status, "org": {"name": rep.org_name, "domain": rep.org_domain},
        "summary": {
            "processed": rep.processed, "evaluations": rep.overall.answers, "citations": rep.overall.citations,
            "competitors": rep.competitors, "cost_usd": round(rep.totals.cost_usd, 10), "line": rep.summary_line(),
            "cache_hits": rep.overall.cached, "newly_asked": rep.overall.answered - rep.overall.cached,
        },
        "snapshots": {"triggered": rep.snapshots, "max_questions_per_snapshot": rep.max_snapshot_size,
                      "by_provider": rep.snapshots_by_provider},
        "overall": _group_dict(rep.overall, rep.cell(rep.overall)),
        "groups": [_group_dict(gs, rep.cell(gs)) for gs in rep.groups],
        "models": [_group_dict(gs, rep.cell(gs)) for gs in rep.models],
        "measurement": measurement_dict(rep.summary),
        "rank_buckets": list(RANK_BUCKETS),
        "rank_histograms": _histograms(rep),
        "source_funnel": rep.funnel.to_dict() if rep.funnel is not None else None,
        "failures": [{"kind": f.kind, "reason": f.code, "count": f.count, "example": f.example}
                     for f in rep.failures],
        "notes": list(rep.notes),
    }


def question_run_record(r: dict[str, Any]) -> dict[str, Any]:
    """One question run as a flat dict (keys :data:`EXPORT_FIELDS`)."""
    return {
        "seq": r["seq"], "question_seq": r["question_seq"], "question": r["question"], "model": r["model"],
        "location": r["location"], "status": r["item_status"], "answer_status": r["answer_status"],
        "provider": r["provider"], "snapshot_id": r["snapshot_id"], "mentioned": r["mentioned"], "rank": r["rank"],
        "mention_count": r["mention_count"], "sentiment": r["sentiment"], "evidence": r["evidence"],
        "owned_citation_count": r["owned_citation_count"], "competitors": r["competitors"],
        "citations": r["citations"], "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
        "web_search_calls": r["web_search_calls"], "cost_usd": round(float(r["cost_usd"] or 0), 10),
        "cached": bool(r["cached"]), "attempts": r["attempts"], "error_code": r["error_code"],
        "error": r["error"] or r["last_error"],
    }


async def iter_question_runs(store: Store, run_id: str, page: int = 500) -> AsyncIterator[dict[str, Any]]:
    """Question-run records of the run in item order, read ``page`` at a time."""
    ev = EvalStore(store)
    after = 0
    while True:
        rows = await ev.question_run_rows(run_id, after_seq=after, limit=page)
        for r in rows:
            yield question_run_record(r)
        if len(rows) < page:
            return
        after = rows[-1]["seq"]


async def write_eval_json(store: Store, rep: Report, out: IO[str]) -> int:
    """``{"run": {...}, "report": {...}, "question_runs": [...]}``; question runs streamed. Returns how many."""
    out.write('{"run": ' + json.dumps(run_record(rep.run, rep.totals)) + ',\n "report": '
              + json.dumps(report_dict(rep)) + ',\n "question_runs": [')
    n = 0
    async for rec in iter_question_runs(store, rep.run.id):
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(rec))
        n += 1
    out.write("\n]}\n" if n else "]}\n")
    return n


async def write_eval_csv(store: Store, run_id: str, out: IO[str]) -> int:
    """One row per question run (header :data:`EXPORT_FIELDS`; competitors joined with "; "). Returns rows."""
    w = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), lineterminator="\n")
    w.writeheader()
    n = 0
    async for rec in iter_question_runs(store, run_id):
        rec["competitors"] = "; ".join(rec["competitors"])
        w.writerow(csv_safe_row(rec))
        n += 1
    return n




#: Columns of ``vantage report --output csv`` before the figure columns, and after them.
FIGURE_CSV_HEAD = ("model", "location", "question_runs", "answered", "cached", "failed", "answers", "mentioned")
FIGURE_CSV_TAIL = ("citations", "owned_citations", "owned_citation_share", "cost_usd")


def figure_records(rep: Report) -> list[dict[str, Any]]:
    """One flat record per model × location, per model (location "all") and overall: the counts, then per
    figure ``<f>``, ``<f>_ci_low``, ``<f>_ci_high``, ``<f>_n``, ``<f>_unit``, ``<f>_method``, ``questions``,
    ``max_answers_per_question``, ``sentiment_<LABEL>``, citations and cost."""
    out = []
    for gs in [*rep.groups, *rep.models, rep.overall]:
        d = _group_dict(gs, rep.cell(gs))
        rec = {k: d[k] for k in FIGURE_CSV_HEAD}
        rec.update(figure_fields(rep.cell(gs)))
        rec.update({f"sentiment_{s}": gs.sentiments.get(s, 0) for s in SENTIMENTS})
        rec.update({k: d[k] for k in FIGURE_CSV_TAIL})
        out.append(rec)
    return out


def write_figures_csv(rep: Report, out: IO[str]) -> int:
    """``vantage report --output csv`` of an ORG_EVAL run: :func:`figure_records` as CSV. Returns the rows."""
    recs = figure_records(rep)
    w = csv.DictWriter(out, fieldnames=list(recs[0]), lineterminator="\n")
    w.writeheader()
    for r in recs:
        w.writerow(csv_safe_row(r))
    return len(recs)


async def output_report(store: Store, run_id: str, *, output: str = "table", wall_seconds: float | None = None,
                        out: IO[str] | None = None, seed: int = 0) -> Report:
    """Print the run's report on stdout: ``table`` (tables + summary lines), ``json`` (:func:`report_dict`) or
    ``csv`` (the figures with their intervals, :func:`write_figures_csv`; the question runs themselves are
    ``vantage export --format csv``). ``seed``: the bootstrap's."""
    import sys

    from services.orchestrator.reports.tables import make_console

    rep = await build_report(store, run_id, seed=seed)
    stream = out or sys.stdout
    if output == "json":
        data = report_dict(rep)
        if wall_seconds is not None:
            data["summary"]["wall_seconds"] = round(wall_seconds, 3)
        stream.write(json.dumps(data, indent=2) + "\n")
    elif output == "csv":
        write_figures_csv(rep, stream)
    else:
        console = make_console() if out is None else Console(file=out, width=200, no_color=True, highlight=False)
        print_report(rep, console, wall_seconds=wall_seconds)
    return rep


async def export_eval(store: Store, run_id: str, fmt: str, out: IO[str]) -> int:
    """``vantage export`` of an ORG_EVAL run: CSV of the question runs, or JSON with the run, the report and the
    question runs. Returns the question runs written."""
    if fmt == "csv":
        return await write_eval_csv(store, run_id, out)
    return await write_eval_json(store, await build_report(store, run_id), out)


async def attach_question_runs(store: Store, run_id: str, after_seq: int, items: Any) -> None:
    """Fill ``RunItem.question_run`` of a ListRunItems page (``items``, in item order after ``after_seq``) of an
    ORG_EVAL run: the question, model, location, provider, snapshot, evaluation, competitors, citations, error
    code and cost of each question run."""
    from vantage.orchestrator.v1 import orchestrator_pb2 as opb

    if not len(items):
        return
    rows = await EvalStore(store).question_run_rows(run_id, after_seq=after_seq, limit=len(items))
    by_item = {r["item_id"]: r for r in rows}
    for it in items:
        r = by_item.get(it.item_id)
        if r is None:
            continue
        it.question_run.CopyFrom(opb.QuestionRunResult(
            question=r["question"], model=r["model"], location=r["location"] or "", provider=r["provider"] or "",
            snapshot_id=r["snapshot_id"] or "", mentioned=bool(r["mentioned"]), rank=int(r["rank"] or 0),
            mention_count=int(r["mention_count"] or 0), sentiment=r["sentiment"] or "",
            competitors=list(r["competitors"]), citations=int(r["citations"]),
            owned_citations=int(r["owned_citation_count"] or 0), error_code=r["error_code"] or "",
            cost_usd=float(r["cost_usd"] or 0),
        ))


__all__ = [
    "CompetitorStat",
    "DomainStat",
    "FailureStat",
    "GroupStats",
    "Report",
    "attach_question_runs",
    "build_report",
    "costs_table",
    "export_eval",
    "figure_fields",
    "figure_records",
    "funnel_table",
    "gaps_table",
    "groups_table",
    "leaders_table",
    "output_report",
    "print_report",
    "rank_table",
    "report_dict",
    "write_eval_csv",
    "write_eval_json",
    "write_figures_csv",
]
