"""``vantage diff RUN_A RUN_B`` / ``OrchestratorService/DiffRuns`` (issue 14 item 4): the gRPC-free core.

Two ORG_EVAL runs (sweeps): the stored question runs and org evaluations of each run become
:class:`services.orchestrator.app.measurement.Answer` rows (one per evaluated question × model × location; sample 0,
as a sweep asks each once today) and :func:`~services.orchestrator.app.measurement.diff_sweeps` compares them over the
common basket. Questions are matched across runs by their text (whitespace collapsed, case-folded): each run
stores its own copy of the questions file, so question ids differ between runs.

Two RESEARCH runs (a re-screened territory): per company, matched by normalised domain, else by name, the tier
and score change (score 0..100) and the evidence URLs of B not in A.

Mixed kinds raise :class:`shared.errors.FailedPrecondition`; an unknown run :class:`shared.errors.NotFound`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from services.orchestrator.app.measurement import (
    DEFAULT_RESAMPLES,
    Answer,
    SweepDiff,
    diff_fields,
    diff_sweeps,
)
from services.orchestrator.domain import company_key, normalise_domain
from services.orchestrator.store import Store
from services.orchestrator.store import models as m
from shared.errors import FailedPrecondition, InvalidArgument, NotFound

#: Upper bound of ``resamples`` (CLI ``--resamples``, DiffRunsRequest.resamples): 10,000 bootstrap resamples.
MAX_RESAMPLES = 10_000
#: Bounds of ``seed``: any non-negative 32-bit integer (numpy.random.default_rng accepts it).
MAX_SEED = 2**32 - 1
#: Why no model-version flag can be raised: a sweep asked before question_runs.model_version was written has none.
MODEL_VERSION_NOTE = ("model versions: not stored for one of the runs (the provider-reported model id of its answers "
                      "was not kept), so a model change between the sweeps cannot be flagged")
TIER_ORDER = {"COLD": 0, "WATCH": 1, "WARM": 2, "HOT": 3}


def question_key(text: str) -> str:
    """The identity of a question across runs: whitespace collapsed, case-folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class CompanyChange:
    """One company of a research diff. ``tier_a`` / ``score_a`` are "" / None when the company is only in B (and
    the B side when only in A); ``new_evidence_urls``: B's evidence URLs not among A's, in B's order."""

    company: str
    domain: str
    tier_a: str
    tier_b: str
    score_a: int | None
    score_b: int | None
    new_evidence_urls: tuple[str, ...]

    @property
    def change(self) -> str:
        """``up`` / ``down`` (tier order COLD < WATCH < WARM < HOT), ``same``, ``new`` (only in B), ``gone``."""
        if not self.tier_a:
            return "new"
        if not self.tier_b:
            return "gone"
        a, b = TIER_ORDER.get(self.tier_a, -1), TIER_ORDER.get(self.tier_b, -1)
        return "up" if b > a else "down" if b < a else "same"

    @property
    def score_delta(self) -> int | None:
        return None if self.score_a is None or self.score_b is None else self.score_b - self.score_a

    def fields(self) -> dict[str, Any]:
        return {"company": self.company, "domain": self.domain, "tier_a": self.tier_a, "tier_b": self.tier_b,
                "tier_change": self.change, "score_a": self.score_a, "score_b": self.score_b,
                "score_delta": self.score_delta, "new_evidence_urls": list(self.new_evidence_urls)}


