"""The bundled offline corpus and its BM25 index.

Pages live in ``corpus/pages/<company>/<slug>.md`` as markdown with a small front-matter block
(``url``, ``title``, ``company``, ``kind``, optional ``date``); ``corpus/companies.json`` lists
the companies. The text was written for this project: facts are fictional or phrased as
"reported", and must not be read as real financials.

:func:`load_corpus` is cached, so creating many apps (one per test) indexes only once.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from itertools import pairwise
from urllib.parse import urlsplit

import bm25s
import numpy as np

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[.\-'][a-z0-9]+)*")
# A small English stop list: bm25s' own list is larger but we also need it for coverage,
# so it lives here to keep BM25 and coverage consistent.
STOPWORDS = frozenset(
    """a an and are as at be been but by can could do does for from had has have how i if in
    into is it its it's may more most my no not of on or our out over so such than that the
    their them then there these they this those to too up us was we were what when where which
    who whom why will with would you your about after all also any because before between both
    each few further here just now only other own same should some very via vs""".split()
)
CHUNK_CHARS = 500
_PART_SPLIT_RE = re.compile(r"[.\-']")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words; dotted names ("together.ai") are split too."""
    return list(_query_tokens(text)) if len(text) <= 400 else _tokenize(text)


# Queries and prompts' company names come back request after request (a search tokenises its query once per hit).
@lru_cache(maxsize=4096)
def _query_tokens(text: str) -> tuple[str, ...]:
    return tuple(_tokenize(text))


def _tokenize(text: str) -> list[str]:
    out: list[str] = []
    for tok in _TOKEN_RE.findall(text.lower()):
        parts = _PART_SPLIT_RE.split(tok)
        if len(parts) > 1:
            out.extend(p for p in parts if p and p not in STOPWORDS)
        if tok not in STOPWORDS:
            out.append(tok)
    return out


@lru_cache(maxsize=8192)  # pure; corpus and prompt URLs repeat
def domain_of(url: str) -> str:
    """Host without a leading ``www.`` (``https://www.together.ai/x`` → ``together.ai``)."""
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def domain_matches(url: str, domains: list[str]) -> bool:
    """True if the URL's host is one of ``domains`` or a subdomain of one."""
    host = domain_of(url)
    for d in domains:
        d = d.lower().strip()
        d = d.split("://", 1)[-1].split("/", 1)[0]
        d = d[4:] if d.startswith("www.") else d
        if d and (host == d or host.endswith("." + d)):
            return True
    return False


@dataclass(frozen=True)
class Company:
    key: str
    name: str
    domain: str
    aliases: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    third_party: bool = False


@dataclass(frozen=True)
class Page:
    """One corpus page. ``content`` is markdown; ``kind`` is about/blog/news/careers/... ."""

    url: str
    title: str
    company: str
    kind: str
    content: str
    date: str | None = None

    @property
    def domain(self) -> str:
        return domain_of(self.url)

    @cached_property
    def chunks(self) -> list[str]:
        """Paragraph-aligned chunks of at most ``CHUNK_CHARS`` characters (Tavily's chunk size)."""
        return chunk_text(self.content, CHUNK_CHARS)

    @cached_property
    def chunk_terms(self) -> list[frozenset[str]]:
        """The token set of each chunk (built once; :meth:`Corpus.best_chunks` ranks chunks by it per request)."""
        return [frozenset(tokenize(c)) for c in self.chunks]

    @property
    def snippet(self) -> str:
        """First prose paragraph (skipping headings), at most 300 characters."""
        for para in self.content.split("\n\n"):
            p = para.strip()
            if p and not p.startswith("#") and not p.startswith("*") and len(p) > 40:
                return _clip(p.replace("\n", " "), 300)
        return _clip(self.content.replace("\n", " "), 300)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + "…"


