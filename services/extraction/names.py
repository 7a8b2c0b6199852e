"""Organisation names: spelling variants, identity keys, "is this a common word", and mention matching (pure).

**Variants** (:func:`name_forms`): the name as given; without trailing legal/brand suffixes (``Together AI`` →
``Together``, ``Lambda, Inc.`` → ``Lambda``); CamelCase split and joined (``HuggingFace`` ↔ ``Hugging Face``).
:func:`org_forms` adds the org's variations, its registrable domain (``together.ai``) and the domain's stem
(``together``) when it is at least 3 letters and not a generic word.

**Identity keys** (:func:`merge_keys`): lower-case alphanumerics of the name, with and without trailing suffixes
(``ai``, ``labs``, ``cloud``, ``inc`` …, also glued in CamelCase: ``RunwayML`` → ``runway``), with the TLD of a
domain-like name removed (``Vast.ai`` → ``vast``), and the initials of names of three or more words
(``Amazon Web Services`` → ``aws``). Two names are the same organisation when their key sets intersect, which is
how ``Lambda`` / ``Lambda Labs`` / ``Lambda Cloud`` / ``lambdalabs.com`` end up as one.

**Common words.** A name whose words are all common English words (Zipf frequency ≥ ``common_word_zipf``,
default 3.0 = at least once per million words, from the ``wordfreq`` package's offline English list) is
*ambiguous*: "Runway", "Together", "Lambda", "Modal", "Replicate". For those, :func:`find_mentions` applies this
rule (the "cash runway" rule):

1. a lower-case occurrence never counts ("cash runway", "work together"), nor one that is the tail of a longer
   proper name ("AWS Lambda functions", where the word before is capitalised mid-sentence);
2. a capitalised occurrence counts when it is a *strong* mention: in brand context — the whole text of a bold
   span, link text, list-item lead, heading lead or table cell — or followed by an org-ish word (``AI``, ``Labs``,
   ``Inc`` …), or not at the start of a sentence and not in a Title-Case line, or at a sentence start followed by
   a company predicate ("is a … company/startup/platform/provider/option", "stands out", "offers", "provides");
3. a capitalised occurrence at a sentence start or in a Title-Case line ("Runway is short for most startups",
   "## Putting It All Together") is *weak*: it counts only when the same organisation has at least one strong
   mention in the answer.

Multi-word names whose words are all common ("Google Cloud") need one capital letter in the occurrence; every
other name (distinctive: "CoreWeave", "Anthropic", "together.ai") matches case-insensitively anywhere. All
matching is on word boundaries, on :attr:`Doc.masked` (so URLs and code never count), and longest-first across
*all* organisations at once, so one span of text is one mention of one organisation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from services.extraction.identity import (
    BRAND_MARKERS,
    VARIANT_SUFFIXES,
    camel_split,
    strip_suffixes,
    tokens,
)
from services.extraction.identity import merge_keys as _merge_keys
from services.extraction.memo import memo
from services.extraction.text import Doc, is_sentence_start, lead_span, plain, words_of
from services.extraction.urls import domain_stem, looks_like_domain, registrable_domain

#: Words that follow a name and mark it as an organisation ("Runway ML", "Lambda Labs", "Modal Inc").
_MARKER_SPELLING = {"ai": "AI", "ml": "ML", "llc": "LLC", "gmbh": "GmbH"}
ORG_NEXT_RE = re.compile(
    r"[ \t]+(?:"
    + "|".join(
        _MARKER_SPELLING.get(w, w.capitalize())
        for w in sorted(BRAND_MARKERS | {"cloud", "studio", "studios", "research"})
    )
    + r")\.?(?![\w])"
)
#: "X is a … company", "X stands out for …": a sentence-initial common-word name followed by this is a strong
#: mention ("Replicate stands out for its model catalogue", but not "Runway is short for most startups").
ORG_PREDICATE_RE = re.compile(
    r"(?:'s)?[ \t*_\]]*[ \t]+(?:(?:is|was|has been|remains)[ \t]+(?:a|an|the|another|one of the)[ \t]+[^.!?\n]{0,80}?\b"
    r"(?:company|companies|startup|start-up|platform|provider|lab|labs|vendor|firm|service|tool|app|option|choice|"
    r"pick|alternative|contender|marketplace|developer|maker|leader|player|pioneer|cloud|neocloud|hyperscaler|"
    r"unicorn)\b|(?:stands out|offers|provides|excels|specializes|specialises|focuses on|is known for|"
    r"is best known for|is favou?red|delivers|rents|operates|raised|announced|launched|released)\b)",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[^\W\d_]+")
_SPACES_RE = re.compile(r"\s+")


@memo
def zipf(word: str) -> float:
    """Zipf frequency of a lower-case English word (0 when unknown); wordfreq's small offline list."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, "en", wordlist="small"))


