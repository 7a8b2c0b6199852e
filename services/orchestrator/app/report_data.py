"""The source funnel of an ORG_EVAL run (issue 14 item 6): which domains the assistants retrieved, which they cited,
and per question the domains retrieved but never cited (the content gap). Store reads + a pure computation; the
report (:mod:`services.orchestrator.reports.visibility`) prints it.

Data, per answered question run (``question_runs``):

- **cited** = the registrable domains of the provider's own citations (``question_runs.citations``, [{url, title}]).
  URLs the extractor found written in the answer text (``org_citations`` rows of source INLINE_LINK / BARE_URL) are
  not counted here: the funnel is what the provider says it used.
- **retrieved** = cited ∪ the registrable domains of ``question_runs.links_attached`` (the sources the provider
  showed or searched without citing them: Bright Data's ``links_attached``; the API providers where their
  adapters fill it). An answer whose provider reports no retrieved-only sources retrieves just what it cites;
  :attr:`SourceFunnel.answers_with_retrieved` says how many answers did report some.

Counts are **answers** (question runs), not URLs: a domain cited three times in one answer counts once.
``cited_share`` = cited / retrieved (0..1).

Class of a domain (first rule that holds):

1. ``owned`` — the registrable domain of the org's domain (so ``docs.together.ai`` is owned by ``together.ai``), or a
   domain the extraction service flagged ``owned`` on a citation of this run (its identity rules: the domain and any
   name variation spelled as a domain).
2. ``competitor`` — a domain the extraction service flagged ``competitor`` on a citation of this run (a domain
   spelled in a competitor's name, or whose stem matches the competitor's identity keys: ``coreweave.com`` ↔
   CoreWeave), or, for a domain the extractor never saw (retrieved only), the registrable domain of a known
   competitor spelled as a domain; competitor names = the run's known competitors and every name found in its
   answers (``org_competitors.name`` and ``canonical``). Matching a domain's stem to a brand's name is the
   extraction service's identity rule (issue 13: one home for org identity), so a retrieved-only domain that
   only its stem ties to a competitor (``lambdalabs.com`` ↔ "Lambda Labs") is counted ``third_party`` here.
3. ``third_party`` — anything else.

Registrable domains (eTLD+1) are :func:`shared.domains.registrable_domain`, the function the extraction service
uses too (tldextract's bundled Public Suffix List, never fetched), so the report and the extractor agree on
``news.bbc.co.uk`` → ``bbc.co.uk``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select

from services.orchestrator.store import Store
from services.orchestrator.store import models as m
from shared.domains import host_of, registrable_domain, registrable_parts

DomainClass = Literal["owned", "competitor", "third_party"]
CLASSES: tuple[DomainClass, ...] = ("owned", "competitor", "third_party")

_split = functools.lru_cache(maxsize=65536)(registrable_parts)


# --- inputs -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One answered question run: its question (``question_seq`` 1-based, ``question`` text), cell, sample and the
    registrable domains its provider cited / reported as retrieved-only (``links_attached``; None = not
    reported)."""

    question_seq: int
    question: str
    model: str
    location: str
    sample: int
    cited: frozenset[str]
    attached: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class ExtractedDomain:
    """How the extraction service classified the citations of one domain in this run."""

    owned: bool = False
    competitor: bool = False
    competitor_name: str = ""


def _urls(value: Any) -> list[str]:
    """URLs of a JSON column of [{url, title}] (a list, or JSON text on SQLite); anything malformed is skipped."""
    if value is None:
        return []
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    out = []
    for v in value:
        if isinstance(v, dict) and isinstance(v.get("url"), str):
            out.append(v["url"])
        elif isinstance(v, str):
            out.append(v)
    return out


def _domains(urls: Iterable[str]) -> frozenset[str]:
    return frozenset(d for d in (registrable_domain(u) for u in urls) if d)


async def source_rows(store: Store, run_id: str) -> list[SourceRow]:
    """Every answered question run of the run (status ``answered``), in question then model / location / sample
    order, with its cited and retrieved-only domains."""
    qr, q = m.question_runs.c, m.questions.c
    stmt = (select(q.seq, q.text, qr.model, qr.location, qr.sample, qr.citations, qr.links_attached)
            .select_from(m.question_runs.join(m.questions, q.id == qr.question_id))
            .where(qr.run_id == run_id, qr.status == "answered")
            .order_by(q.seq, qr.model, qr.location, qr.sample))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [SourceRow(int(seq), text, model, loc or "", int(sample or 0), _domains(_urls(cit)),
                      None if att is None else _domains(_urls(att)))
            for seq, text, model, loc, sample, cit, att in rows]


async def extracted_domains(store: Store, run_id: str) -> dict[str, ExtractedDomain]:
    """Per registrable domain cited in the run, the extraction service's flags (any citation of the domain owned /
    competitor; the first competitor name)."""
    ci = m.org_citations.c
    stmt = (select(ci.domain, ci.owned, ci.competitor, ci.competitor_name).where(ci.run_id == run_id)
            .order_by(ci.domain, ci.id))
    out: dict[str, ExtractedDomain] = {}
    async with store.engine.connect() as conn:
        for domain, owned, competitor, name in await conn.execute(stmt):
            d = out.get(domain, ExtractedDomain())
            out[domain] = ExtractedDomain(d.owned or bool(owned), d.competitor or bool(competitor),
                                          d.competitor_name or (name or "" if competitor else ""))
    return out


async def competitor_names(store: Store, run_id: str) -> list[str]:
    """Every competitor name found in the run's answers, as found and as merged (``canonical``)."""
    oc = m.org_competitors.c
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(oc.name, oc.canonical).where(oc.run_id == run_id).distinct())).all()
    return sorted({n for r in rows for n in r if n})


