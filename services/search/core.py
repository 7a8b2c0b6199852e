"""Pure search logic: request validation, relevance filtering and sorting, credit accounting and the LLM-context
formatter. No gRPC, no I/O; the servicer (:mod:`services.search.server`) and the engine
(:mod:`services.search.engine`) call into it.

Units: scores are Tavily relevance scores in 0..1; credits are Tavily API credits (ints); costs are USD;
budgets, caps and lengths are **characters** (Python ``str`` code points, never bytes).

Credit rules (https://docs.tavily.com/documentation/api-credits, providers.md §1.5): a ``basic``, ``fast`` or
``ultra-fast`` search costs 1 credit, an ``advanced`` search 2. When Tavily reports ``usage.credits`` (we always send
``include_usage=true``) that number wins.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from shared.config import TAVILY_CREDITS_BY_DEPTH
from shared.errors import InvalidArgument, bounded
from shared.text import MAX_IDEMPOTENCY_KEY_CHARS, idempotency_key_ok

#: Tavily search depths (providers.md §1.2).
DEPTHS: tuple[str, ...] = ("basic", "advanced", "fast", "ultra-fast")
#: Tavily's max_results range is 0..20; we require 1..20 (0 results is never a useful search).
MAX_RESULTS_LIMIT = 20
#: Tavily rejects longer queries ("Query is too long. Max query length is 400 characters.").
MAX_QUERY_CHARS = 400
#: Tavily's list limits (providers.md §1.2).
MAX_INCLUDE_DOMAINS = 300
MAX_EXCLUDE_DOMAINS = 150
#: Request limits (README "Request limits", search.proto). Raw text before whitespace is collapsed is bounded too,
#: so that a huge field is refused before any work is done on it.
MAX_RAW_QUERY_CHARS = 4_000
MAX_COMPANY_CHARS = 200
#: A host name is at most 253 characters (RFC 1035 §2.3.4 / RFC 1123); a URL given for one may be longer.
MAX_DOMAIN_CHARS = 253
MAX_RAW_DOMAIN_CHARS = 2_000
MAX_CONTEXT_CHAR_BUDGET = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: Appended to a source whose text was cut to fit the budget.
TRUNCATION_MARKER = " …[truncated]"
#: Between two blocks of the LLM context.
BLOCK_SEPARATOR = "\n"
#: A source is left out rather than shown with less than this many characters of text (or its whole text).
MIN_SOURCE_TEXT_CHARS = 80
#: Longest title shown in a block header (characters).
MAX_TITLE_CHARS = 300


# --------------------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One Tavily result. ``score`` is Tavily's relevance in 0..1; ``raw_content`` is "" when not requested."""

    title: str
    url: str
    content: str
    raw_content: str
    score: float


@dataclass(frozen=True, slots=True)
class SearchParams:
    """What is sent to Tavily — and, normalised, the cache key (``min_score`` is applied afterwards, so requests
    that differ only in it share one fetch)."""

    query: str
    max_results: int
    search_depth: str
    include_raw_content: bool
    include_domains: tuple[str, ...] = ()
    exclude_domains: tuple[str, ...] = ()

    def cache_key(self) -> tuple[object, ...]:
        """Whitespace-collapsed query, depth, max_results, raw flag, sorted de-duplicated domains."""
        return (
            normalise_query(self.query),
            self.search_depth,
            self.max_results,
            self.include_raw_content,
            tuple(sorted(set(self.include_domains))),
            tuple(sorted(set(self.exclude_domains))),
        )


@dataclass(frozen=True, slots=True)
class TavilyPage:
    """One Tavily answer, unfiltered, as the backend returns it and the cache stores it.

    ``credits``: Tavily credits billed for the call; ``response_time_s``: Tavily's own timing (seconds).
    """

    query: str
    hits: tuple[Hit, ...]
    credits: int
    request_id: str = ""
    response_time_s: float = 0.0


