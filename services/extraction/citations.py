"""Citations of one answer: provider citations, inline links and bare URLs, normalised and classified (pure).

Order: the provider's citations first (``PROVIDER``, in the provider's order — they are what the assistant
says it used), then the URLs written in the answer in order of appearance: inline links ``[text](url)`` and link
reference definitions ``[1]: url "title"`` (``INLINE_LINK``), autolinks ``<url>`` and bare URLs (``BARE_URL``;
trailing ``).,;`` stripped). Images and non-http(s) links (``mailto:``, relative paths, anchors) are not
citations, and neither is anything inside fenced code.

Each URL is normalised with :func:`~services.extraction.urls.normalize_url` and de-duplicated on that form,
keeping the first occurrence's position and source (a later occurrence only fills in a missing title);
``position`` is 1..n after de-duplication. ``domain`` is the registrable domain (offline Public Suffix List).

``owned``: the domain is one of the org's (its ``domain`` and any variation spelled as a domain).
``competitor``: the domain belongs to an organisation named in the answer or to a known competitor — equal to a
domain spelled in its name (``Vast.ai``), or whose stem matches its identity keys
(:func:`~services.extraction.competitors.stem_match`: ``coreweave.com`` ↔ CoreWeave, ``lambdalabs.com`` ↔
Lambda); ``competitor_name`` is that organisation's display name. An owned citation is never a competitor's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from services.extraction.competitors import brand_domains, stem_match
from services.extraction.names import Brand
from services.extraction.text import Doc, plain
from services.extraction.urls import (
    domain_stem,
    normalize_url,
    registrable_domain,
    strip_trailing_punctuation,
)

PROVIDER, INLINE_LINK, BARE_URL = "PROVIDER", "INLINE_LINK", "BARE_URL"


@dataclass(frozen=True)
class Citation:
    """One cited URL. ``position`` 1-based after de-duplication; ``source`` PROVIDER/INLINE_LINK/BARE_URL."""

    url: str
    domain: str
    title: str
    position: int
    source: str
    owned: bool = False
    competitor: bool = False
    competitor_name: str = ""


def _in_fence(doc: Doc, offset: int) -> bool:
    # Fenced code is blanked in the masked text while the original has content there.
    return doc.masked[offset] == " " and doc.text[offset] != " " and doc.unit_at(offset) is None


def raw_citations(doc: Doc, provider: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(raw url, title, source) in citation order, before normalisation."""
    out: list[tuple[str, str, str]] = [(u, t, PROVIDER) for u, t in provider]
    found: list[tuple[int, str, str, str]] = []
    taken: list[tuple[int, int]] = []
    for link in doc.links:
        taken.append(link.span)
        if _in_fence(doc, link.span[0]):
            continue
        title = plain(link.text)
        if normalize_url(title) is not None:
            title = ""  # "[https://x.com](https://x.com)": the text is the URL, not a title
        found.append((link.span[0], link.url, title, INLINE_LINK))
    found_urls = doc.url_matches
    taken.extend(m.span() for m in found_urls.images)  # an image is not a source
    for m in found_urls.refdefs:
        taken.append(m.span())
        found.append((m.start(), m.group("url"), (m.group("title") or "").strip(), INLINE_LINK))
    for m in found_urls.autolinks:
        if any(s <= m.start() < e for s, e in taken):
            continue
        taken.append(m.span())
        if not _in_fence(doc, m.start()):
            found.append((m.start(), m.group("url"), "", BARE_URL))
    for m in found_urls.bare:
        if any(s <= m.start() < e for s, e in taken) or _in_fence(doc, m.start()):
            continue
        found.append((m.start(), strip_trailing_punctuation(m.group(0)), "", BARE_URL))
    found.sort(key=lambda f: f[0])
    out.extend((u, t, s) for _, u, t, s in found)
    return out


def _competitor_of(domain: str, competitors: Iterable[tuple[Brand, set[str]]]) -> str:
    """``competitors``: (brand, its :func:`brand_domains`) pairs."""
    stem = domain_stem(domain)
    best, name = 0, ""
    for b, domains in competitors:
        score = 10_000 if domain in domains else stem_match(stem, b.keys)
        if score > best:
            best, name = score, b.display
    return name


def extract(
    doc: Doc,
    provider: Sequence[tuple[str, str]],
    org_domains: set[str],
    org: Brand,
    competitors: Sequence[Brand],
    raw: Sequence[tuple[str, str, str]] | None = None,
) -> list[Citation]:
    """Normalised, de-duplicated, classified citations (see the module docstring). ``raw``: the
    :func:`raw_citations` of ``doc`` and ``provider`` when the caller already has them."""
    by_url: dict[str, Citation] = {}
    with_domains: list[tuple[Brand, set[str]]] | None = None
    for raw_url, title, source in raw if raw is not None else raw_citations(doc, provider):
        url = normalize_url(raw_url)
        if url is None:
            continue
        title = " ".join(title.split())
        if url in by_url:
            if title and not by_url[url].title:
                by_url[url] = replace(by_url[url], title=title)
            continue
        domain = registrable_domain(url)
        owned = domain in org_domains
        name = ""
        if not owned and not stem_match(domain_stem(domain), org.keys) >= 500:
            if with_domains is None:
                with_domains = [(b, brand_domains(b)) for b in competitors]
            name = _competitor_of(domain, with_domains)
        by_url[url] = Citation(
            url=url,
            domain=domain,
            title=title,
            position=len(by_url) + 1,
            source=source,
            owned=owned,
            competitor=bool(name),
            competitor_name=name,
        )
    return list(by_url.values())