@dataclass(frozen=True, slots=True)
class RunDiff:
    """The diff of two runs of one kind: ``sweep`` for ORG_EVAL runs, ``companies`` for research runs."""

    kind: str  # "org_eval" | "research"
    run_a: str
    run_b: str
    sweep: SweepDiff | None = None
    companies: list[CompanyChange] = field(default_factory=list)
    model_versions_stored: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--output json`` document: ``kind``, ``run_a``, ``run_b``, ``notes``, then for sweeps ``basket``,
        ``only_a``, ``only_b``, ``resamples``, ``seed``, ``confidence``, ``model_versions_stored``,
        ``model_changes`` and ``cells`` (:func:`~services.orchestrator.app.measurement.diff_fields`, the overall last
        with model = location = "all"); for research runs ``companies``."""
        out: dict[str, Any] = {"kind": self.kind, "run_a": self.run_a, "run_b": self.run_b, "notes": self.notes}
        if self.sweep is not None:
            d = self.sweep
            out.update({
                "basket": d.basket, "only_a": d.only_a, "only_b": d.only_b, "resamples": d.resamples,
                "seed": d.seed, "confidence": d.confidence, "min_questions": d.min_questions,
                "min_effect": d.min_effect, "model_versions_stored": self.model_versions_stored,
                "model_changes": [{"model": c.model, "versions_a": list(c.versions_a),
                                   "versions_b": list(c.versions_b)} for c in d.model_changes],
                "cells": diff_fields(d),
            })
        else:
            out["companies"] = [c.fields() for c in self.companies]
        return out


def _est(e: Any) -> dict[str, Any]:
    out = {"n": e.n, "method": e.method}
    out.update({k: v for k, v in (("value", e.value), ("ci_low", e.ci_low), ("ci_high", e.ci_high)) if v is not None})
    return out


def proto_fields(d: RunDiff) -> dict[str, Any]:
    """The keyword arguments of a ``vantage.orchestrator.v1.DiffRunsResponse`` (nested messages as dicts, unset
    optional fields left out), so that this module stays free of gRPC and generated code."""
    out: dict[str, Any] = {"kind": "ORG_EVAL" if d.kind == "org_eval" else "RESEARCH", "run_a": d.run_a,
                           "run_b": d.run_b, "model_versions_stored": d.model_versions_stored, "notes": d.notes}
    if d.sweep is not None:
        s = d.sweep
        out.update({"basket": s.basket, "only_a": s.only_a, "only_b": s.only_b, "resamples": s.resamples,
                    "seed": s.seed, "confidence": s.confidence})
        out["cells"] = [
            {"model": c.model, "location": c.location, "questions": c.questions,
             "model_version_changed": c.model_version_changed,
             "figures": [{"name": f.name, "a": _est(f.a), "b": _est(f.b), "delta": _est(f.delta),
                          "verdict": f.verdict, "needed_n": min(f.needed_n or 0, 2**31 - 1), "unit": f.unit, "reason": f.reason}
                         for f in c.figures.values()]}
            for c in [*s.cells, s.overall]]
    out["companies"] = [
        {"company": c.company, "domain": c.domain, "tier_a": c.tier_a, "tier_b": c.tier_b, "tier_change": c.change,
         "new_evidence_urls": list(c.new_evidence_urls),
         **{k: v for k, v in (("score_a", c.score_a), ("score_b", c.score_b)) if v is not None}}
        for c in d.companies]
    return out


def check_params(*, seed: int, resamples: int) -> None:
    """Raises :class:`InvalidArgument` naming ``seed`` (0..2³²−1) or ``resamples`` (1..10,000)."""
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be in 0..{MAX_SEED}, got {seed}", field="seed")
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise InvalidArgument(f"resamples must be in 1..{MAX_RESAMPLES:,}, got {resamples}", field="resamples")


async def eval_answers(store: Store, run_id: str) -> list[Answer]:
    """The evaluated answers of an ORG_EVAL run: one :class:`Answer` per question run with an org evaluation
    (``question_id`` = :func:`question_key` of its text, ``sample`` = ``question_runs.sample``, ``model_version`` =
    ``question_runs.model_version``, "" = not stored)."""
    qr, q, oe, oc = m.question_runs.c, m.questions.c, m.org_evals.c, m.org_competitors.c
    comp = (select(oc.item_id, func.coalesce(func.sum(oc.mention_count), 0).label("n"))
            .where(oc.run_id == run_id).group_by(oc.item_id).subquery())
    stmt = (
        select(q.text, qr.model, qr.location, oe.mentioned, oe.rank, oe.mention_count, oe.sentiment, comp.c.n,
               qr.sample, qr.model_version)
        .select_from(m.question_runs.join(m.questions, q.id == qr.question_id)
                     .join(m.org_evals, oe.item_id == qr.item_id)
                     .outerjoin(comp, comp.c.item_id == qr.item_id))
        .where(qr.run_id == run_id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [Answer(question_id=question_key(text), model=model, location=loc or "", sample=int(sample or 0),
                   mentioned=bool(mentioned), rank=int(rank or 0) or None, org_mentions=int(count or 0),
                   competitor_mentions=int(n or 0), sentiment=sentiment or "", model_version=version or "")
            for text, model, loc, mentioned, rank, count, sentiment, n, sample, version in rows]


async def research_rows(store: Store, run_id: str) -> list[tuple[str, str, str, int, list[str]]]:
    """(company, domain, tier, score, evidence URLs) of every classified item of a research run, in input order."""
    it, c = m.run_items.c, m.classifications.c
    stmt = (select(it.company, it.domain, c.tier, c.score, c.evidence_urls)
            .select_from(m.run_items.join(m.classifications, c.item_id == it.id))
            .where(it.run_id == run_id).order_by(it.seq))
    async with store.engine.connect() as conn:
        return [(r[0], r[1] or "", r[2], int(r[3]), [str(u) for u in (r[4] or [])])
                for r in await conn.execute(stmt)]


def company_match_key(company: str, domain: str) -> str:
    """Companies are matched by normalised domain (``www.Together.ai`` = ``together.ai``), else by name."""
    d = normalise_domain(domain)
    return f"d:{d}" if d else f"n:{company_key(company)}"


def diff_companies(a: Sequence[tuple[str, str, str, int, list[str]]],
                   b: Sequence[tuple[str, str, str, int, list[str]]]) -> list[CompanyChange]:
    """Per company of either run (B's order, then those only in A): tiers, scores and B's new evidence URLs."""
    ia = {company_match_key(r[0], r[1]): r for r in a}
    ib = {company_match_key(r[0], r[1]): r for r in b}
    out: list[CompanyChange] = []
    for k, (name, dom, tier, score, urls) in ib.items():
        ra = ia.get(k)
        if ra is None:
            out.append(CompanyChange(name, dom, "", tier, None, score, tuple(urls)))
        else:
            seen = set(ra[4])
            out.append(CompanyChange(name, dom, ra[2], tier, ra[3], score,
                                     tuple(u for u in urls if u not in seen)))
    out += [CompanyChange(r[0], r[1], r[2], "", r[3], None, ()) for k, r in ia.items() if k not in ib]
    return out


async def diff_runs(store: Store, run_a: str, run_b: str, *, seed: int = 0,
                    resamples: int = DEFAULT_RESAMPLES) -> RunDiff:
    """Diff run B against run A (full run ids). Raises :class:`InvalidArgument` (seed / resamples out of
    range), :class:`NotFound` (no such run, naming ``run_a`` / ``run_b``), :class:`FailedPrecondition` (the two
    runs are of different kinds)."""
    check_params(seed=seed, resamples=resamples)
    ra, rb = await store.get_run(run_a), await store.get_run(run_b)
    for name, rid, row in (("run_a", run_a, ra), ("run_b", run_b, rb)):
        if row is None:
            raise NotFound(f"{name}: run {rid} not found")
    assert ra is not None and rb is not None
    if ra.kind != rb.kind:
        raise FailedPrecondition(f"cannot diff a {ra.kind} run against a {rb.kind} run")
    if ra.kind == "research":
        return RunDiff("research", run_a, run_b,
                       companies=diff_companies(await research_rows(store, run_a), await research_rows(store, run_b)))
    a, b = await eval_answers(store, run_a), await eval_answers(store, run_b)
    sweep = diff_sweeps(a, b, resamples=resamples, seed=seed)
    stored = any(x.model_version for x in a) and any(x.model_version for x in b)
    notes = [] if stored else [MODEL_VERSION_NOTE]
    if ra.options.get("org_id") and ra.options.get("org_id") != rb.options.get("org_id"):
        notes.append(f"the runs evaluate different orgs ({ra.options.get('org_name', '?')} vs "
                     f"{rb.options.get('org_name', '?')})")
    if sweep.basket == 0:
        notes.append("no question × model × location is in both runs: nothing to compare")
    return RunDiff(ra.kind, run_a, run_b, sweep=sweep, model_versions_stored=stored, notes=notes)


__all__ = ["MAX_RESAMPLES", "MAX_SEED", "CompanyChange", "RunDiff", "check_params", "company_match_key",
           "diff_companies", "diff_runs", "eval_answers", "proto_fields", "question_key", "research_rows"]
