"""One answer in, org evaluation + competitors + citations out (pure; the servicer's only dependency).

:func:`check` validates a request (every problem at once, as ``BadRequest`` field violations);
:func:`analyze` parses the Markdown once and runs discovery, mention matching, citations and the org evaluation
over the same parse, so ``Extract`` and the three partial RPCs always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from services.extraction import citations as cit
from services.extraction import limits, sentiment
from services.extraction.competitors import GENERIC_TERMS, Competitor, discover, known_brands, rank_all
from services.extraction.memo import memo
from services.extraction.names import Brand, clean_name, merge_keys, org_forms, zipf
from services.extraction.org_eval import OrgEval, evaluate, language_of
from services.extraction.text import parse
from services.extraction.urls import looks_like_domain, registrable_domain
from shared.errors import InvalidArgument

if TYPE_CHECKING:
    from shared.config import ExtractionSettings


@dataclass(frozen=True)
class ExtractionConfig:
    """Knobs of the deterministic extractor (from :class:`shared.config.ExtractionSettings`).

    ``common_word_zipf``: Zipf frequency at or above which a word is "common" (names made of such words need
    brand context); ``generic_terms``: lower-case words/phrases never taken for names (built-in list plus
    settings); ``max_answer_chars``: longest answer accepted.
    """

    common_word_zipf: float = 3.0
    generic_terms: frozenset[str] = GENERIC_TERMS
    max_answer_chars: int = 200_000

    @classmethod
    def from_settings(cls, settings: ExtractionSettings) -> ExtractionConfig:
        return cls(
            common_word_zipf=settings.extraction_common_word_zipf,
            generic_terms=GENERIC_TERMS
            | {" ".join(t.lower().split()) for t in settings.extraction_generic_terms},
            max_answer_chars=settings.extraction_max_answer_chars,
        )


@dataclass(frozen=True)
class Org:
    """The organisation being evaluated: ``name`` (required), ``domain`` (host or URL; may be empty),
    ``variations`` (other spellings), ``products`` (its own products and plans: mentions of the org, never
    competitors)."""

    name: str
    domain: str = ""
    variations: tuple[str, ...] = ()
    products: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analysis:
    org_eval: OrgEval
    competitors: list[Competitor] = field(default_factory=list)
    citations: list[cit.Citation] = field(default_factory=list)


def check(
    answer: str,
    org: Org,
    cfg: ExtractionConfig,
    known_competitors: Sequence[str] = (),
    provider_citations: Sequence[tuple[str, str]] = (),
) -> None:
    """Raise :class:`InvalidArgument` naming every invalid field of an extraction request (bounds in
    :mod:`services.extraction.limits`)."""
    problems: list[tuple[str, str]] = []
    limits.check_org(problems, "org.", org.name, org.domain, org.variations, org.products)
    limits.check_list(
        problems, "known_competitors", known_competitors, limits.MAX_KNOWN_COMPETITORS, limits.MAX_NAME_CHARS
    )
    limits.check_citations(problems, provider_citations)
    if problems:  # the rest reads these fields: bound them first
        raise InvalidArgument("; ".join(d for _, d in problems), violations=problems)
    if not clean_name(org.name):
        problems.append(("org.name", "org.name is required (the organisation being evaluated)"))
    if org.domain.strip() and "." not in registrable_domain(org.domain):
        problems.append(
            ("org.domain", f"org.domain {org.domain[:100]!r} is not a domain name such as together.ai")
        )
    if len(answer) > cfg.max_answer_chars:
        problems.append(
            (
                "answer_markdown",
                f"answer_markdown has {len(answer)} characters; the limit is {cfg.max_answer_chars}",
            )
        )
    if problems:
        raise InvalidArgument("; ".join(d for _, d in problems), violations=problems)


class _OrgIdentity(NamedTuple):
    """What :func:`org_brand` derives from an org's fields (immutable, so one copy serves every call)."""

    display: str
    forms: frozenset[str]
    keys: frozenset[str]
    domains: frozenset[str]


@memo
def _org_identity(
    name: str, domain: str, variations: tuple[str, ...], products: tuple[str, ...], generic: frozenset[str]
) -> _OrgIdentity:
    """The org's identity, memoised (byte-bounded, :mod:`services.extraction.memo`): a user evaluates one org over
    hundreds of questions, so its spellings, keys and domains are derived once per org rather than once per answer."""
    name = clean_name(name)
    forms = org_forms(name, domain, (*variations, *products), generic)
    keys: set[str] = set()
    for f in forms:
        keys |= merge_keys(f)
    domains = {registrable_domain(domain)} if domain.strip() else set()
    domains |= {registrable_domain(v) for v in (name, *variations) if looks_like_domain(v)}
    return _OrgIdentity(name, frozenset(forms), frozenset(keys), frozenset(d for d in domains if "." in d))


def org_brand(org: Org, cfg: ExtractionConfig) -> tuple[Brand, set[str]]:
    """The org as a :class:`Brand` (spellings and keys) and its registrable domains (for ``owned``). The derived
    identity is memoised per org (:func:`_org_identity`); the returned Brand and set are fresh, the caller's to
    mutate."""
    ident = _org_identity(org.name, org.domain, tuple(org.variations), tuple(org.products), cfg.generic_terms)
    brand = Brand(display=ident.display, forms=set(ident.forms), keys=set(ident.keys), is_org=True)
    return brand, set(ident.domains)


def analyze(
    answer: str,
    org: Org,
    known_competitors: Sequence[str] = (),
    provider_citations: Sequence[tuple[str, str]] = (),
    cfg: ExtractionConfig | None = None,
) -> Analysis:
    """Extract everything from one answer. ``provider_citations`` are (url, title) pairs."""
    cfg = cfg or ExtractionConfig()
    check(answer, org, cfg, known_competitors, provider_citations)
    doc = parse(answer)
    brand, org_domains = org_brand(org, cfg)
    raw = cit.raw_citations(doc, provider_citations)
    lang = language_of(doc)
    found_org, others = discover(
        doc, brand, known_competitors, [u for u, _, _ in raw], cfg.common_word_zipf, cfg.generic_terms, lang
    )
    # Citations may belong to competitors the answer does not name but the caller listed.
    named_keys = set().union(*(b.keys for b in others)) if others else set()
    extra = [
        b
        for b in known_brands(known_competitors)
        if not (b.keys & named_keys) and not (b.keys & found_org.keys)
    ]
    citations = cit.extract(doc, provider_citations, org_domains, found_org, [*others, *extra], raw)
    rank, competitors = rank_all(found_org, others)
    owned = sum(1 for c in citations if c.owned)
    return Analysis(
        org_eval=evaluate(doc, found_org, rank, owned, others, lang), competitors=competitors, citations=citations
    )


def warm_up() -> None:
    """Load the word-frequency list and the suffix list now rather than on the first request."""
    zipf("warm")
    registrable_domain("docs.example.co.uk")
    sentiment.warm_up()
    from services.extraction.competitors import is_place

    is_place("Lisbon")
