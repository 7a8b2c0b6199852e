"""Bounds of every ExtractionService request field (pure), documented in the proto and the README.

Each check collects ``(field, description)`` pairs; the caller raises one :class:`shared.errors.InvalidArgument`
with all of them (``google.rpc.BadRequest`` field violations), so an over-limit request answers
``INVALID_ARGUMENT`` naming the field and stating the limit. Characters are Unicode code points. Quoted client
input is cut to 100 characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_NAME_CHARS = 200
MAX_DOMAIN_CHARS = 253  # the longest DNS name (RFC 1035 §2.3.4)
MAX_VARIATIONS = 100
MAX_PRODUCTS = 200
MAX_KNOWN_COMPETITORS = 500
MAX_PROVIDER_CITATIONS = 500
MAX_URL_CHARS = 2_048
MAX_TITLE_CHARS = 1_000
MAX_CLASSIFICATION_CHARS = 100_000
MAX_JSON_DEPTH = 32
MAX_SEARCH_RESULT_URLS = 100
MAX_MERGE_NAMES = 10_000

Problems = list[tuple[str, str]]

_BRACKETS_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def check_text(problems: Problems, field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        problems.append((field, f"{field} has {len(value)} characters; the limit is {limit}"))


def check_list(problems: Problems, field: str, values: Sequence[str], max_items: int, max_chars: int) -> None:
    """At most ``max_items`` strings of at most ``max_chars`` each (the first too-long one is named)."""
    if len(values) > max_items:
        problems.append((field, f"{field} has {len(values)} entries; the limit is {max_items}"))
        return
    for i, v in enumerate(values):
        if len(v) > max_chars:
            problems.append((f"{field}[{i}]", f"{field}[{i}] has {len(v)} characters; the limit is {max_chars}"))
            return


def check_org(problems: Problems, prefix: str, name: str, domain: str, variations: Sequence[str],
              products: Sequence[str]) -> None:
    """Bounds of an ``Org`` message (``prefix`` = ``org.``)."""
    check_text(problems, f"{prefix}name", name, MAX_NAME_CHARS)
    check_text(problems, f"{prefix}domain", domain, MAX_DOMAIN_CHARS)
    check_list(problems, f"{prefix}name_variations", variations, MAX_VARIATIONS, MAX_NAME_CHARS)
    check_list(problems, f"{prefix}known_products", products, MAX_PRODUCTS, MAX_NAME_CHARS)


def check_citations(problems: Problems, citations: Sequence[tuple[str, str]]) -> None:
    if len(citations) > MAX_PROVIDER_CITATIONS:
        problems.append(
            ("provider_citations",
             f"provider_citations has {len(citations)} entries; the limit is {MAX_PROVIDER_CITATIONS}")
        )
        return
    for i, (url, title) in enumerate(citations):
        check_text(problems, f"provider_citations[{i}].url", url, MAX_URL_CHARS)
        check_text(problems, f"provider_citations[{i}].title", title, MAX_TITLE_CHARS)


def json_depth(text: str) -> int:
    """Deepest nesting of ``[]``/``{}`` outside JSON strings (a cheap scan before ``json.loads``)."""
    depth = best = 0
    for m in _BRACKETS_RE.finditer(text):
        c = m.group(0)
        if c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth -= 1
    return best


def check_classification(text: str, urls: Sequence[str], company: str) -> Problems:
    """Bounds of a ``ParseClassificationRequest``."""
    problems: Problems = []
    check_text(problems, "classification_json", text, MAX_CLASSIFICATION_CHARS)
    if not problems:
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:
            problems.append(
                ("classification_json",
                 f"classification_json is nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
            )
    check_list(problems, "search_result_urls", urls, MAX_SEARCH_RESULT_URLS, MAX_URL_CHARS)
    check_text(problems, "company", company, MAX_NAME_CHARS)
    return problems


def check_merge(names: Sequence[tuple[str, int]]) -> Problems:
    """Bounds of a ``MergeCompetitorsRequest``."""
    problems: Problems = []
    if len(names) > MAX_MERGE_NAMES:
        return [("names", f"names has {len(names)} entries; the limit is {MAX_MERGE_NAMES}")]
    for i, (name, weight) in enumerate(names):
        if not name.strip() or len(name) > MAX_NAME_CHARS:
            problems.append((f"names[{i}].name", f"names[{i}].name must have 1-{MAX_NAME_CHARS} characters"))
            break
        if weight < 0:
            problems.append((f"names[{i}].weight", f"names[{i}].weight must be >= 0, got {weight}"))
            break
    return problems
