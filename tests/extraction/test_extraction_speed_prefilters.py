"""The extraction throughput work's fast paths (issue 16 item 5 / issue 13 item 6) agree with the patterns they
stand in front of (hypothesis): each prefilter decides exactly what the pattern's own search would, on random text
and on text built from the pieces the patterns look for. No timing is asserted here."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.extraction import competitors as comp
from services.extraction import text as tx

#: The enumeration hint as one alternation (before it became ``comp._enum_hint``'s two scans).
_ENUM_HINT_PLAIN = re.compile(r",[ \t]+[A-Z]|[ \t](?:and|or|&|y|o|et|ou|und|oder)[ \t]+[A-Z]")
#: The lower-case-name hint as one alternation (before ``comp._lower_name_matches`` scanned its two halves apart).
_LOWER_HINT_PLAIN = re.compile(rf"[a-z][{comp._UPPER}]|\.(?:io|ai|com|app|co|dev|so)\b")

#: Every alternative of ``_INTEGRATION_RE`` spelled out (with its optional parts), plus near misses.
_INTEGRATION_PHRASES = [
    "integrate with", "integrates with", "integrates well with", "integration with", "integrations with",
    "sync with", "syncs with", "connect to", "connects with", "plug into", "plugs into", "you're on", "you are on",
    "if you use on", "already use on", "already on on", "built on", "on top of", "works with", "app for",
    "apps for", "on a", "on an", "for your", "with their", "con algunos", "con algunas", "con un", "con una",
    "run on", "runs on", "running on", "based on", "hosted on", "built on open-source", "based on open source",
    "live in", "lives in", "wraps", "wrapping", "run", "runs", "hosts", "managed", "self-hosted", "plain",
    "vanilla", "integración con", "integración nativa con", "funciona con", "funciona sobre", "basado en",
    "basiert auf", "läuft auf", "basé sur", "se integra con", "integra con", "integriert mit", "integriert sich in",
    "s'intègre à", "s'intègre avec", "the", "THE", "With", "RUNS", "xwraps", "unmanaged", "ſelf-hoſted", "runſ",
    "integrateſ with", "K", "stands out", "Shopify", "and", "(", "**",
]
_pieces = st.sampled_from([*_INTEGRATION_PHRASES, " ", "  ", "\t", "\n", " \n", "\r", "\x0b", "é", "x"])
_texts = st.one_of(
    st.text(max_size=80),
    st.lists(_pieces, max_size=12).map("".join),
    st.lists(_pieces, max_size=12).map(" ".join),
)


@settings(max_examples=1500, deadline=None)
@given(_texts, st.integers(0, 90), st.integers(0, 90))
def test_integration_before_matches_the_pattern(text: str, a: int, b: int) -> None:
    start, end = min(a, b, len(text)), min(max(a, b), len(text))
    want = comp._INTEGRATION_RE.search(text, start, end) is not None
    assert comp._integration_before(text, start, end) == want
    # the whole text, as the callers' windows end where a candidate starts
    assert comp._integration_before(text, 0, len(text)) == (comp._INTEGRATION_RE.search(text) is not None)


def test_integration_before_on_every_alternative() -> None:
    for phrase in _INTEGRATION_PHRASES:
        for tail in (" ", "\t", " the ", "  the\t", " \n", " the \n", "", "\n", " x "):
            text = "Teams " + phrase + tail
            assert comp._integration_before(text, 0, len(text)) == (
                comp._INTEGRATION_RE.search(text) is not None
            ), text



_ascii_texts = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=120),
    st.lists(
        st.sampled_from(["n't", "don't", "l'API", "well-known", "A", "b", "9", "42x", "x9", "_", "-", "'", ",", ":",
                         ";", "(", ")", "Best", "Buy", "NOT", "AML", " ", "\t", "\n", "1G", "3Com", "Zoom"]),
        max_size=30,
    ).map(" ".join),
)


@settings(max_examples=1000, deadline=None)
@given(_ascii_texts)
def test_ascii_twins_of_the_unicode_patterns_match_the_same(text: str) -> None:
    import unicodedata

    from services.extraction import sentiment

    assert sentiment._WORD_ASCII_RE.findall(text) == sentiment._WORD_RE.findall(
        unicodedata.normalize("NFC", text).replace("’", "'")
    )
    got = comp._DIGIT_HINT_ASCII_RE.search(text)
    want = comp._DIGIT_HINT_RE.search(text)
    assert (got and got.span()) == (want and want.span())


#: ``_CUE_AFTER_HINT_RE`` as first written (without the first-letter lookahead).
_CUE_AFTER_HINT_PLAIN = re.compile(
    r"[ \t](?:stands out|offers|provides|leads|excels|specializes|specialises|focuses on|is known for|"
    r"is best known for|is popular|is favou?red|delivers|rents|operates|is worth|is (?:a|an|the|another)[ \t])"
)
_hint_pieces = st.sampled_from(
    [
        "CoreWeave", "Lambda", "and", "or", "&", "y", "o", "et", "ou", "und", "oder", ",", ", ", "stands out",
        "offers", "provides", "leads", "excels", "specializes", "specialises", "focuses on", "is known for",
        "is best known for", "is popular", "is favored", "is favoured", "delivers", "rents", "operates", "is worth",
        "is a", "is an", "is the", "is another", "is", "X", " ", "\t", "\n", "é", "Ä", "S", "O",
    ]
)
_hint_texts = st.one_of(
    st.text(max_size=120),
    st.lists(_hint_pieces, max_size=30).map("".join),
    st.lists(_hint_pieces, max_size=30).map(" ".join),
)


@settings(max_examples=1500, deadline=None)
@given(_hint_texts)
def test_prose_hints_match_their_plain_forms(text: str) -> None:
    assert comp._enum_hint(text) == (_ENUM_HINT_PLAIN.search(text) is not None)
    assert [m.span() for m in comp._CUE_AFTER_HINT_RE.finditer(text)] == [
        m.span() for m in _CUE_AFTER_HINT_PLAIN.finditer(text)
    ]


_lower_pieces = st.sampled_from(
    ["eBay", "iPhone", "incident.io", "monday.com", "a.coM", ".io", ".com", "b.dev", ".app", ".so", "aÉ", "zZ", "ſ",
     "K", "é", ".", "a", "B", " ", "-", "_", "1", "x.ai.io", "..io", "a.iox"]
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_lower_pieces, max_size=30).map("".join)))
def test_lower_hint_alternatives_scanned_apart_start_where_the_hint_does(text: str) -> None:
    apart = sorted(
        [m.start() for m in comp._LOWER_CAMEL_HINT_RE.finditer(text)]
        + [m.start() for m in comp._LOWER_DOMAIN_HINT_RE.finditer(text)]
    )
    assert apart == [m.start() for m in _LOWER_HINT_PLAIN.finditer(text)]


_prev_pieces = st.sampled_from(
    ["AWS", "Lambda", "a.b", "x.", ".y", "-", "_", "'", "’", "&", " ", "  ", "\t", "\n", "\r", "\u00a0", "\u2028",
     "é", "日本", "1", "Co.", "x_y", "ſ"]
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_prev_pieces, max_size=20).map("".join)), st.integers(0, 70),
       st.integers(0, 70))
def test_prev_word_match_equals_the_pattern_search(text: str, a: int, b: int) -> None:
    from services.extraction import names

    lo, at = min(a, b, len(text)), min(max(a, b), len(text))
    got, want = names._prev_word_match(text, lo, at), names._PREV_WORD_RE.search(text, lo, at)
    assert (got and (got.span(), got.span(1))) == (want and (want.span(), want.span(1)))


_url_pieces = st.sampled_from(
    ["http://", "https://", "HTTPS://", "HtTp://", "www.", "WWW.", "wWw.", "httpwww.", "hhttp://", "h", "w", "x.io",
     "/", "@", ".", " ", "\n", "a", "(", ")", "]", "[", "<", ">", "'", "`", "|", "^", "{", "é", "ſ", "httpſ://"]
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_url_pieces, max_size=30).map("".join)))
def test_bare_urls_found_from_their_literals_equal_the_full_scan(text: str) -> None:
    got = [m.span() for m in tx._bare_urls(text, text.lower())]
    assert got == [m.span() for m in tx.BARE_URL_RE.finditer(text)]


def test_integration_alternatives_are_at_most_the_bound_long() -> None:
    import re._parser as sre_parse  # type: ignore[import-not-found]

    tree = sre_parse.parse(comp._INTEGRATION_RE.pattern, comp._INTEGRATION_RE.flags)
    alternation = sre_parse.SubPattern(tree.state, [tree[0]])
    assert alternation.getwidth()[1] == comp._INTEGRATION_ALT_CHARS



class _PlainReader(tx._Reader):
    """``text._Reader`` with its span and inline walk as first written (a span for every node, children read
    twice)."""

    def span(self, node: Any) -> tuple[int, int] | None:
        sm = node.srcmap
        if sm is None:
            return None
        s, e = sm
        if self._starts is not None:
            s, e = bisect.bisect_left(self._starts, s), bisect.bisect_left(self._starts, e)
        n = len(self.text)
        return min(s, n), min(e, n)

    def inline(self, nodes: Sequence[Any]) -> None:
        stack = list(reversed(nodes))
        text = self.text
        while stack:
            n = stack.pop()
            name = n.name
            if name == "text":
                continue
            sp = self.span(n)
            if name == "strong" and sp and sp[1] - sp[0] > 4:
                self.bold.append((sp[0] + 2, sp[1] - 2))
            elif name == "link" and sp:
                kids = [k for k in (self.span(c) for c in n.children) if k]
                ts = (kids[0][0], kids[-1][1]) if kids else (sp[0] + 1, sp[0] + 1)
                if text.startswith("](", ts[1]) or (not kids and text.startswith("[](", sp[0])):
                    self.links.append(tx.Link(sp, ts, text[ts[0] : ts[1]], str(n.meta.get("url", ""))))
            elif name == "code_inline" and sp:
                self.inline_code.append(sp)
                continue
            elif name == "image":
                continue
            if n.children:
                stack.extend(reversed(n.children))


_md_pieces = st.sampled_from(
    ["**Bold**", "__u__", "*em*", "`code`", "``a`b``", "[x](https://a.io)", "[](https://e.io)", "[1]", "[1]: https://b.io",
     "![i](https://a.io/i.png)", "<https://c.io>", "# H", "### 2. Lambda: x", "- item", "1. one", "  - nested", "> q",
     "| a | b |", "|---|---|", "| c | d |", "```", "~~s~~", "<b>x</b>", "é", "日本", "\x00", " ", "\n", "\n\n", "CoreWeave",
     "Together AI", ".", ","]
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(max_size=120), st.lists(_md_pieces, max_size=30).map("".join)))
def test_reader_walk_equals_the_plain_walk(text: str) -> None:
    parsed = text.replace("\x00", "\ufffd")
    fast, plain = tx._Reader(text, parsed), _PlainReader(text, parsed)
    fast.block(tx._tree(parsed))
    plain.block(tx._tree(parsed))
    for attr in ("units", "links", "bold", "code", "inline_code"):
        assert getattr(fast, attr) == getattr(plain, attr), attr


#: ``org_eval._CLAUSE_RE`` as first written (a leading lookahead, then the alternatives).
_CLAUSE_FIRST = re.compile(
    r"(?=[;,\s])(?:;|(?<=[.!?])\s+|\s[–—-]\s|,?\s+(?=(?:but|however|although|though|while|whereas|yet|except|"
    r"pero|aunque|mientras|sin embargo|aber|jedoch|doch|während|obwohl|mais|cependant|toutefois|tandis|alors qu|"
    r"bien que|sauf)\b))",
    re.IGNORECASE,
)
_clause_pieces = st.sampled_from(
    ["but", "BUT", "However", "ſin embargo", "ſauf", "SAUF", "K", "İ", "ı", "while", "Whereas", "though", "alors qu",
     "bien que", "während", "WÄHREND", "yet", "except", "doch", "obwohl", "butter", "a", "x", " ", "  ", ",", ", ",
     ";", ".", "!", "?", "–", "—", "-", "\n", "\t", "\u00a0", "\u2028", "ß"]
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_clause_pieces, max_size=20).map("".join)), st.integers(0, 70),
       st.integers(0, 70))
def test_clause_pattern_matches_as_first_written(text: str, a: int, b: int) -> None:
    from services.extraction import org_eval

    lo, hi = min(a, b, len(text)), min(max(a, b), len(text))
    for args in ((text,), (text, lo, hi)):
        got = [m.span() for m in org_eval._CLAUSE_RE.finditer(*args)]
        assert got == [m.span() for m in _CLAUSE_FIRST.finditer(*args)]