def is_common_word(word: str, threshold: float) -> bool:
    """True for an everyday English word (``runway``, ``together``); False for ``coreweave``, ``anthropic``."""
    parts = word.lower().split("-")  # "purpose-built", "fine-tune": common when every part is
    return all(bool(_WORD_RE.fullmatch(p)) and zipf(p) >= threshold for p in parts)


@memo  # pure; called for every candidate, form and known competitor of every answer
def clean_name(name: str) -> str:
    """A name as written, without Markdown, quotes, outer punctuation or a trailing ``, Inc.``."""
    text = plain(name).strip(" \t\"'“”‘’`*_-–—:;,.!?()[]{}")
    return _SPACES_RE.sub(" ", text)


@memo
def merge_keys(name: str) -> frozenset[str]:
    """Identity keys of a name written in Markdown (:func:`services.extraction.identity.merge_keys`)."""
    return _merge_keys(clean_name(name))


def name_forms(name: str) -> set[str]:
    """Spellings of one name to look for in text (see the module docstring)."""
    return set(_name_forms(name))


@memo
def _name_forms(name: str) -> frozenset[str]:
    name = clean_name(name)
    if not name:
        return frozenset()
    forms = {name}
    words = name.split(" ")
    # "Lambda, Inc." → "Lambda"; "Together AI" → "Together".
    bare = [w.rstrip(",") for w in words]
    stripped = strip_suffixes(bare, VARIANT_SUFFIXES)
    if stripped != bare:
        short = " ".join(stripped).strip(" ,")
        if len(short) >= 2:
            forms.add(short)
    if len(words) > 1 and all(w[:1].isupper() for w in words):
        forms.add("".join(words))  # Hugging Face → HuggingFace
    if len(words) == 1 and not looks_like_domain(name):
        parts = camel_split(name)
        if len(parts) > 1 and all(len(p) > 1 for p in parts):
            forms.add(" ".join(parts))  # HuggingFace → Hugging Face; RunwayML → Runway ML
    return frozenset(forms)


def org_forms(name: str, domain: str, variations: Iterable[str], generic: frozenset[str]) -> set[str]:
    """Every spelling of the evaluated org: its name, variations, derived variants, domain and domain stem."""
    forms: set[str] = set()
    for n in [name, *variations]:
        if looks_like_domain(n) and "://" in n:
            n = registrable_domain(n)
        forms |= name_forms(n)
    if domain.strip():
        reg = registrable_domain(domain)
        if reg and "." in reg:
            forms.add(reg)
            stem = domain_stem(reg)
            if len(stem) >= 3 and stem not in generic:
                forms.add(stem)
    return {f for f in forms if f.strip()}


@dataclass
class Brand:
    """One organisation named (or expected) in an answer.

    ``forms``: spellings matched in the text; ``keys``: identity keys; ``known``: listed by the caller;
    ``is_org``: the evaluated org; ``display``: chosen display name. Filled by :func:`find_mentions`:
    ``mentions`` (accepted match spans, in order).
    """

    display: str
    forms: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    known: bool = False
    is_org: bool = False
    mentions: list[tuple[int, int]] = field(default_factory=list)
    surfaces: list[str] = field(default_factory=list)
    #: Spans where discovery accepted the name on evidence (a sentence's subject, …): strong mentions there.
    anchors: set[tuple[int, int]] = field(default_factory=set)

    @property
    def first_offset(self) -> int:
        return self.mentions[0][0] if self.mentions else -1


@memo  # pure; every spelling of every brand, once per answer
def _form_key(text: str) -> str:
    return " ".join(text.split()).casefold()