# --- the funnel -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainFunnel:
    """One domain: answers that retrieved it (cited or not), answers that cited it, cited / retrieved (0..1),
    its class and, for a competitor's domain, the competitor's name when known."""

    domain: str
    retrieved: int
    cited: int
    cls: DomainClass
    competitor_name: str = ""

    @property
    def cited_share(self) -> float | None:
        return self.cited / self.retrieved if self.retrieved else None

    def fields(self) -> dict[str, Any]:
        return {"domain": self.domain, "retrieved": self.retrieved, "cited": self.cited,
                "cited_share": self.cited_share, "class": self.cls, "competitor_name": self.competitor_name}


@dataclass(frozen=True, slots=True)
class QuestionGap:
    """One question's content gap: domains some answer to it retrieved and no answer to it cited (over every
    model, location and sample), sorted by the answers retrieving them (most first), then by name."""

    question_seq: int
    question: str
    answers: int
    domains: tuple[tuple[str, int, DomainClass], ...]  # (domain, answers that retrieved it, class)

    def fields(self) -> dict[str, Any]:
        return {"question_seq": self.question_seq, "question": self.question, "answers": self.answers,
                "domains": [{"domain": d, "retrieved": n, "class": c} for d, n, c in self.domains]}


@dataclass
class SourceFunnel:
    domains: list[DomainFunnel]  # most retrieved first, then most cited, then by name
    gaps: list[QuestionGap]  # questions with at least one gap domain, in question order
    answers: int  # answered question runs read
    answers_with_retrieved: int  # … whose provider reported retrieved-only sources (links_attached not NULL)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)  # class → {domains, retrieved, cited}

    def to_dict(self) -> dict[str, Any]:
        return {"answers": self.answers, "answers_with_retrieved": self.answers_with_retrieved,
                "by_class": self.by_class, "domains": [d.fields() for d in self.domains],
                "content_gaps": [g.fields() for g in self.gaps]}


class DomainClassifier:
    """The class of a registrable domain by the rules of the module docstring."""

    def __init__(self, org_domain: str, extracted: dict[str, ExtractedDomain], competitors: Iterable[str]) -> None:
        self.org = registrable_domain(org_domain) if org_domain.strip() else ""
        self.extracted = extracted
        self.comp_domains: dict[str, str] = {}
        for name in competitors:
            host = host_of(name) if "." in name and " " not in name.strip() else ""
            if host and _split(host)[0]:
                self.comp_domains.setdefault(_split(host)[0], name)

    def __call__(self, domain: str) -> tuple[DomainClass, str]:
        """(class, competitor name or "")."""
        ex = self.extracted.get(domain)
        if (self.org and domain == self.org) or (ex is not None and ex.owned):
            return "owned", ""
        if ex is not None:
            return ("competitor", ex.competitor_name) if ex.competitor else ("third_party", "")
        if domain in self.comp_domains:
            return "competitor", self.comp_domains[domain]
        return "third_party", ""


def source_funnel(rows: Sequence[SourceRow], classify: DomainClassifier) -> SourceFunnel:
    """Per domain retrieved / cited answers and class; per question the retrieved-never-cited domains."""
    retrieved: dict[str, int] = {}
    cited: dict[str, int] = {}
    per_q: dict[int, tuple[str, int, dict[str, int], set[str]]] = {}
    with_attached = 0
    for r in rows:
        got = r.cited | (r.attached or frozenset())
        with_attached += r.attached is not None
        for d in got:
            retrieved[d] = retrieved.get(d, 0) + 1
        for d in r.cited:
            cited[d] = cited.get(d, 0) + 1
        text, n, ret, cit = per_q.get(r.question_seq, (r.question, 0, {}, set()))
        for d in got:
            ret[d] = ret.get(d, 0) + 1
        cit |= r.cited
        per_q[r.question_seq] = (text, n + 1, ret, cit)
    classes = {d: classify(d) for d in retrieved}
    domains = [DomainFunnel(d, n, cited.get(d, 0), classes[d][0], classes[d][1]) for d, n in retrieved.items()]
    domains.sort(key=lambda x: (-x.retrieved, -x.cited, x.domain))
    by_class: dict[str, dict[str, int]] = {c: {"domains": 0, "retrieved": 0, "cited": 0} for c in CLASSES}
    for x in domains:
        b = by_class[x.cls]
        b["domains"] += 1
        b["retrieved"] += x.retrieved
        b["cited"] += x.cited
    gaps = []
    for seq in sorted(per_q):
        text, n, ret, cit = per_q[seq]
        gap = sorted(((d, k, classes[d][0]) for d, k in ret.items() if d not in cit), key=lambda g: (-g[1], g[0]))
        if gap:
            gaps.append(QuestionGap(seq, text, n, tuple(gap)))
    return SourceFunnel(domains, gaps, len(rows), with_attached, by_class)


async def load_source_funnel(store: Store, run_id: str, *, org_domain: str,
                             known_competitors: Sequence[str] = ()) -> SourceFunnel:
    """The run's source funnel from the store (see the module docstring)."""
    rows = await source_rows(store, run_id)
    names = [*known_competitors, *await competitor_names(store, run_id)]
    return source_funnel(rows, DomainClassifier(org_domain, await extracted_domains(store, run_id), names))


__all__ = ["CLASSES", "DomainClassifier", "DomainFunnel", "ExtractedDomain", "QuestionGap", "SourceFunnel",
           "SourceRow", "competitor_names", "extracted_domains", "load_source_funnel",
           "registrable_domain", "source_funnel", "source_rows"]
