"""Hosts and registrable domains (eTLD+1) of URLs: pure, offline, shared by the extraction service (citations, org
identity) and the orchestrator's report (the source funnel), so both group ``news.bbc.co.uk`` under ``bbc.co.uk``
by the same rule.

Registrable domains come from the Public Suffix List through tldextract's *bundled snapshot*:
``TLDExtract(suffix_list_urls=(), cache_dir=None)`` never fetches the live list and never writes a cache
(tldextract README, "How to disable HTTP suffix list fetching for production"), so the answer is the same on every
machine with the same tldextract version. An IP address or ``localhost`` is its own domain.

Matching a domain to a brand (its stem against a name's identity keys) is org identity and lives in the extraction
service only (``services/extraction/identity.py``, ``urls.py``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import tldextract

__all__ = ["host_of", "registrable_domain", "registrable_parts"]

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def host_of(url_or_host: str) -> str:
    """The lower-case host of a URL or of a bare host name (``"Docs.Together.ai"``, ``"https://x.io/a"``); "" when
    there is none (empty or unparsable input)."""
    text = url_or_host.strip()
    if not text:
        return ""
    if "://" not in text:
        text = "http://" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def registrable_parts(host: str) -> tuple[str, str]:
    """(registrable domain, its label without the suffix) of a lower-case ``host``: ``docs.together.ai`` →
    ``("together.ai", "together")``; ``("", …)`` when the host has no public suffix (an IP address, ``localhost``)."""
    r = _EXTRACT(host)
    return (f"{r.domain}.{r.suffix}" if r.domain and r.suffix else ""), r.domain


def registrable_domain(url_or_host: str) -> str:
    """Registrable domain (eTLD+1) of a URL or host: ``https://docs.together.ai/x`` → ``together.ai``. A host
    without a public suffix is returned whole; "" when there is no host at all."""
    host = host_of(url_or_host)
    if not host:
        return ""
    return registrable_parts(host)[0] or host
