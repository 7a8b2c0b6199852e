"""The cheaper per-page work of issue 16 item 1 gives the same answers as before: ``clean_text`` with its ASCII and
UTF-8 fast paths equals the regular-expression version it replaced, and ``page_bytes`` (the cache weight, summed
over the page's known shape) equals the generic ``deep_sizeof`` walk."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from services.search.cache import deep_sizeof
from services.search.core import Hit, SearchParams, TavilyPage, clean_text
from services.search.engine import page_bytes
from services.search.tavily import parse_response

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text_before(text: str) -> str:
    """The implementation before the fast paths (the specification)."""
    if _SURROGATE.search(text):
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "")


#: Any code point, surrogates and NUL included (hypothesis leaves surrogates out unless asked).
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=60)
MIXED = st.lists(st.sampled_from(["abc ", "\x00", "\ud83d", "\ude00", "\ud83d\ude00", "é", "’", "—", "😀", "日本"]),
                 max_size=30).map("".join)


@given(st.one_of(ANY_TEXT, MIXED))
def test_clean_text_equals_the_regex_version(text: str) -> None:
    out = clean_text(text)
    assert out == clean_text_before(text)
    out.encode("utf-8")  # always encodable


def test_clean_text_returns_clean_text_itself() -> None:
    for text in ("plain ascii " * 100, "curly ’quotes’ — and é " * 50, "", "😀 wide"):
        assert clean_text(text) is text
    assert clean_text("a\x00b") == "ab" and clean_text("é\x00") == "é"
    assert clean_text("a\ud83d\ude00b") == "a\U0001f600b" and clean_text("x\udc00y") == "x\ufffdy"


def _page(text: str, n: int) -> TavilyPage:
    hits = tuple(Hit(f"{text[:7]} {i}", f"https://x{i}.example.com/{i}", text[:300], text * (i + 1), i / 20)
                 for i in range(n))
    return TavilyPage(f"q {text[:5]}", hits, 2, "rid-" + text[:3], 1.25)


@given(st.one_of(ANY_TEXT, MIXED), st.integers(0, 20))
def test_page_bytes_equals_deep_sizeof(text: str, n: int) -> None:
    page = _page(text, n)
    assert page_bytes(page) == deep_sizeof(page)


def test_page_bytes_of_a_parsed_tavily_answer_equals_deep_sizeof() -> None:
    body = {
        "query": "acme",
        "results": [{"title": "A — b", "url": "https://a.com", "content": "c" * 500, "raw_content": "r😀" * 4000,
                     "score": 0.8}, {"title": None, "url": "https://b.com", "content": "x\ud83dy", "score": "0.5"}],
        "usage": {"credits": 2}, "request_id": "rid", "response_time": 1.5,
    }
    page = parse_response(body, SearchParams("acme", 20, "advanced", True))
    assert page_bytes(page) == deep_sizeof(page) > 16_000 * 4 // 2
    assert page_bytes(TavilyPage("", (), 0)) == deep_sizeof(TavilyPage("", (), 0))
