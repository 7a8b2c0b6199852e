"""URL normalisation and registrable domains (pure; no network).

Two levels of normalisation:

* :func:`normalize_url` — for citations: scheme and host lower-cased, default ports (``:80`` for http, ``:443`` for
  https) dropped, ``utm_*`` and other click-tracking parameters dropped (see :data:`TRACKING_PARAMS`), fragment
  dropped, trailing slash unified (the root is ``/``, other paths never end in ``/``). Parameters that are kept keep
  their original spelling and order (no re-encoding), so the function is idempotent:
  ``normalize_url(normalize_url(u)) == normalize_url(u)``.
* :func:`light_url_key` — for comparing an LLM's evidence URL with the search-result URLs it was given: only scheme
  and host case, default port and trailing slash, because a different query or fragment may be a different page
  for all we know.

Registrable domains come from the Public Suffix List through tldextract's *bundled snapshot*:
``TLDExtract(suffix_list_urls=(), cache_dir=None)`` never fetches the live list and never writes a cache
(tldextract README, "How to disable HTTP suffix list fetching for production"), so the service works offline and
gives the same answer on every machine with the same tldextract version. ``docs.together.ai`` → ``together.ai``,
``news.bbc.co.uk`` → ``bbc.co.uk``; an IP address or ``localhost`` is its own domain.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from services.extraction.memo import memo
from shared.domains import host_of as _host_of
from shared.domains import registrable_parts

#: Query parameters that only track a click, never select content. ``utm_*`` is matched as a prefix.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "fbclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "ref",
        "ref_src",
        "ref_url",
        "twclid",
        "li_fat_id",
        "srsltid",
    }
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Characters a bare URL in prose often ends with but that belong to the sentence, not the URL.
_TRAILING_PUNCT = ".,;:!?'\"*_`>"



def strip_trailing_punctuation(url: str) -> str:
    """Drop sentence punctuation glued to a bare URL: ``https://a.com/x).`` → ``https://a.com/x``.

    A closing ``)`` or ``]`` is dropped only when unbalanced inside the URL, so Wikipedia-style
    ``…/wiki/Lambda_(company)`` survives.
    """
    while url:
        last = url[-1]
        if last in _TRAILING_PUNCT:
            url = url[:-1]
        elif last == ")" and url.count(")") > url.count("("):
            url = url[:-1]
        elif last == "]" and url.count("]") > url.count("["):
            url = url[:-1]
        else:
            break
    return url


def _split(url: str) -> SplitResult | None:
    url = url.strip().strip("<>").strip()
    if not url:
        return None
    if url.lower().startswith("www."):
        url = "https://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def _netloc(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = f"{userinfo}@{host}" if userinfo else host
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        netloc += f":{port}"
    return netloc


def _path(path: str) -> str:
    # "Trailing slash unified": /docs/ and /docs are one page; the root is always "/".
    return path.rstrip("/") or "/"


def _is_tracking(param: str) -> bool:
    name = unquote(param.split("=", 1)[0]).strip().lower()
    return name.startswith("utm_") or name in TRACKING_PARAMS


@memo
def normalize_url(url: str) -> str | None:
    """The citation form of ``url``, or None when it is not an absolute http(s) URL with a host.

    ``HTTPS://Docs.Together.AI:443/inference/?utm_source=x&id=3#pricing`` →
    ``https://docs.together.ai/inference?id=3``.
    """
    parts = _split(url)
    if parts is None:
        return None
    query = "&".join(p for p in parts.query.split("&") if p and not _is_tracking(p))
    return urlunsplit((parts.scheme.lower(), _netloc(parts), _path(parts.path), query, ""))


def light_url_key(url: str) -> str:
    """A comparison key that forgives only scheme/host case, a default port and a trailing slash.

    Used to check that an LLM's evidence URL is one of the search results it was given. Non-URLs compare as
    their stripped text.
    """
    parts = _split(url)
    if parts is None:
        return url.strip()
    return urlunsplit((parts.scheme.lower(), _netloc(parts), _path(parts.path), parts.query, parts.fragment))


#: Memoised here (the extraction service's byte-bounded caches): these run for every URL and name of every answer.
_extract = memo(registrable_parts)
host_of = memo(_host_of)


def registrable_domain(url_or_host: str) -> str:
    """Registrable domain (eTLD+1) of a URL or host: ``docs.together.ai`` → ``together.ai``.

    Hosts without a public suffix (IP addresses, ``localhost``, intranet names) are returned whole; "" when there
    is no host at all.
    """
    host = host_of(url_or_host)
    if not host:
        return ""
    registrable, _ = _extract(host)
    return registrable or host


def domain_stem(url_or_host: str) -> str:
    """The registrable domain's label without its suffix: ``lambdalabs.com`` → ``lambdalabs``; "" when none."""
    host = host_of(url_or_host)
    if not host:
        return ""
    registrable, stem = _extract(host)
    return stem if registrable else ""


_DOMAIN_LIKE = re.compile(r"^(?:https?://)?(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/\S*)?$", re.IGNORECASE)


@memo
def looks_like_domain(text: str) -> bool:
    """True for ``together.ai``, ``https://lambda.ai/x``; False for names such as ``Character AI``."""
    text = text.strip()
    return (
        bool(_DOMAIN_LIKE.match(text)) and bool(registrable_domain(text)) and "." in registrable_domain(text)
    )
