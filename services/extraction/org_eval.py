"""Org evaluation of one answer: mentioned, mention count, rank, first offset, sentiment, evidence (pure).

Mentions and rank come from :mod:`services.extraction.names` / :mod:`services.extraction.competitors` (one
matching pass over all organisations). This module adds:

**Scope** — the text that talks about the org: every unit (sentence, list item, table row, heading) with a
mention; the whole section under a heading led by the org (until the next heading of the same or a higher
level); the nested items under a list item led by the org; and, in a comparison table with the org as a column,
that column's cells.

**Sentiment** — a small domain lexicon (vendor evaluations: "reliable", "leading", "cost-effective" vs
"expensive", "outages", "limited") counted over the scope, with negation: a negator ("not", "no", "never",
"n't", "without", "hardly", "lacks", "less") up to three words before a term flips it ("not expensive",
"without hidden fees" are positive; "not reliable", "less reliable" are negative); labels such as "Best for" count
for nothing. With P positive and N negative hits: none → NEUTRAL; only one kind, or one kind less than a third of
the other → that kind; otherwise MIXED. The same idea as Peec AI's
sentiment ("based on the language — from words like 'trusted', 'reliable', 'leading' … to critical language")
(https://docs.peec.ai/metrics-overview), reduced to four classes.

**Evidence** — the readable text of the unit holding the first mention: the sentence, the whole list item, the
table row as ``cell | cell``, or a heading followed by the first sentence of its section; at most 600 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.extraction.names import Brand, merge_keys
from services.extraction.text import Doc, Unit, lead_span, plain, unit_text

POSITIVE, NEUTRAL, NEGATIVE, MIXED = "POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED"
MAX_EVIDENCE_CHARS = 600

POSITIVE_TERMS: frozenset[str] = frozenset(
    """
    best leading leader leaders excellent great strong strongest reliable reliability trusted trustworthy popular
    recommended recommend top fast faster fastest affordable cost-effective inexpensive competitive innovative
    powerful robust scalable flexible easy easier simple seamless well-known reputable impressive ideal
    outstanding superior efficient secure generous transparent favorite favourite standout solid proven mature
    user-friendly intuitive versatile comprehensive cutting-edge state-of-the-art praised loved winner pioneer
    pioneering dominant preferred advantage advantages excels excel stable high-performance performant
    best-in-class go-to exceptional renowned reputation abundant plentiful
    low-latency good better cheaper cheapest lowest unmatched industry-leading world-class breakthrough
    """.split()
)
NEGATIVE_TERMS: frozenset[str] = frozenset(
    """
    expensive costly pricey overpriced limited lacks lacking lack slow slower unreliable poor weak weaker difficult
    complex complicated confusing outage outages downtime issues issue problems problem concerns concern risk
    risky drawback drawbacks downside downsides criticized criticised controversy controversial lawsuit lawsuits
    shortage shortages scarce unavailable waitlist waitlists bugs buggy immature steep lock-in frustrating
    frustration complaints complain worse worst inferior struggle struggles struggled struggling lagging declining
    restrictive opaque inconsistent unstable vulnerable breach bankrupt layoffs disadvantage disadvantages avoid
    cumbersome clunky outdated sluggish mediocre disappointing hard harder higher-priced premium-priced capped
    throttled throttling queue queues delays delayed failure failures failed errors
    """.split()
)
#: Multi-word terms, matched before single words.
POSITIVE_PHRASES: tuple[str, ...] = (
    "easy to use",
    "well suited",
    "well-suited",
    "highly rated",
    "stands out",
    "hard to beat",
    "tough to beat",
    "second to none",
)
#: Labels that contain a lexicon word but carry no opinion ("**Best for**: research teams").
NEUTRAL_PHRASES: tuple[str, ...] = ("best for", "best suited for", "top picks", "top options")
NEGATIVE_PHRASES: tuple[str, ...] = (
    "hidden fees",
    "steep learning curve",
    "vendor lock-in",
    "not recommended",
    "hard to get",
    "difficult to obtain",
    "long wait",
    "less mature",
    "falls short",
)
NEGATORS: frozenset[str] = frozenset(
    "not no never without hardly barely isn't aren't wasn't weren't doesn't don't didn't cannot can't won't "
    "lacks lack lacking nor neither less".split()
)
_WORD_RE = re.compile(r"[a-z0-9]+(?:[-'’][a-z0-9]+)*")


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


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower().replace("’", "'"))


def _index_phrases() -> dict[str, tuple[tuple[list[str], int], ...]]:
    """First word → (phrase words, sign) in matching priority (neutral, positive, negative; lexicon order)."""
    index: dict[str, list[tuple[list[str], int]]] = {}
    for phrases, sign in ((NEUTRAL_PHRASES, 0), (POSITIVE_PHRASES, 1), (NEGATIVE_PHRASES, -1)):
        for p in phrases:
            pw = p.split()
            index.setdefault(pw[0], []).append((pw, sign))
    return {k: tuple(v) for k, v in index.items()}


#: The phrase lexicons split once, indexed by first word (polarity_counts runs for every word of every answer).
_PHRASES_BY_FIRST = _index_phrases()
#: Every word that can start a hit: a text with none of them has no hits.
_HIT_WORDS: frozenset[str] = POSITIVE_TERMS | NEGATIVE_TERMS | frozenset(_PHRASES_BY_FIRST)


def polarity_counts(text: str) -> tuple[int, int]:
    """(positive, negative) lexicon hits in ``text``, negation-aware."""
    words = _words(text)
    if _HIT_WORDS.isdisjoint(words):
        return 0, 0
    pos = neg = 0
    i = 0
    n = len(words)
    while i < n:
        hit = 0
        length = 0
        for pw, sign in _PHRASES_BY_FIRST.get(words[i], ()):
            if words[i : i + len(pw)] == pw:
                hit, length = sign, len(pw)
                break
        if not length:
            length = 1
            w = words[i]
            if w in POSITIVE_TERMS:
                hit = 1
            elif w in NEGATIVE_TERMS:
                hit = -1
        if hit:
            # "lacks" is itself negative and also negates what follows ("lacks reliable support").
            window = words[max(0, i - 3) : i]
            if any(w in NEGATORS or w.endswith("n't") for w in window):
                hit = -hit
            if hit > 0:
                pos += 1
            else:
                neg += 1
        i += length
    return pos, neg


def sentiment_of(pos: int, neg: int) -> str:
    """Four-way sentiment from hit counts (see the module docstring)."""
    if pos == 0 and neg == 0:
        return NEUTRAL
    if neg == 0 or neg * 3 < pos:
        return POSITIVE
    if pos == 0 or pos * 3 < neg:
        return NEGATIVE
    return MIXED


def _names_org(doc: Doc, span: tuple[int, int] | None, keys: set[str]) -> bool:
    return bool(span) and bool(merge_keys(doc.text[span[0] : span[1]]) & keys)  # type: ignore[index]


def scope_texts(doc: Doc, org: Brand) -> list[str]:
    """Readable texts about the org (see "Scope" in the module docstring), each once, in document order."""
    picked: dict[int, None] = {}
    extra: list[str] = []
    units = doc.units
    for start, _end in org.mentions:
        unit = doc.unit_at(start)
        if unit is None:
            continue
        picked[unit.index] = None
        lead = lead_span(doc, unit)
        if not (lead and lead[0] <= start < lead[1]):
            continue
        if unit.kind == "heading":
            for u in units[unit.index + 1 :]:
                if u.kind == "heading" and u.level <= unit.level:
                    break
                picked[u.index] = None
        elif unit.kind == "item":
            list_id = unit.group.split(".")[0]
            for u in units[unit.index + 1 :]:
                if u.kind != "item" or u.group.split(".")[0] != list_id or u.level <= unit.level:
                    break
                picked[u.index] = None
    # Comparison tables with the org as a column: that column's cells.
    for unit in units:
        if unit.kind == "row" and unit.header:
            for j, (s, e) in enumerate(unit.cells[1:], start=1):
                if any(s <= ms < e for ms, _ in org.mentions):
                    for u in units[unit.index + 1 :]:
                        if u.kind != "row" or u.group != unit.group:
                            break
                        if j < len(u.cells):
                            extra.append(plain(doc.text[u.cells[j][0] : u.cells[j][1]]))
    return [unit_text(doc, units[i]) for i in sorted(picked)] + extra


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


def evaluate(doc: Doc, org: Brand, rank: int, owned_citation_count: int) -> OrgEval:
    """The org evaluation, given the org with its mentions filled and its rank among all brands."""
    if not org.mentions:
        return OrgEval(False, 0, 0, -1, NEUTRAL, "", owned_citation_count)
    first = org.mentions[0][0]
    pos = neg = 0
    for text in scope_texts(doc, org):
        p, n = polarity_counts(text)
        pos += p
        neg += n
    return OrgEval(
        mentioned=True,
        mention_count=len(org.mentions),
        rank=rank,
        first_offset=first,
        sentiment=sentiment_of(pos, neg),
        evidence=evidence_of(doc, doc.unit_at(first)),
        owned_citation_count=owned_citation_count,
    )