def chunk_text(text: str, limit: int) -> list[str]:
    """Split markdown into chunks ≤ ``limit`` chars, merging short paragraphs, splitting long ones."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    for p in paras:
        p = re.sub(r"\s*\n\s*", " ", p)
        while len(p) > limit:
            cut = p.rfind(". ", 0, limit)
            cut = cut + 1 if cut > limit // 3 else p.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            pieces.append(p[:cut].strip())
            p = p[cut:].strip()
        if p:
            pieces.append(p)
    chunks: list[str] = []
    for piece in pieces:
        if (
            chunks
            and len(chunks[-1]) + 1 + len(piece) <= limit
            and (chunks[-1].startswith("#") or len(chunks[-1]) < 120)
        ):
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def _parse_page(text: str) -> Page:
    if not text.startswith("---\n"):
        raise ValueError("page has no front matter")
    _, front, body = text.split("---\n", 2)
    meta: dict[str, str] = {}
    for line in front.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            meta[key.strip()] = value.strip()
    return Page(
        url=meta["url"],
        title=meta["title"],
        company=meta["company"],
        kind=meta.get("kind", "page"),
        date=meta.get("date"),
        content=body.strip() + "\n",
    )


@dataclass
class SearchHit:
    page: Page
    bm25: float
    coverage: float  # share of distinct query terms present in the page, 0..1
    score: float  # normalised 0..1 relevance, Tavily-style


@dataclass
class Corpus:
    """All pages, the company registry and a BM25 index over title + content."""

    pages: list[Page]
    companies: dict[str, Company]
    _retriever: bm25s.BM25 = field(repr=False, default=None)
    _doc_terms: list[frozenset[str]] = field(repr=False, default_factory=list)
    _doc_bigrams: list[frozenset[tuple[str, str]]] = field(repr=False, default_factory=list)
    #: Company key → whether each page (title + content) mentions it; the corpus never changes after loading.
    _mentions: dict[str, list[bool]] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        # Title twice: a page titled with the query terms is what a search engine ranks first.
        docs = [tokenize(f"{p.title}\n{p.title}\n{p.content}") for p in self.pages]
        self._doc_terms = [frozenset(d) for d in docs]
        #: Term → number of pages containing it (document frequency), for the coverage IDF.
        self._df: dict[str, int] = {}
        for terms in self._doc_terms:
            for t in terms:
                self._df[t] = self._df.get(t, 0) + 1
        #: Per company (registry order, third parties left out): its names, longest first, with their patterns.
        self._name_res = [
            (c, [(len(name), re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])", re.IGNORECASE))
                 for name in (c.name, *c.aliases)])
            for c in self.companies.values() if not c.third_party
        ]
        self._in_text: dict[str, Company | None] = {}
        self._own_site: dict[str, list[bool]] = {}
        #: (query, limit, include, exclude) → ranked hits: the corpus is ranked once per distinct query. Hits are
        #: never mutated by callers; each call gets its own list.
        self._ranked: dict[tuple[object, ...], list[SearchHit]] = {}
        self._doc_bigrams = [frozenset(pairwise(d)) for d in docs]
        self._retriever = bm25s.BM25(k1=1.2, b=0.75)
        self._retriever.index(docs, show_progress=False)
        self.by_url = {p.url: p for p in self.pages}

    def company_in_text(self, text: str) -> Company | None:
        """The known company whose name or alias appears in ``text`` (longest match wins)."""
        if len(text) <= 400 and text in self._in_text:
            return self._in_text[text]
        best: tuple[int, Company] | None = None
        for c, names in self._name_res:
            for n, rx in names:
                if rx.search(text) and (best is None or n > best[0]):
                    best = (n, c)
        found = best[1] if best else None
        if len(text) <= 400:
            if len(self._in_text) >= 4096:
                self._in_text.clear()
            self._in_text[text] = found
        return found

    @staticmethod
    def _mention_regex(company: Company) -> re.Pattern[str]:
        # Case-sensitive: "Runway" the company vs "runway" the finance term.
        names = sorted((company.name, *company.aliases), key=len, reverse=True)
        return re.compile(r"(?<![\w])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w])")

    def _mentioned_in(self, company: Company) -> list[bool]:
        """Per page: does its title or content name ``company`` (computed once per company)."""
        found = self._mentions.get(company.key)
        if found is None:
            mention_re = self._mention_regex(company)
            found = [bool(mention_re.search(f"{p.title}\n{p.content}")) for p in self.pages]
            self._mentions[company.key] = found
        return found

    def _on_site(self, company: Company) -> list[bool]:
        """Per page: is it on ``company``'s domain (computed once per company)."""
        found = self._own_site.get(company.key)
        if found is None:
            found = [domain_matches(p.url, [company.domain]) for p in self.pages]
            self._own_site[company.key] = found
        return found

    def company_pages(self, key: str) -> list[Page]:
        return [p for p in self.pages if p.company == key]

    def company_for_domain(self, url: str) -> Company | None:
        for c in self.companies.values():
            if not c.third_party and domain_matches(url, [c.domain]):
                return c
        return None

    def search(
        self,
        query: str,
        limit: int,
        include_domains: list[str] | None = None,
        exclude_domains: list[str] | None = None,
    ) -> list[SearchHit]:
        """Rank pages for ``query``; scores in 0..1, sorted descending, ties broken by URL (cached per distinct
        query, limit and domain filters).

        The score squashes BM25 relative to the best hit together with query-term coverage,
        so that the best matches land around 0.6–0.95 and weak matches (a page that shares
        only generic words like "GPU" or "training") fall below 0.4 — the share of
        low-scoring results real Tavily searches show and the search service filters out.
        """
        key = (query, limit, tuple(include_domains or ()), tuple(exclude_domains or ()))
        cached = self._ranked.get(key)
        if cached is None:
            cached = self._rank(query, limit, include_domains, exclude_domains)
            if len(self._ranked) >= 2048:
                self._ranked.clear()
            self._ranked[key] = cached
        return list(cached)

    def _rank(
        self, query: str, limit: int, include_domains: list[str] | None, exclude_domains: list[str] | None
    ) -> list[SearchHit]:
        q_terms = list(dict.fromkeys(tokenize(query)))
        if not q_terms or limit <= 0:
            return []
        # bm25s raises on a query made only of unknown tokens; unknown terms score 0 anyway.
        vocab = self._retriever.vocab_dict
        known = [t for t in q_terms if t in vocab]
        scores = (
            np.asarray(self._retriever.get_scores(known), dtype=float) if known else np.zeros(len(self.pages))
        )
        top = float(scores.max()) if len(scores) else 0.0
        if top <= 0:
            return []
        # IDF-weighted coverage: matching the rare term (the company name) matters more than
        # matching "ai" or "gpu", which most pages contain.
        # Robertson–Spärck Jones IDF (floored): near zero for terms on most pages.
        n = len(self.pages)
        idf = {}
        for t in q_terms:
            df = self._df.get(t, 0)
            idf[t] = max(0.05, math.log((n - df + 0.5) / (df + 0.5)))
        idf_total = sum(idf.values()) or 1.0
        q_bigrams = set(pairwise(q_terms))
        entity = self.company_in_text(query)
        ent_terms = set(tokenize(" ".join((entity.name, *entity.aliases)))) if entity else set()
        other = [t for t in q_terms if t not in ent_terms]
        other_total = sum(idf[t] for t in other)
        mentioned = self._mentioned_in(entity) if entity else None
        q_idf = [(t, idf[t]) for t in q_terms]
        other_idf = [(t, idf[t]) for t in other]
        own_site = self._on_site(entity) if entity else []
        bm25 = scores.tolist()  # Python floats (the same values): numpy scalar indexing per page is slow
        hits: list[SearchHit] = []
        for i, page in enumerate(self.pages):
            if bm25[i] <= 0:
                continue
            if include_domains and not domain_matches(page.url, include_domains):
                continue
            if exclude_domains and domain_matches(page.url, exclude_domains):
                continue
            terms = self._doc_terms[i]
            coverage = sum([w for t, w in q_idf if t in terms]) / idf_total
            rel = bm25[i] / top
            if entity is not None and mentioned is not None:
                # Query names a known company: what matters most is whether the page is about
                # that company (its own site, or its news), then whether it merely mentions
                # it, then how well it matches the rest of the query.
                own = own_site[i] or (page.company == entity.key and page.kind != "unrelated")
                mentions = mentioned[i]
                other_cov = sum([w for t, w in other_idf if t in terms]) / other_total if other_total else 1.0
                x = (0.5 if own else 0.25 if mentions else 0.0) + 0.25 * rel + 0.2 * other_cov
            else:
                # Adjacent query-term pairs found adjacent in the page count as a phrase match.
                phrase = len(q_bigrams & self._doc_bigrams[i]) / len(q_bigrams) if q_bigrams else coverage
                x = 0.45 * rel + 0.35 * coverage + 0.20 * phrase
            score = 1.0 / (1.0 + math.exp(-10.0 * (x - 0.55)))
            hits.append(SearchHit(page, bm25[i], coverage, round(min(score, 0.99), 5)))
        hits.sort(key=lambda h: (-h.score, -h.bm25, h.page.url))
        return hits[:limit]

    def best_chunks(self, page: Page, query: str, n: int) -> list[str]:
        """The ``n`` chunks of ``page`` sharing most query terms, in page order."""
        q = set(tokenize(query))
        terms = page.chunk_terms
        shared = [-len(q & t) for t in terms]
        ranked = sorted(range(len(page.chunks)), key=lambda i: (shared[i], i))
        chosen = sorted(ranked[: max(n, 1)])
        return [page.chunks[i] for i in chosen]


@lru_cache(maxsize=1)
def load_corpus() -> Corpus:
    """Load and index the bundled corpus (cached for the life of the process)."""
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build
    root = resources.files("services.sandbox") / "corpus"
    meta = json.loads((root / "companies.json").read_text(encoding="utf-8"))
    companies = {
        c["key"]: Company(
            key=c["key"],
            name=c["name"],
            domain=c["domain"],
            aliases=tuple(c.get("aliases", ())),
            topics=tuple(c.get("topics", ())),
            third_party=bool(c.get("third_party", False)),
        )
        for c in meta["companies"]
    }
    pages: list[Page] = []
    for company_dir in sorted((root / "pages").iterdir(), key=lambda p: p.name):
        if not company_dir.is_dir():
            continue
        for f in sorted(company_dir.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".md"):
                page = _parse_page(f.read_text(encoding="utf-8"))
                if page.company not in companies:
                    raise ValueError(f"{f.name}: unknown company {page.company!r}")
                pages.append(page)
    return Corpus(pages=pages, companies=companies)