@memo
def ambiguity(form: str, threshold: float, generic: frozenset[str]) -> str:
    """``"distinct"``, ``"common_multi"`` (all words common, ≥ 2 words) or ``"common"`` (one common word)."""
    words = tokens(form)
    if not words:
        return "distinct"
    for w in words:
        if any(c.isdigit() for c in w) or "." in w or (any(c.isupper() for c in w[1:]) and not w.isupper()):
            return "distinct"
        lw = w.lower()
        if not (is_common_word(lw, threshold) or lw in generic):
            return "distinct"
    return "common" if len(words) == 1 else "common_multi"


def _context_keys(text: str) -> frozenset[str]:
    return merge_keys(text)


def _strong(doc: Doc, start: int, end: int, keys: set[str]) -> bool:
    """Is the capitalised occurrence ``[start, end)`` of a common-word name a strong mention? (rule 2)"""
    unit = doc.unit_at(start)
    masked = doc.masked

    def names_brand(s: int, e: int) -> bool:
        return bool(_context_keys(doc.text[s:e]) & keys) and s <= start and end <= e

    span = doc.in_bold(start, end)
    if span and names_brand(*span):
        return True
    link = doc.in_link_text(start, end)
    if link and names_brand(*link.text_span):
        return True
    if unit is not None:
        if unit.kind == "row":
            for s, e in unit.cells:
                if s <= start and end <= e and names_brand(s, e):
                    return True
        if unit.kind in ("item", "heading"):
            lead = lead_span(doc, unit)
            if lead and names_brand(*lead):
                return True
        if unit.kind == "heading":
            return False  # a capital in a heading says little (Title Case)
    if ORG_NEXT_RE.match(masked, end):
        return True
    if unit is not None and doc.is_title_case(unit):
        return False
    if is_sentence_start(doc, start):
        if ORG_PREDICATE_RE.match(masked, end):
            return True
        # "Netflix has the biggest library …": a sentence's subject that the answer never writes in lower case.
        return bool(_SUBJECT_RE.match(masked, end)) and all(
            masked[s : s + 1].isupper() for s, _e in doc.find_phrase(words_of(doc.text[start:end]))
        )
    return True


#: A verb right after a sentence-initial name (issue 13: evidence that a common-word name is the subject).
_SUBJECT_RE = re.compile(
    r"(?:['’]s)?[ \t]+(?:is|are|was|were|has|have|had|remains|still|also|now|offers|charges|costs|keeps|raised|"
    r"lets|gives|makes|comes|works|tends|ist|hat|bietet|es|tiene|ofrece|est|a|propose|offre)\b"
)


_PREV_WORD_RE = re.compile(r"([^\W_][\w&'’-]*(?:\.[^\W_]+)*)[ \t]+$")


def _prev_word_match(text: str, lo: int, at: int) -> re.Match[str] | None:
    """``_PREV_WORD_RE.search(text, lo, at)``, started at the last whitespace-separated token of the window
    instead of at ``lo``: a match is that token's tail (its word holds no whitespace and only whitespace follows
    it), so no earlier start can match and re is spared trying each of them (the same match object spans)."""
    window = text[lo:at].rstrip()
    last = window.rsplit(None, 1)
    if not last:
        return None
    return _PREV_WORD_RE.search(text, lo + len(window) - len(last[-1]), at)


def _inside_compound(doc: Doc, start: int) -> bool:
    """Is the word at ``start`` the tail of a longer proper name ("AWS Lambda", "Google Gemini")? True when the
    word right before it (same line, one space) is capitalised and is not itself at a sentence start."""
    m = _prev_word_match(doc.masked, max(0, start - 40), start)
    if not m:
        return False
    prev = m.group(1)
    if not (prev[0].isupper() or prev[0].isdigit()) or prev.lower() in _NOT_NAME_WORDS:
        return False
    return not is_sentence_start(doc, m.start(1))


#: Capitalised words that often precede a name without being part of it.
_NOT_NAME_WORDS = frozenset(
    "the a an and or of in on at to with by from as for vs via use try choose i".split()
)


def is_lower_case_answer(doc: Doc) -> bool:
    """True for an answer written in lower case throughout (most sentences and items start with a small letter)."""
    if doc._lower_case is None:
        doc._lower_case = _lower_case(doc)
    return doc._lower_case


def _lower_case(doc: Doc) -> bool:
    starts = [doc.masked[u.body : u.body + 1] for u in doc.units if u.kind in ("sentence", "item")]
    letters = [c for c in starts if c.isalpha()]
    if len(letters) < 2:
        # One paragraph written in lower case is one "sentence" to the splitter (it needs a capital after the
        # full stop): count the words after its full stops as sentence starts too.
        letters += [m.group(1) for m in _AFTER_STOP_RE.finditer(doc.masked)]
    return len(letters) >= 2 and sum(c.islower() for c in letters) * 2 > len(letters)