class SearchBackend(Protocol):
    """A web search provider. Raises :class:`shared.errors.VantageError` subclasses on failure."""

    async def search(self, params: SearchParams, *, timeout_s: float) -> TavilyPage:
        """Run one search within ``timeout_s`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """A validated request: what to fetch, how to filter it and how much LLM context to build.

    ``context_char_budget`` 0 = no context; ``context_source_char_cap`` characters one source may take;
    ``official_domain`` (may be "") tags the company's own pages in the context; ``return_raw_content``: whether the
    answer's results carry the page text (``raw_content``) — the page may be fetched with it (for the context)
    without returning it.
    """

    params: SearchParams
    min_score: float
    context_char_budget: int = 0
    context_source_char_cap: int = 0
    official_domain: str = ""
    return_raw_content: bool = True


@dataclass(frozen=True, slots=True)
class Defaults:
    """Configured defaults (from :class:`shared.config.SearchSettings`)."""

    max_results: int = 20
    search_depth: str = "advanced"
    include_raw_content: bool = True
    min_score: float = 0.4
    context_char_budget: int = 60_000
    context_source_char_cap: int = 15_000


# --------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------


def normalise_query(query: str) -> str:
    """``query`` stripped, with runs of whitespace collapsed to one space."""
    return " ".join(query.split())


def normalise_domain(domain: str) -> str:
    """``"HTTPS://www.Example.com/path"`` → ``"www.example.com"``: lower case, no scheme, path, port or dot at the end."""
    d = domain.strip().lower()
    if "://" in d:
        d = d.split("://", 1)[1]
    d = d.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    d = d.rsplit("@", 1)[-1].split(":", 1)[0]
    return d.strip(".")


def domain_problem(raw: str) -> tuple[str, str]:
    """``(normalised domain, "")`` or ``("", why raw is not a domain)``: too long (over
    :data:`MAX_RAW_DOMAIN_CHARS` as given, :data:`MAX_DOMAIN_CHARS` as a host name), empty, or holding whitespace
    or control characters."""
    if len(raw) > MAX_RAW_DOMAIN_CHARS:
        return "", f"a domain is at most {MAX_DOMAIN_CHARS} characters, got {len(raw)}"
    d = normalise_domain(raw)
    if len(d) > MAX_DOMAIN_CHARS:
        return "", f"a domain is at most {MAX_DOMAIN_CHARS} characters, got {len(d)}"
    if not d or any(c.isspace() for c in d) or _CONTROL.search(d):
        return "", f"not a domain: {bounded(repr(raw))}"
    return d, ""


def _domains(values: Iterable[str], field: str, limit: int, violations: list[tuple[str, str]]) -> tuple[str, ...]:
    out: list[str] = []
    values = list(values)
    if len(values) > limit:
        violations.append((field, f"at most {limit} domains are allowed, got {len(values)}"))
        return ()
    for i, raw in enumerate(values):
        d, problem = domain_problem(raw)
        if problem:
            violations.append((f"{field}[{i}]", problem))
        elif d not in out:
            out.append(d)
    return tuple(out)


def validate_search(
    *,
    query: str,
    max_results: int | None,
    search_depth: str,
    include_raw_content: bool | None,
    min_score: float | None,
    include_domains: Iterable[str] = (),
    exclude_domains: Iterable[str] = (),
    context_char_budget: int = 0,
    defaults: Defaults = Defaults(),
    query_field: str = "query",
) -> SearchSpec:
    """Check a Search request and fill in defaults. Unset (``None``/empty) values take ``defaults``.

    Raises :class:`InvalidArgument` listing every bad field (``google.rpc.BadRequest`` field violations):
    empty or over-long query (> 400 characters once whitespace is collapsed — Tavily's "Max query length is 400
    characters" — or > :data:`MAX_RAW_QUERY_CHARS` as given), a query with control characters, ``max_results``
    outside 1..20 (an explicit 0 is refused: Tavily would accept it and return nothing), unknown ``search_depth``,
    ``min_score`` outside 0..1, more than 300 include / 150 exclude domains (or one that is not a host name of ≤ 253
    characters), ``context_char_budget`` outside 0..:data:`MAX_CONTEXT_CHAR_BUDGET`. Nothing is sent to Tavily then.
    """
    violations: list[tuple[str, str]] = []
    q = normalise_query(query) if len(query) <= MAX_RAW_QUERY_CHARS else ""
    if len(query) > MAX_RAW_QUERY_CHARS:
        violations.append((query_field, f"the search query is {len(query)} characters; Tavily allows "
                                        f"{MAX_QUERY_CHARS}"))
    elif not q:
        violations.append((query_field, "must not be empty"))
    elif len(q) > MAX_QUERY_CHARS:
        violations.append((query_field, f"the search query is {len(q)} characters; Tavily allows {MAX_QUERY_CHARS}"))
    elif _CONTROL.search(q):
        violations.append((query_field, "the search query must not contain control characters"))

    n = defaults.max_results if max_results is None else max_results
    if not 1 <= n <= MAX_RESULTS_LIMIT:
        violations.append(("max_results", f"must be between 1 and {MAX_RESULTS_LIMIT} (leave unset for {defaults.max_results}), got {n}"))

    depth = (search_depth or "").strip().lower() or defaults.search_depth
    if depth not in DEPTHS:
        violations.append(("search_depth", f"must be one of {', '.join(DEPTHS)} (or empty for {defaults.search_depth}), got {bounded(repr(search_depth))}"))

    score = defaults.min_score if min_score is None else min_score
    if not (isinstance(score, int | float) and math.isfinite(score) and 0.0 <= score <= 1.0):
        violations.append(("min_score", f"must be between 0 and 1, got {score}"))

    inc = _domains(include_domains, "include_domains", MAX_INCLUDE_DOMAINS, violations)
    exc = _domains(exclude_domains, "exclude_domains", MAX_EXCLUDE_DOMAINS, violations)

    if not 0 <= context_char_budget <= MAX_CONTEXT_CHAR_BUDGET:
        violations.append(("context_char_budget",
                           f"must be between 0 and {MAX_CONTEXT_CHAR_BUDGET} characters, got {context_char_budget}"))

    if violations:
        summary = "; ".join(f"{f}: {d}" for f, d in violations)
        raise InvalidArgument(f"invalid search request: {summary}", violations=violations)
    raw = defaults.include_raw_content if include_raw_content is None else include_raw_content
    return SearchSpec(
        params=SearchParams(q, n, depth, raw, inc, exc),
        min_score=float(score),
        context_char_budget=context_char_budget,
        context_source_char_cap=source_cap_for(context_char_budget, defaults),
        return_raw_content=raw,
    )


def source_cap_for(budget: int, defaults: Defaults) -> int:
    """Characters one source may take of a ``budget``-character context: the configured cap, scaled down in
    proportion when the budget is below the configured one (60,000 / 15,000 → 30,000 / 7,500), so that a smaller
    budget (the research retry path halves it) keeps as many sources, each shorter, instead of fewer sources."""
    cap = defaults.context_source_char_cap
    full = defaults.context_char_budget
    if budget <= 0 or cap <= 0 or full <= 0 or budget >= full:
        return cap
    return max(1, min(cap, budget * cap // full))


def company_query(template: str, company: str, domain: str = "") -> str:
    """The SearchCompany query: ``template`` with ``{company}`` and ``{domain}`` filled in, whitespace collapsed.

    Raises :class:`InvalidArgument` (field ``company``) for an empty company name, one over
    :data:`MAX_COMPANY_CHARS` characters (whitespace collapsed) or one with control characters.
    """
    if len(company) > 10 * MAX_COMPANY_CHARS:
        raise InvalidArgument(f"company is {len(company)} characters; at most {MAX_COMPANY_CHARS} are allowed",
                              field="company")
    name = " ".join(company.split())
    if not name:
        raise InvalidArgument("company must not be empty", field="company")
    if len(name) > MAX_COMPANY_CHARS:
        raise InvalidArgument(f"company is {len(name)} characters; at most {MAX_COMPANY_CHARS} are allowed",
                              field="company")
    if _CONTROL.search(name):
        raise InvalidArgument("company must not contain control characters", field="company")
    try:
        q = template.format(company=name, domain=domain)
    except (KeyError, IndexError, ValueError) as e:  # a misconfigured template, not the caller's fault
        raise InvalidArgument(f"company_query_template is invalid: {e}", field="company") from None
    return normalise_query(q)


def validate_company(
    *,
    company: str,
    domain: str,
    template: str,
    search_depth: str,
    min_score: float | None,
    max_results: int | None,
    context_char_budget: int,
    include_raw_content: bool | None = None,
    defaults: Defaults = Defaults(),
) -> SearchSpec:
    """Check a SearchCompany request: the query comes from ``template``; the context budget defaults to
    ``defaults.context_char_budget`` characters (a context is always built). ``domain`` is normalised and used only
    to tag the company's own pages — results are never restricted to it.

    The page text is fetched as configured (``defaults.include_raw_content``; also when the caller asks for it) —
    the context is built from it — but returned in the results only when ``include_raw_content`` is true (unset =
    false): the context already carries that text, so by default the answer holds it once, not twice."""
    d = ""
    if domain.strip():
        d, problem = domain_problem(domain)
        if problem:
            raise InvalidArgument(problem, field="domain")
    if not 0 <= context_char_budget <= MAX_CONTEXT_CHAR_BUDGET:
        raise InvalidArgument(
            f"context_char_budget must be between 0 and {MAX_CONTEXT_CHAR_BUDGET} characters, got "
            f"{context_char_budget}", field="context_char_budget"
        )
    spec = validate_search(
        query=company_query(template, company, d),
        max_results=max_results,
        search_depth=search_depth,
        include_raw_content=defaults.include_raw_content or bool(include_raw_content),
        min_score=min_score,
        context_char_budget=context_char_budget or defaults.context_char_budget,
        defaults=defaults,
        query_field="company",
    )
    return SearchSpec(
        params=spec.params,
        min_score=spec.min_score,
        context_char_budget=spec.context_char_budget,
        context_source_char_cap=spec.context_source_char_cap,
        official_domain=d,
        return_raw_content=bool(include_raw_content),
    )


# --------------------------------------------------------------------------------------------------------------
# Filtering, sorting, credits
# --------------------------------------------------------------------------------------------------------------


def check_idempotency_key(key: str) -> None:
    """Raises :class:`InvalidArgument` (field ``idempotency_key``) for a key over
    :data:`~shared.text.MAX_IDEMPOTENCY_KEY_CHARS` characters or with a character that is not visible ASCII; "" is no key."""
    if not idempotency_key_ok(key):
        raise InvalidArgument(f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII "
                              f"characters (got {len(key)} characters)", field="idempotency_key")


def sort_hits(hits: Iterable[Hit]) -> list[Hit]:
    """Highest score first; ties broken by URL (ascending), so the order is deterministic."""
    return sorted(hits, key=lambda h: (-h.score, h.url))


def filter_hits(hits: Sequence[Hit], min_score: float) -> tuple[list[Hit], int]:
    """``(kept, filtered_out_count)``: results with ``score >= min_score``, sorted by :func:`sort_hits`."""
    kept = [h for h in hits if h.score >= min_score]
    return sort_hits(kept), len(hits) - len(kept)


def credits_for(search_depth: str, reported: int | None = None) -> int:
    """Tavily credits of one search: ``reported`` (``usage.credits``) when Tavily gave it, else 2 for
    ``advanced`` and 1 for ``basic`` / ``fast`` / ``ultra-fast`` (https://docs.tavily.com/documentation/api-credits)."""
    if reported is not None and reported >= 0:
        return reported
    return TAVILY_CREDITS_BY_DEPTH.get(search_depth, 1)


def cost_usd(credits: int, usd_per_credit: float) -> float:
    """USD of ``credits`` Tavily credits at ``usd_per_credit`` (pay-as-you-go: 0.008)."""
    return round(credits * usd_per_credit, 9)


def host_matches(url: str, domain: str) -> bool:
    """Whether ``url``'s host is ``domain`` or one of its subdomains (``www.`` on either side ignored)."""
    if not domain:
        return False
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    d = domain.lower().removeprefix("www.")
    host = host.removeprefix("www.")
    return host == d or host.endswith("." + d)


# --------------------------------------------------------------------------------------------------------------
# Text safety
# --------------------------------------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """``text`` safe to encode as UTF-8: surrogate pairs joined, lone surrogates (possible after JSON ``\\ud83d``
    escapes) replaced by U+FFFD, NULs dropped. Clean text comes back as the same object.

    Page texts pass here twice (parsed, then formatted), so the common cases are cheap: ASCII text (``isascii`` is
    O(1) in CPython) holds no surrogate, and other text holds one exactly when strict UTF-8 encoding fails — a
    faster scan than the regular expression."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # only surrogates cannot be encoded
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "") if "\x00" in text else text


