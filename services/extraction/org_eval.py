"""Org evaluation of one answer: mentioned, mention count, rank, first offset, sentiment per mention, evidence
(pure).

Mentions and rank come from :mod:`services.extraction.names` / :mod:`services.extraction.competitors` (one
matching pass over all organisations). This module adds:

**Scope of a mention** — the text that talks about the org there: the unit (sentence, list item, table row,
heading) holding it; the section under a heading led by the org (until the next heading of the same or a higher
level, or the next bold numbered line of the same kind for ChatGPT-style lines); the nested items under a list
item led by the org; the following sentences of the same paragraph until one names another organisation (the
subject carries on: "GitLab is the obvious choice. Its interface feels cluttered, though."); and, in a comparison
table with the org as a column, that column's cells.

**Sentiment toward the org** — each scope unit is cut into clauses (at ``;``, sentence ends, dashes and before
"but / however / although / while …" in the four languages); a clause counts for the org when it names the org,
or names no organisation and follows one about the org; a clause naming three or more organisations is an
enumeration (being listed is no evaluation). The clause's words are scored by :mod:`services.extraction.sentiment`
in the answer's language (negation, domain nouns, labels); a comparison is directional — "Org is cheaper than X"
credits the org, "X is cheaper than Org" debits it. Each mention gets a verdict (favourable and unfavourable hits
→ MIXED; one kind → that kind; none → NEUTRAL) with the clauses that decided it as evidence spans; the answer's
verdict pools the hits of every clause in any mention's scope, each clause once.

**Evidence** — the readable text of the unit holding the first mention: the sentence, the whole list item, the
table row as ``cell | cell``, or a heading followed by the first sentence of its section; at most 600 characters.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.extraction import sentiment
from services.extraction.names import Brand, merge_keys
from services.extraction.text import Doc, Unit, lead_span, plain, unit_text

POSITIVE, NEUTRAL, NEGATIVE, MIXED = "POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED"
MAX_EVIDENCE_CHARS = 600

@dataclass(frozen=True)
class OrgEval:
    """Org evaluation of one answer.

    ``mentioned``; ``mention_count``; ``rank`` (1 = first organisation named, 0 = not named); ``first_offset``
    (code-point offset into the answer, -1 = not named); ``sentiment`` (POSITIVE/NEUTRAL/NEGATIVE/MIXED);
    ``evidence`` (readable text, "" when not named); ``owned_citation_count`` (citations on the org's domain).
    """

    mentioned: bool
    mention_count: int
    rank: int
    first_offset: int
    sentiment: str
    evidence: str
    owned_citation_count: int
    language: str = ""
    mentions: tuple[MentionSentiment, ...] = ()


@dataclass(frozen=True)
class EvidenceSpan:
    """A clause that decided a verdict: ``[start, end)`` in the answer, its readable ``text``, ``polarity`` +1/-1."""

    start: int
    end: int
    text: str
    polarity: int


@dataclass(frozen=True)
class MentionSentiment:
    """The verdict at one mention (``offset`` of the mention) and its evidence (empty when NEUTRAL)."""

    offset: int
    sentiment: str
    evidence: tuple[EvidenceSpan, ...] = ()


def _names_org(doc: Doc, span: tuple[int, int] | None, keys: set[str]) -> bool:
    return bool(span) and bool(merge_keys(doc.text[span[0] : span[1]]) & keys)  # type: ignore[index]


_CONTRAST = (
    r"(?=[bhatwyepmsjdoc])(?=(?:but|however|although|though|while|whereas|yet|except|pero|aunque|mientras|"
    r"sin embargo|aber|jedoch|doch|während|obwohl|mais|cependant|toutefois|tandis|alors qu|bien que|sauf)\b)"
)
#: Where a clause ends inside a unit: ";", a sentence end, a spaced dash, or before a contrastive conjunction —
#: ``;|(?<=[.!?])\s+|\s[–—-]\s|,?\s+(?=(?:but|however|…)\b)``, written so that every match starts with the
#: character class ``[;,\s]`` (a charset prefix re skips to) and each alternative then checks that character
#: with a lookbehind; the conjunctions are tried only after a space before one of their first letters. The same
#: matches (tests/extraction/test_extraction_fast_paths.py), ~15 % less time.
_CLAUSE_RE = re.compile(
    r"[;,\s](?:(?<=;)|(?<=[.!?]\s)\s*|(?<=\s)[–—-]\s|(?<=,)\s+" + _CONTRAST + r"|(?<=\s)\s*" + _CONTRAST + ")",
    re.IGNORECASE,
)
_THAN_RE = re.compile(
    r"\b(?:than|que|qu'|als|compared (?:to|with)|relative to|en comparación con|comparad[oa] con|frente a|"
    r"im Vergleich (?:zu|mit)|verglichen mit|gegenüber|par rapport (?:à|au)|comparée? (?:à|au))\b",
    re.IGNORECASE,
)
_BLANK_LINE_RE = re.compile(r"\n[ \t>]*\n")


def _descendants(units: list[Unit], unit: Unit) -> list[int]:
    """Units under a heading, a list item or a bold numbered line led by the org."""
    out: list[int] = []
    if unit.kind == "heading":
        for u in units[unit.index + 1 :]:
            if u.kind == "heading" and u.level <= unit.level:
                break
            out.append(u.index)
    elif unit.kind == "item" and unit.group.startswith(("nb", "bl")):
        for u in units[unit.index + 1 :]:
            if u.kind == "heading" or (u.kind == "item" and u.group == unit.group):
                break
            out.append(u.index)
    elif unit.kind == "item":
        list_id = unit.group.split(".")[0]
        for u in units[unit.index + 1 :]:
            if u.kind != "item" or u.group.split(".")[0] != list_id or u.level <= unit.level:
                break
            out.append(u.index)
    return out


def _mention_scope(doc: Doc, unit: Unit, start: int, named: list[tuple[int, int, int]]) -> list[int]:
    """Indices of the units in the scope of the org's mention at ``start`` (see the module docstring)."""
    out = [unit.index]
    lead = lead_span(doc, unit)
    if lead and lead[0] <= start < lead[1]:
        out.extend(_descendants(doc.units, unit))
    if unit.kind == "sentence":
        # The subject carries on through the paragraph until another organisation is named.
        prev = unit
        for u in doc.units[unit.index + 1 :]:
            if u.kind != "sentence" or _BLANK_LINE_RE.search(doc.text, prev.end, u.start):
                break
            others = [s for s, _e, b in named if u.start <= s < u.end and b != 0]
            if others and sentiment.refers_back(plain(doc.text[u.body : u.end])):
                others = []  # "Its pricing … once you add X": the org is still the subject
            if others:
                # "The interface is less modern than Piano Analytics'": another organisation only as the object
                # of a comparison keeps the org as the subject for that sentence (and ends the carry-on).
                than = _THAN_RE.search(doc.text, u.start, u.end)
                if than is not None and all(s > than.start() for s in others):
                    out.append(u.index)
                break
            out.append(u.index)
            prev = u
    return out


@dataclass
class _Clause:
    start: int
    end: int
    pos: int = 0
    neg: int = 0


def _clauses(doc: Doc, unit: Unit) -> list[tuple[int, int]]:
    if unit.kind == "row":
        return [c for c in unit.cells if c[0] < c[1]]
    spans = []
    s = unit.body
    for m in _CLAUSE_RE.finditer(doc.text, unit.body, unit.end):
        if m.start() > s:
            spans.append((s, m.start()))
        s = m.end()
    if s < unit.end:
        spans.append((s, unit.end))
    return spans


def _cell_labels(doc: Doc, unit: Unit) -> dict[int, int]:
    """Cell start → +1 / −1 for the cells of a table row under a "Pros" / "Cons" header cell, or of a column cell
    (a pseudo unit of :func:`_column_cells`) whose row is labelled "Pros" / "Cons" (:func:`sentiment.column_label`)."""
    if unit.kind != "row" or unit.header:
        return {}
    if unit.index < 0:  # a column cell: the label is its row's first cell
        row = doc.unit_at(unit.start)
        if row is None or not row.cells:
            return {}
        sign = sentiment.column_label(plain(doc.text[row.cells[0][0] : row.cells[0][1]]))
        return {unit.start: sign} if sign else {}
    header = next(
        (u for u in reversed(doc.units[: unit.index]) if u.kind == "row" and u.header and u.group == unit.group),
        None,
    )
    if header is None:
        return {}
    out = {}
    for (hs, he), (cs, _ce) in zip(header.cells, unit.cells, strict=False):
        sign = sentiment.column_label(plain(doc.text[hs:he]))
        if sign:
            out[cs] = sign
    return out


def _score_unit(
    doc: Doc,
    unit: Unit,
    named: list[tuple[int, int, int]],
    about_org: bool,
    lang: str,
    starts: list[int] | None = None,
) -> list[_Clause]:
    """The clauses of ``unit`` that count for the org (brand id 0 in ``named``, sorted), scored. ``starts``: the
    start offsets of ``named`` (computed when not given)."""
    out: list[_Clause] = []
    subject = 0 if about_org else -1
    labels = _cell_labels(doc, unit)
    if starts is None:
        starts = [s for s, _e, _b in named]
    for cs, ce in _clauses(doc, unit):
        # The names starting in the clause, found by bisection in the sorted list rather than by a scan of it.
        here = named[bisect.bisect_left(starts, cs) : bisect.bisect_left(starts, ce)]
        inside = [(s, b) for s, _e, b in here]
        ids = {b for _s, b in inside}
        if subject != 0 and 0 not in ids:
            # Not about the org whatever its words say: the steps below could only move ``subject`` from one
            # non-zero value to another (and only ``subject == 0`` is ever read), so polarity is not needed.
            continue
        text = doc.text[cs:ce]
        for s, e, _b in reversed(here):  # names are not evaluations ("Best Buy", "Simple Analytics")
            if e <= ce:
                text = text[: s - cs] + " " * (e - s) + text[e - cs :]
        pol = sentiment.polarity(sentiment.words(plain(text)), lang)
        than = _THAN_RE.search(doc.text, cs, ce) if pol.comparison or pol.than_at >= 0 else None
        # Brands after "than" are the object of a comparison, not the clause's subject.
        subjects = [(s, b) for s, b in inside if than is None or s < than.start()]
        if len(ids) >= 3 and not pol.comparison:
            subject = -1
            continue  # an enumeration: being listed is no evaluation
        back = subject == 0 and sentiment.refers_back(plain(text))  # "Its pricing … than X's": still the org
        if subjects and not back:
            subject = subjects[0][1]
        about = 0 in ids or subject == 0
        if not about:
            continue
        pos, neg = pol.pos, pol.neg
        if pol.comparison:
            org_after = bool(than and any(b == 0 and s > than.start() for s, b in inside))
            org_subject = subject == 0 and not org_after
            if not org_subject:
                pos = neg = 0  # the clause's other words describe its subject, not the org
            if (pol.comparison > 0) == org_subject:
                pos += 1
            else:
                neg += 1
        elif 0 not in ids and inside and not back:
            continue  # names others only
        label = labels.get(cs, 0)
        if label and plain(doc.text[cs:ce]).strip(" -–—"):
            pos, neg = (max(pos, 1), neg) if label > 0 else (pos, max(neg, 1))  # a "Pros" / "Cons" cell
        if pos or neg:
            out.append(_Clause(cs, ce, pos, neg))
    return out


def _column_cells(doc: Doc, org: Brand) -> list[Unit]:
    """Comparison tables with the org as a column: that column's cells, as one-cell pseudo units."""
    out: list[Unit] = []
    units = doc.units
    for unit in units:
        if unit.kind == "row" and unit.header:
            for j, (s, e) in enumerate(unit.cells[1:], start=1):
                if any(s <= ms < e for ms, _ in org.mentions):
                    for u in units[unit.index + 1 :]:
                        if u.kind != "row" or u.group != unit.group:
                            break
                        if j < len(u.cells):
                            cs, ce = u.cells[j]
                            out.append(Unit("row", cs, ce, cs, index=-1, cells=((cs, ce),)))
    return out


def sentiment_of_mentions(
    doc: Doc, org: Brand, others: Sequence[Brand], lang: str
) -> tuple[str, tuple[MentionSentiment, ...]]:
    """The answer's verdict toward the org and one :class:`MentionSentiment` per mention."""
    named = sorted(
        [(s, e, 0) for s, e in org.mentions]
        + [
            (s, e, i + 1)
            for i, b in enumerate(others)
            for s, e in b.mentions
            if not sentiment.is_domain_noun(doc.text[s:e])  # "Ransomware" found as a brand attributes nothing
        ]
    )
    starts = [s for s, _e, _b in named]
    scored: dict[tuple[int, int], list[_Clause]] = {}

    def clauses_of(unit: Unit, about_org: bool) -> list[_Clause]:
        key = (unit.index, about_org) if unit.index >= 0 else (-1 - unit.start, about_org)
        if key not in scored:
            scored[key] = _score_unit(doc, unit, named, about_org, lang, starts)
        return scored[key]

    columns = _column_cells(doc, org)
    per_mention: list[MentionSentiment] = []
    seen: dict[tuple[int, int], _Clause] = {}
    for start, _end in org.mentions:
        unit = doc.unit_at(start)
        if unit is None:
            per_mention.append(MentionSentiment(start, NEUTRAL))
            continue
        hits: list[_Clause] = []
        for i, idx in enumerate(_mention_scope(doc, unit, start, named)):
            hits.extend(clauses_of(doc.units[idx], about_org=i > 0))
        if unit.kind == "row" and unit.header:
            for cell in columns:
                if cell.start > unit.start:
                    hits.extend(clauses_of(cell, about_org=True))
        pos = sum(c.pos for c in hits)
        neg = sum(c.neg for c in hits)
        verdict = sentiment.verdict(pos, neg)
        evidence = []
        for sign, want in ((1, pos), (-1, neg)):
            if want:
                c = next(c for c in hits if (c.pos if sign > 0 else c.neg))
                evidence.append(EvidenceSpan(c.start, c.end, _clip(plain(doc.text[c.start : c.end])), sign))
        per_mention.append(MentionSentiment(start, verdict, tuple(evidence)))
        for c in hits:
            seen[(c.start, c.end)] = c
    total = sentiment.verdict(sum(c.pos for c in seen.values()), sum(c.neg for c in seen.values()))
    return total, tuple(per_mention)


def language_of(doc: Doc) -> str:
    """The answer's language, from its prose (URLs and code masked)."""
    parts: list[str] = []
    size = 0
    for u in doc.units:
        if u.kind in ("sentence", "item", "row"):
            parts.append(doc.masked[u.body : u.end])
            size += u.end - u.body
            if size >= sentiment.LANGUAGE_SAMPLE_CHARS:
                break
    return sentiment.detect_language(" ".join(parts))


def _clip(text: str) -> str:
    if len(text) <= MAX_EVIDENCE_CHARS:
        return text
    cut = text.rfind(" ", 0, MAX_EVIDENCE_CHARS - 1)
    return text[: cut if cut > 0 else MAX_EVIDENCE_CHARS - 1].rstrip() + "…"


def evidence_of(doc: Doc, unit: Unit | None) -> str:
    """Readable evidence for the unit holding the first mention."""
    if unit is None:
        return ""
    text = unit_text(doc, unit)
    if unit.kind == "heading":
        nxt = doc.units[unit.index + 1] if unit.index + 1 < len(doc.units) else None
        if nxt is not None and nxt.kind in ("sentence", "item") and nxt.section == unit.index:
            text = f"{text}: {unit_text(doc, nxt)}"
    return _clip(text)


def evaluate(
    doc: Doc, org: Brand, rank: int, owned_citation_count: int, others: Sequence[Brand] = (), lang: str = ""
) -> OrgEval:
    """The org evaluation, given the org with its mentions filled, its rank among all brands and the other
    organisations named (their mentions attribute clauses)."""
    if not org.mentions:
        return OrgEval(False, 0, 0, -1, NEUTRAL, "", owned_citation_count)
    first = org.mentions[0][0]
    lang = lang or language_of(doc)
    verdict, mentions = sentiment_of_mentions(doc, org, others, lang)
    return OrgEval(
        mentioned=True,
        mention_count=len(org.mentions),
        rank=rank,
        first_offset=first,
        sentiment=verdict,
        evidence=evidence_of(doc, doc.unit_at(first)),
        owned_citation_count=owned_citation_count,
        language=lang,
        mentions=mentions,
    )
