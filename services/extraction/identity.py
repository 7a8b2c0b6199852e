"""Organisation identity — the one home of name variations, suffixes, domains and competitor merging (pure).

Everything else that needs to know whether two spellings are one organisation asks this module: mention
matching and competitor discovery in this service directly, the orchestrator and its report through
``ExtractionService/NormalizeOrg`` and ``ExtractionService/MergeCompetitors`` (they keep no copy).

**Suffixes** (:data:`SUFFIXES`, the only list in the tree): trailing words that do not tell organisations apart,
each with its kind — ``legal`` (Inc, Ltd, GmbH, S.A. …: dropped to get a variant that text may use), ``brand``
(AI, Labs, ML, Technologies: dropped the same way, and they mark a capitalised phrase as an organisation),
``key`` (Cloud, HQ, io, Platform …: dropped for identity keys only, so "Lambda Cloud" is Lambda while "Google
Cloud" is still not matched by every "Google"), ``glued`` (``hq``, ``app`` …: also dropped when glued to a
domain stem, ``runwayml`` → ``runway``).

**Domains**: :func:`normalize_domain` gives the registrable domain (eTLD+1, from tldextract's bundled Public
Suffix List, never fetched: see :mod:`services.extraction.urls`), so ``https://www.Docs.Together.ai/x`` →
``together.ai``: ``www.`` and every other subdomain go the same way. :func:`~services.extraction.urls.domain_stem`
(the only domain → stem function) gives ``together`` for it, never ``docs``.

**Identity keys** (:func:`merge_keys`): lower-case alphanumerics of the name, with and without trailing suffixes
(also glued in CamelCase: ``RunwayML`` → ``runway``), with the TLD of a domain-like name removed (``Vast.ai`` →
``vast``), and the initials of names of three or more words (``Amazon Web Services`` → ``aws``). Two names are
the same organisation when their key sets intersect.

**Merging** (:func:`merge_names`): names sharing a key are one group, shown under the most frequent spelling
(then the shortest, then alphabetical).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from services.extraction.memo import memo
from services.extraction.urls import domain_stem, looks_like_domain, registrable_domain
from shared.text import merge_variations

LEGAL, BRAND, KEY, GLUED = "legal", "brand", "key", "glued"

#: The one suffix list: word → kind (see the module docstring). Sources for the legal forms: the usual company
#: designations of the US/UK (Inc, LLC, Ltd, plc), Germany (GmbH, AG), France/Spain (SA, SAS, SL, SARL), the
#: Netherlands (BV, NV), the Nordics (AB, Oy, AS), Japan (KK), Singapore/Australia (Pte, Pty).
SUFFIXES: Mapping[str, str] = {
    **dict.fromkeys(
        "inc incorporated ltd limited llc llp corp corporation co gmbh plc sa ag bv nv pte pty srl sas sarl sl "
        "oy ab as kk".split(),
        LEGAL,
    ),
    **dict.fromkeys("ai ml labs lab technologies".split(), BRAND),
    **dict.fromkeys("cloud hq io com net org platform platforms group holdings".split(), KEY),
    **dict.fromkeys("app official tech hub".split(), GLUED),
}
#: Trailing words dropped to get a variant of a name to look for in text (``Together AI`` → ``Together``).
VARIANT_SUFFIXES: frozenset[str] = frozenset(w for w, k in SUFFIXES.items() if k in (LEGAL, BRAND))
#: Trailing words dropped for identity keys.
KEY_SUFFIXES: frozenset[str] = frozenset(w for w, k in SUFFIXES.items() if k != GLUED) | {"app"}
#: Words after a capitalised phrase that mark it as an organisation ("Luma AI", "Acme Labs", "Modal Inc").
BRAND_MARKERS: frozenset[str] = frozenset(
    w for w, k in SUFFIXES.items() if k == BRAND or w in ("inc", "llc", "ltd", "corp", "corporation", "gmbh")
)
#: Suffixes glued to a domain stem (``runwayml``, ``lambdalabs``, ``notionhq``).
STEM_SUFFIXES: tuple[str, ...] = tuple(
    sorted((w for w, k in SUFFIXES.items() if k in (BRAND, KEY, GLUED) or w in ("inc", "corp")), key=len,
           reverse=True)
)
#: Suffixes the orchestrator's variation list adds back to a base name ("Together" → "Together Inc").
ADDED_SUFFIXES: tuple[str, ...] = ("Inc", "Inc.", "Ltd", "Labs", "AI")

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_TOKEN_RE = re.compile(r"[^\W_]+(?:[.'’&-][^\W_]+)*")
_INITIALS_SKIP = frozenset("of and the for & de la".split())
_SPACES_RE = re.compile(r"\s+")


def normalize_domain(value: str) -> str:
    """The registrable domain of a host, URL or e-mail address, lower case: ``"https://www.Docs.Together.ai/x"``
    → ``"together.ai"``, ``"user@cohere.com"`` → ``"cohere.com"``; ``""`` when there is none. Hosts without a
    public suffix (``localhost``, an IP address) are returned whole."""
    v = value.strip()
    if not v:
        return ""
    if "@" in v and "://" not in v:
        v = v.rsplit("@", 1)[1]
    return registrable_domain(v)


def camel_split(token: str) -> list[str]:
    """``RunwayML`` → ``["Runway", "ML"]``; ``CoreWeave`` → ``["Core", "Weave"]``; ``iPhone`` stays whole."""
    if not token[:1].isupper():
        return [token]
    return [p for p in _CAMEL_RE.split(token) if p]


def tokens(name: str) -> list[str]:
    """Word tokens of a name (``"Character.ai"`` stays one token; punctuation between words is dropped)."""
    return _TOKEN_RE.findall(name)


def strip_suffixes(words: list[str], suffixes: frozenset[str]) -> list[str]:
    """Drop trailing suffix words while at least one word remains."""
    out = list(words)
    while len(out) > 1 and out[-1].lower().strip(".,") in suffixes:
        out.pop()
    return out


@memo
def merge_keys(name: str) -> frozenset[str]:
    """Identity keys of a name (see the module docstring); ``name`` is already free of Markdown."""
    name = _SPACES_RE.sub(" ", name).strip(" \t\"'“”‘’`*_-–—:;,.!?()[]{}")
    if not name:
        return frozenset()
    keys: set[str] = set()
    compact = re.sub(r"[^0-9a-z]+", "", name.lower())
    if len(compact) >= 2:
        keys.add(compact)
    if looks_like_domain(name):
        stem = domain_stem(name)
        if len(stem) >= 2:
            keys.add(stem)
    words = tokens(name)
    if words and words[0].lower() == "the" and len(words) > 1:
        words = words[1:]
    for variant in (words, [p for w in words for p in camel_split(w)]):
        stripped = strip_suffixes(variant, KEY_SUFFIXES)
        key = "".join(re.sub(r"[^0-9a-z]+", "", w.lower()) for w in stripped)
        if len(key) >= 3:
            keys.add(key)
    significant = [w for w in words if w.lower() not in _INITIALS_SKIP]
    if len(significant) >= 3:
        initials = "".join(w[0] for w in significant).lower()
        if initials.isalpha():
            keys.add(initials)
    return frozenset(keys)


def name_variations(name: str, domain: str = "", extra: Iterable[str] = ()) -> list[str]:
    """Ways a text may write ``name``, without asking anyone: the name, its lower-case and squashed forms
    (``together ai``, ``TogetherAI``), its base without legal/brand suffixes (``Together``) and the base with each
    of :data:`ADDED_SUFFIXES`, the registrable domain (``together.ai``) and its stem (``together``, when ≥ 3
    letters and alphanumeric), then ``extra``. Each once (exact spelling, whitespace collapsed), the name first."""
    name = " ".join(name.split())
    words = name.split()
    base = " ".join(strip_suffixes(words, VARIANT_SUFFIXES)).rstrip(",") if words else ""
    out = [name, name.lower(), "".join(words)]
    if base:
        out.append(base)
        out += [f"{base} {s}" for s in ADDED_SUFFIXES]
    dom = normalize_domain(domain)
    if "." in dom:
        out.append(dom)
        stem = domain_stem(dom)
        if len(stem) >= 3 and stem.isalnum():
            out.append(stem)
    out.extend(extra)
    return merge_variations(out)


def merge_names(counts: Mapping[str, int]) -> dict[str, str]:
    """``{name: weight}`` (e.g. answers naming it) → ``{name: display name of its merged group}``: names sharing an
    identity key are one group, shown under its heaviest spelling (then the shortest, then alphabetical)."""
    names = list(counts)
    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, name in enumerate(names):
        for k in merge_keys(name):
            if k in owner:
                a, b = find(owner[k]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[k] = i
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(find(i), []).append(name)
    out: dict[str, str] = {}
    for members in groups.values():
        best = min(members, key=lambda n: (-counts[n], len(n), n))
        for n in members:
            out[n] = best
    return out
