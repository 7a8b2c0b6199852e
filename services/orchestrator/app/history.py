"""``vantage history --org NAME`` (issue 14 item 5): the trend of each headline figure over an org's sweeps.

A sweep is one ORG_EVAL run of the org (any status, with at least one evaluated answer), oldest first by start
time. Per sweep, every headline figure of :data:`services.orchestrator.app.measurement.FIGURES` over all its
answers (:func:`~services.orchestrator.app.measurement.summarize`: cluster bootstrap over questions), and between
each two consecutive sweeps the overall delta with its interval and the verdict
(:func:`~services.orchestrator.app.measurement.diff_sweeps`, over their common question × model × location basket).
Deterministic given ``seed``.

:func:`build_history` is pure over loaded data (:class:`SweepData`); :func:`load_sweeps` reads them from the store
(answers through :func:`services.orchestrator.app.diff.eval_answers`, the loader ``vantage diff`` uses).

The document (``--output json``, binding for the HTML report)::

    {"org": str,
     "sweeps": [{"run_id", "name", "started_at" (ISO 8601 UTC), "schedule_id" (or null), "period" (or null),
                 "samples", "answers", "figures": {figure: {"value", "ci_low", "ci_high", "n"}}}],
     "verdicts": [{"from_run", "to_run", "figure", "delta": {"value", "ci_low", "ci_high"}, "verdict"}]}

Rates are 0..1, ranks in positions, a delta is later − earlier in the figure's unit; ``n`` in the figure's unit
(answers, brand mentions, named answers); null where a figure is undefined (no data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.orchestrator.app.diff import eval_answers
from services.orchestrator.app.measurement import DEFAULT_RESAMPLES, FIGURES, Answer, diff_sweeps, summarize
from services.orchestrator.domain import normalise_domain
from services.orchestrator.store import Store
from services.orchestrator.store import models as m
from services.orchestrator.store.repo import aware
from services.orchestrator.store.schedule_repo import ScheduleStore


@dataclass(frozen=True)
class SweepData:
    """One sweep as loaded: its run, when it started (UTC: the run's creation, which a resume does not move), the
    schedule and period that started it (None for a sweep run by hand), the samples per cell it asked, and its
    answers."""

    run_id: str
    name: str
    started_at: datetime
    schedule_id: str | None
    period: int | None
    samples: int
    answers: list[Answer] = field(default_factory=list)


def _estimate(e: Any, *, n: bool = True) -> dict[str, Any]:
    out = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
    if n:
        out["n"] = e.n
    return out


def build_history(org: str, sweeps: Sequence[SweepData], *, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> dict[str, Any]:
    """The history document (module docstring) of ``sweeps``, ordered oldest first (by ``started_at``, then run
    id). Raises ValueError for ``resamples`` < 1 (:func:`summarize`)."""
    ordered = sorted(sweeps, key=lambda s: (s.started_at, s.run_id))
    out_sweeps = []
    for s in ordered:
        overall = summarize(s.answers, resamples=resamples, seed=seed).overall
        out_sweeps.append({
            "run_id": s.run_id, "name": s.name, "started_at": s.started_at.isoformat(), "schedule_id": s.schedule_id,
            "period": s.period, "samples": s.samples, "answers": len(s.answers),
            "figures": {name: _estimate(overall.figures[name]) for name in FIGURES if name in overall.figures},
        })
    verdicts = []
    for a, b in pairwise(ordered):
        d = diff_sweeps(a.answers, b.answers, resamples=resamples, seed=seed).overall
        for name in FIGURES:
            fd = d.figures.get(name)
            if fd is None:
                continue
            verdicts.append({"from_run": a.run_id, "to_run": b.run_id, "figure": name,
                             "delta": _estimate(fd.delta, n=False), "verdict": fd.verdict})
    return {"org": org, "sweeps": out_sweeps, "verdicts": verdicts}


def org_matches(options: dict[str, Any], org: str, domain: str | None) -> bool:
    """A run's options name this org: same name (whitespace collapsed, case-folded) and, when ``domain`` is given,
    the same registrable form of the domain."""
    if " ".join(str(options.get("org_name") or "").split()).casefold() != " ".join(org.split()).casefold():
        return False
    return domain is None or normalise_domain(str(options.get("org_domain") or "")) == normalise_domain(domain)


async def load_sweeps(store: Store, org: str, domain: str | None = None) -> list[SweepData]:
    """The org's sweeps (ORG_EVAL runs whose options name it, see :func:`org_matches`) with their answers; runs
    without any evaluated answer are left out."""
    r = m.runs.c

    async def op(conn: AsyncConnection) -> list[Any]:
        q = (select(r.id, r.name, r.options, r.created_at)
             .where(r.kind == "org_eval").order_by(r.created_at, r.id))
        return list(await conn.execute(q))

    rows = [x for x in await store.read(op, "history_runs") if org_matches(dict(x.options or {}), org, domain)]
    claims = await ScheduleStore(store).sweeps_of_runs([x.id for x in rows])
    out = []
    for x in rows:
        answers = await eval_answers(store, x.id)
        if not answers:
            continue
        opts = dict(x.options or {})
        sid, period = opts.get("schedule_id"), opts.get("schedule_period")
        if sid is None and x.id in claims:
            sid, period = claims[x.id]
        out.append(SweepData(
            run_id=x.id, name=x.name, started_at=aware(x.created_at),  # type: ignore[arg-type]
            schedule_id=sid, period=None if period is None else int(period),
            samples=int(opts.get("samples") or 1), answers=answers))
    return out


__all__ = ["SweepData", "build_history", "load_sweeps", "org_matches"]