_AFTER_STOP_RE = re.compile(r"[.!?][ \t]+([^\W\d_])")


def _regex_hits(doc: Doc, rx: re.Pattern[str], key: str, words: Sequence[str]) -> Iterator[tuple[int, int]]:
    """Spans where ``rx`` (the spelling ``key``) matches :attr:`Doc.masked`, tried only where the key's first
    token occurs (a match of ``C++`` starts where the token ``C`` does, ``.NET`` one character before ``NET``).
    Scanning the whole answer once per such spelling made a 100k-character answer with hundreds of punctuated
    candidates quadratic (issue 11: 40 % of its CPU); token positions keep it linear."""
    if not words:
        yield from (m.span() for m in rx.finditer(doc.masked))
        return
    lead = key.casefold().find(words[0].casefold())
    if lead < 0:
        yield from (m.span() for m in rx.finditer(doc.masked))
        return
    for s, _ in doc.find_phrase(words[:1]):
        m = rx.match(doc.masked, s - lead) if s >= lead else None
        if m:
            yield m.span()


def find_mentions(doc: Doc, brands: Sequence[Brand], threshold: float, generic: frozenset[str]) -> None:
    """Fill ``brand.mentions`` / ``brand.surfaces`` for every brand, longest spelling first across all brands."""
    owner: dict[str, tuple[int, str]] = {}
    casual = is_lower_case_answer(doc)
    for i, b in enumerate(brands):
        b.mentions, b.surfaces = [], []
        # Sorted: a set's order follows the hash seed, and the first form of a key decides its kind.
        for f in sorted(b.forms):
            k = _form_key(f)
            if k and k not in owner:
                kind = ambiguity(f, threshold, generic)
                if b.is_org and (kind == "common_multi" or (kind == "common" and casual)):
                    # The org's own two-word name in lower case is still the org ("uber eats"), and so is its
                    # one-word name in an answer written in lower case throughout ("netflix keeps raising prices").
                    kind = "distinct"
                owner[k] = (i, kind)
    if not owner:
        return
    # Every occurrence of every spelling (token-indexed, so thousands of names stay fast), then longest first
    # with no overlaps, so one span of text is one mention of one organisation.
    found: list[tuple[int, int, str]] = []
    for k in owner:
        words = words_of(k)
        if " ".join(words) != k:
            # Spellings the tokenizer cannot represent ("C++"): a plain case-insensitive search.
            rx = re.compile(rf"(?<![\w@/#]){re.escape(k)}(?![\w])", re.IGNORECASE)
            found.extend((s, e, k) for s, e in _regex_hits(doc, rx, k, words))
        else:
            found.extend((s, e, k) for s, e in doc.find_phrase(words))
    found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
    weak: dict[int, list[tuple[int, int]]] = {}
    strong_seen: set[int] = set()
    accepted: dict[int, list[tuple[int, int]]] = {}
    taken_until = -1
    for start, end, key in found:
        if start < taken_until:
            continue
        taken_until = end
        span = (start, end)
        i, kind = owner[key]
        surface = doc.text[start:end]
        if kind == "distinct":
            accepted.setdefault(i, []).append(span)
            strong_seen.add(i)
            continue
        if span in brands[i].anchors:
            accepted.setdefault(i, []).append(span)
            strong_seen.add(i)
            continue  # accepted on evidence right there (a lower-case answer's list lead, a sentence's subject)
        if not any(c.isupper() for c in surface):
            continue  # rule 1: "cash runway"
        if _inside_compound(doc, start):
            continue  # rule 1b: "AWS Lambda functions" names AWS's product, not Lambda
        if kind == "common_multi" or _strong(doc, start, end, brands[i].keys):
            accepted.setdefault(i, []).append(span)
            strong_seen.add(i)
        else:
            weak.setdefault(i, []).append(span)
    for i, spans in weak.items():
        if i in strong_seen:  # rule 3: established elsewhere in the answer
            accepted[i].extend(spans)
    for i, spans in accepted.items():
        spans.sort()
        brands[i].mentions = spans
        brands[i].surfaces = [" ".join(doc.text[s:e].split()) for s, e in spans]
