"""The extractor's fast paths agree with the plain definitions they replace (hypothesis): the token index, the
URL scans with their substring prefilters, the capital-letter-first prose patterns and their hint patterns."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from services.extraction import competitors as comp
from services.extraction import text as tx

_pieces = st.sampled_from(
    [
        "CoreWeave", "Lambda", "Together AI", "together", "Luma AI", "Acme Labs", "Inc.", "Technologies", "and",
        "or", "&", ",", ".", "-", "(", ")", "[x](https://a.io)", "![i](https://a.io/i.png)", "[1]: https://b.io",
        "<https://c.io>", "HTTP://D.IO/x", "www.e.io", "**Bold**", "__u__", "_", "'s", "’s", "AI’s", "é", "日本",
        "Straße", "ſ", "\t", "\n", "  ", "stands out", "offers", "is a leading provider", "consider", "such as",
        "for", "Vast.ai", "x_y", "C++", "#", "> ", "```", "|", "1.", "e.g.", "Groq", "MI300X",
    ]
)
_texts = st.one_of(st.text(max_size=200), st.lists(_pieces, max_size=40).map(" ".join))


def _reference_tokens(masked: str) -> list[tuple[int, int, str]]:
    out = []
    for m in tx.TOKEN_RE.finditer(masked):
        s, e = m.span()
        w = m.group(0)
        if w[-2:] in ("'s", "’s") and len(w) > 2:
            w, e = w[:-2], e - 2
        out.append((s, e, w))
    return out


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_token_index_matches_the_token_pattern(text: str) -> None:
    doc = tx.parse(text)
    assert [tuple(t) for t in doc.tokens] == _reference_tokens(doc.masked)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_url_scans_match_unfiltered_scans(text: str) -> None:
    found = tx.UrlMatches.scan(text)
    for got, rx in (
        (found.images, tx.IMAGE_RE),
        (found.refdefs, tx.REFDEF_RE),
        (found.autolinks, tx.AUTOLINK_RE),
        (found.bare, tx.BARE_URL_RE),
    ):
        assert [m.span() for m in got] == [m.span() for m in rx.finditer(text)]


# The prose patterns as first written (a lookbehind before the first capital), which the shipped ones must equal.
_N = comp._NAME
_ENUM_PLAIN = re.compile(
    rf"(?<![\w.-])(?P<list>{_N}(?:,[ \t]+{_N}){{1,}},?[ \t]+(?:and|or|&)[ \t]+{_N}"
    rf"|{_N}(?:,[ \t]+{_N}){{2,}}"
    rf"|{_N}[ \t]+(?:and|or|&)[ \t]+{_N})(?![\w-])"
)
_SUFFIXED_PLAIN = re.compile(
    r"(?<![\w.-])(?:[A-Z][\w&'’.-]*[ \t]+){0,2}[A-Z][\w&'’.-]*[ \t]+(?:AI|Labs|Inc\.?|Technologies)(?![\w])"
    + comp._SUFFIXED_RE.pattern.split("(?![\\w])", 1)[1]
)
_cue = comp._CUE_AFTER_RE.pattern
_CUE_AFTER_PLAIN = re.compile(rf"(?:^|(?<=[\s(*_\[]))(?P<name>{_N})" + _cue[_cue.index(r"[*_\]]*[ \t]+") :])


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_prose_patterns_and_hints(text: str) -> None:
    for fast, plain, hint in (
        (comp._ENUM_RE, _ENUM_PLAIN, comp._ENUM_HINT_RE),
        (comp._SUFFIXED_RE, _SUFFIXED_PLAIN, comp._SUFFIXED_HINT_RE),
        (comp._CUE_AFTER_RE, _CUE_AFTER_PLAIN, comp._CUE_AFTER_HINT_RE),
    ):
        got = [(m.span(), m.groupdict()) for m in fast.finditer(text)]
        assert got == [(m.span(), m.groupdict()) for m in plain.finditer(text)]
        if got:
            assert hint.search(text)
    if comp._CUE_BEFORE_RE.search(text):
        assert any(w in text for w in comp._CUE_BEFORE_WORDS)