def _is_extender(ch: str) -> bool:
    """Characters that belong to the previous one's grapheme: combining marks, ZWJ, variation selectors, emoji
    skin-tone modifiers, tag characters."""
    cp = ord(ch)
    return (
        unicodedata.combining(ch) != 0
        or unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or cp == 0x200D
        or 0xFE00 <= cp <= 0xFE0F
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
        or 0xDC00 <= cp <= 0xDFFF
    )


def safe_cut_index(text: str, limit: int) -> int:
    """Largest ``i <= limit`` such that ``text[:i]`` does not end inside a grapheme (a combining sequence, a ZWJ
    emoji sequence, a surrogate pair, a regional-indicator flag)."""
    i = max(0, min(limit, len(text)))
    if i >= len(text):
        return len(text)
    while i > 0 and (_is_extender(text[i]) or text[i - 1] == "\u200d"):
        i -= 1
    # Regional indicators pair up into flags: do not leave an odd one at the end.
    ri = 0
    j = i - 1
    while j >= 0 and 0x1F1E6 <= ord(text[j]) <= 0x1F1FF:
        ri += 1
        j -= 1
    if ri % 2 == 1 and i < len(text) and 0x1F1E6 <= ord(text[i]) <= 0x1F1FF:
        i -= 1
    return i


_SENTENCE_END = re.compile(r"[.!?。！？][\"'”’)\]]*(?=\s)")
_WS = re.compile(r"\s")


def _drop_trailing_heading(text: str) -> str:
    """``text`` without a last line that is a markdown heading (a heading cut from its section says nothing)."""
    head, sep, last = text.rstrip().rpartition("\n")
    if sep and last.lstrip().startswith("#") and head.strip():
        return head.rstrip()
    return text.rstrip()


def cut_text(text: str, limit: int, *, min_fraction: float = 0.5) -> str:
    """A prefix of ``text`` of at most ``limit`` characters, cut at the best boundary found in the last
    ``1 - min_fraction`` of the window: a paragraph break, else a sentence end, else whitespace, else a
    grapheme boundary (:func:`safe_cut_index`). Trailing whitespace and a dangling markdown heading are removed."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return _drop_trailing_heading(_cut(text, limit, min_fraction))


def _cut(text: str, limit: int, min_fraction: float) -> str:
    floor = int(limit * min_fraction)
    para = text.rfind("\n\n", 0, limit)
    if para >= floor and para > 0:
        return text[:para].rstrip()
    window = text[: limit + 1]
    best = -1
    for m in _SENTENCE_END.finditer(window):
        if m.end() <= limit:
            best = m.end()
    if best >= floor and best > 0:
        return text[:best].rstrip()
    ws = -1
    for m in _WS.finditer(window):
        ws = m.start()
    if ws >= floor and ws > 0:
        return text[:ws].rstrip()
    return text[: safe_cut_index(text, limit)].rstrip()


# --------------------------------------------------------------------------------------------------------------
# LLM context
# --------------------------------------------------------------------------------------------------------------


def _header(n: int, hit: Hit, official: bool) -> str:
    title = " ".join(clean_text(hit.title).split()) or hit.url
    if len(title) > MAX_TITLE_CHARS:
        title = cut_text(title, MAX_TITLE_CHARS - 1) + "…"
    url = "".join(clean_text(hit.url).split())
    head = f"[{n}] {title}\nURL: {url}\nScore: {hit.score:.2f}\n"
    if official:
        head += "Source: company website\n"
    return head


def format_llm_context(
    hits: Sequence[Hit],
    budget: int,
    source_cap: int,
    *,
    official_domain: str = "",
    min_text_chars: int = MIN_SOURCE_TEXT_CHARS,
) -> tuple[str, bool]:
    """Format search results as numbered text blocks for an LLM prompt. Returns ``(text, truncated)``.

    Each block is ``"[n] {title}\\nURL: {url}\\nScore: {score:.2f}\\n{text}\\n"`` (plus ``"Source: company
    website"`` after the score for pages on ``official_domain``), blocks joined by a blank line, highest score first.
    ``text`` is the page's ``raw_content``, else its ``content`` snippet.

    Guarantees (characters, i.e. ``len`` of the ``str``): the output is at most ``budget`` characters; a block is
    at most ``source_cap`` characters; a text cut to fit ends at a paragraph, sentence or word boundary when one is
    near (never inside a grapheme) and carries :data:`TRUNCATION_MARKER`; a source that cannot show at least
    ``min_text_chars`` characters of text (or its whole text) is left out rather than shown as a bare header;
    the output always encodes to valid UTF-8. ``truncated`` is true when any source text was cut or a source was
    left out for lack of room.
    """
    parts: list[str] = []
    used = 0
    truncated = False
    cap = min(source_cap, budget) if source_cap > 0 else budget
    for hit in sort_hits(hits):
        text = clean_text((hit.raw_content or "").strip() or (hit.content or "").strip()).strip()
        if not text:
            continue
        sep = BLOCK_SEPARATOR if parts else ""
        room = min(cap, budget - used - len(sep))
        header = _header(len(parts) + 1, hit, host_matches(hit.url, official_domain))
        if len(header) + len(text) + 1 <= room:
            block = header + text + "\n"
        else:
            truncated = True
            text_room = room - len(header) - 1 - len(TRUNCATION_MARKER)
            if text_room < min(min_text_chars, len(text)):
                continue
            cut = cut_text(text, text_room)
            if not cut:
                continue
            block = header + cut + TRUNCATION_MARKER + "\n"
        parts.append(sep + block)
        used += len(sep) + len(block)
    return "".join(parts), truncated
