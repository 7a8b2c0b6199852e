"""The extractor's fast paths agree with the plain definitions they replace (hypothesis): the token index, the
URL scans with their substring prefilters, the capital-letter-first prose patterns and their hint patterns; and
the servicer path's (issue 16 item 5): one-argument memo caches called as the function, units made without the
dataclass ``__init__``, the per-org identity cache, the response message built in place."""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.extraction import competitors as comp
from services.extraction import core, memo, names, server, urls
from services.extraction import text as tx
from vantage.extraction.v1 import extraction_pb2 as pb

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
        (comp._ENUM_RE, _ENUM_PLAIN, comp._enum_hint),
        (comp._SUFFIXED_RE, _SUFFIXED_PLAIN, comp._SUFFIXED_HINT_RE.search),
        (comp._CUE_AFTER_RE, _CUE_AFTER_PLAIN, comp._CUE_AFTER_HINT_RE.search),
    ):
        got = [(m.span(), m.groupdict()) for m in fast.finditer(text)]
        assert got == [(m.span(), m.groupdict()) for m in plain.finditer(text)]
        if got:
            assert hint(text)
    if comp._CUE_BEFORE_RE.search(text):
        assert any(w in text for w in comp._CUE_BEFORE_WORDS)


# --- the servicer path's fast paths (issue 16 item 5): memo caches, units, the org identity cache, the response --


_ints = st.integers(min_value=-5, max_value=10_000)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["heading", "item", "row", "sentence"]), _ints, _ints, _ints, _ints, st.text(max_size=12),
    _ints, st.lists(st.tuples(_ints, _ints), max_size=4).map(tuple), st.booleans(), _ints, _ints,
)
def test_units_made_without_the_dataclass_init_equal_the_constructed_ones(
    kind, start, end, body, level, group, index, cells, header, parent, section
) -> None:
    fast = tx._unit(kind, start, end, body, level, group, index, cells, header, parent, section)
    plain = tx.Unit(kind, start, end, body, level=level, group=group, index=index, cells=cells, header=header,
                    parent=parent, section=section)
    assert type(fast) is tx.Unit
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.start = 0  # type: ignore[misc]


@pytest.fixture
def scratch_memos():
    """Memo caches made by a test leave the registry (and the budget shares) as they were."""
    before = list(memo._registry)
    yield
    with memo._registry_lock:
        memo._registry[:] = before
        for state in memo._registry:
            state.resize()


def test_one_argument_memo_is_the_cache_and_answers_like_the_function(scratch_memos) -> None:
    calls: list[str] = []

    def shout(word: str) -> str:
        """Upper case."""
        calls.append(word)
        return word.upper()

    fast = memo.memo(shout)
    assert fast.__name__ == "shout" and fast.__doc__ == "Upper case." and fast.__wrapped__ is shout
    assert fast("ab") == "AB" and fast("ab") == "AB" and fast("cd") == "CD"
    assert calls == ["ab", "cd"] and fast.cache_len() == 2 and fast.cache_bytes() > 0
    # A function to its callers: true, hashable, equal only to itself (not to another empty cache).
    other = memo.memo(lambda w: w)
    assert fast and other and fast != other and fast == fast and len({fast, other}) == 2
    fast.cache_clear()
    assert fast.cache_len() == 0 and fast.cache_bytes() == 0 and fast("ab") == "AB" and calls[-1] == "ab"


def test_several_argument_memo_keys_on_how_arguments_are_passed(scratch_memos) -> None:
    calls: list[tuple[str, int]] = []

    def cut(word: str, n: int = 2) -> str:
        calls.append((word, n))
        return word[:n]

    fast = memo.memo(cut)
    assert fast("abcd") == "ab" and fast("abcd", 3) == "abc" and fast("abcd", n=3) == "abc" and fast("abcd") == "ab"
    assert calls == [("abcd", 2), ("abcd", 3), ("abcd", 3)]


def test_a_memo_entry_over_the_budget_is_returned_and_not_kept(scratch_memos) -> None:
    fast = memo.memo(lambda text: text * 2)
    big = "x" * (memo.share_bytes() + 1)
    assert fast(big) == big * 2 and fast.cache_len() == 0


_orgs = st.builds(
    core.Org,
    st.sampled_from(["Together AI", "Lambda, Inc.", "HuggingFace", "monday.com", "  Acme  Labs "]),
    st.sampled_from(["", "together.ai", "https://www.lambda.ai/x", "docs.example.co.uk"]),
    st.lists(st.sampled_from(["Together", "together.ai", "Lambda Labs", "Acme"]), max_size=3).map(tuple),
    st.lists(st.sampled_from(["Acme Cloud", "Together Inference"]), max_size=2).map(tuple),
)


def _org_brand_uncached(org: core.Org, cfg: core.ExtractionConfig) -> tuple[names.Brand, set[str]]:
    """:func:`core.org_brand` as it was before the per-org cache."""
    name = names.clean_name(org.name)
    forms = names.org_forms(name, org.domain, (*org.variations, *org.products), cfg.generic_terms)
    keys: set[str] = set()
    for f in forms:
        keys |= names.merge_keys(f)
    domains = {urls.registrable_domain(org.domain)} if org.domain.strip() else set()
    domains |= {urls.registrable_domain(v) for v in (name, *org.variations) if urls.looks_like_domain(v)}
    return names.Brand(display=name, forms=forms, keys=keys, is_org=True), {d for d in domains if "." in d}


@settings(max_examples=100, deadline=None)
@given(_orgs)
def test_the_cached_org_identity_equals_the_uncached_one_and_is_the_callers_to_mutate(org: core.Org) -> None:
    cfg = core.ExtractionConfig()
    first, domains = core.org_brand(org, cfg)
    assert (first, domains) == _org_brand_uncached(org, cfg)
    first.forms.add("mutated")
    first.keys.add("mutated")
    first.mentions.append((0, 1))
    domains.add("mutated.example")
    again, again_domains = core.org_brand(org, cfg)  # from the cache now
    assert (again, again_domains) == _org_brand_uncached(org, cfg)


def _response_as_before(a: core.Analysis) -> pb.ExtractResponse:
    """The response as the servicer built it before (sub-messages built apart, enum names through the wrapper)."""
    e = a.org_eval
    return pb.ExtractResponse(
        org_eval=pb.OrgEval(
            mentioned=e.mentioned, mention_count=e.mention_count, rank=e.rank, first_offset=e.first_offset,
            sentiment=pb.OrgEval.Sentiment.Value(e.sentiment), evidence=e.evidence,
            owned_citation_count=e.owned_citation_count, language=e.language,
            mentions=[
                pb.MentionSentiment(
                    offset=m.offset, sentiment=pb.OrgEval.Sentiment.Value(m.sentiment),
                    evidence=[pb.EvidenceSpan(start=v.start, end=v.end, text=v.text, polarity=v.polarity)
                              for v in m.evidence],
                )
                for m in e.mentions
            ],
        ),
        competitors=[pb.Competitor(name=c.name, rank=c.rank, mention_count=c.mention_count) for c in a.competitors],
        citations=[
            pb.ExtractedCitation(
                url=c.url, domain=c.domain, title=c.title, position=c.position,
                source=pb.ExtractedCitation.Source.Value(c.source), owned=c.owned, competitor=c.competitor,
                competitor_name=c.competitor_name,
            )
            for c in a.citations
        ],
    )


_ANSWERS = [
    "1. **Together AI** is great, cheaper than CoreWeave ([together.ai](https://together.ai/x)).\n"
    "2. **CoreWeave** is expensive. See https://coreweave.com/a and [Lambda](https://lambda.ai).",
    "Lambda and RunPod are fine; Together AI is slow and unreliable, but cheap.\n\n[1]: https://runpod.io \"R\"",
    "No names here.",
    "| Provider | Price |\n|---|---|\n| Together AI | low |\n| Crusoe | high |\n",
]


@pytest.mark.parametrize("answer", _ANSWERS)
def test_the_response_built_in_place_serialises_like_the_one_built_apart(answer: str) -> None:
    org = core.Org("Together AI", "together.ai", ("Together",))
    a = core.analyze(answer, org, ["CoreWeave", "Lambda"], [("https://crusoe.ai/p", "Crusoe")])
    got = pb.ExtractResponse()
    server._fill_org_eval(got.org_eval, a.org_eval)
    server._add_competitors(got.competitors, a.competitors)
    server._add_citations(got.citations, a.citations)
    want = _response_as_before(a)
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    assert server._org_eval_pb(a.org_eval) == want.org_eval


# Patterns with a redundant leading lookahead (the first character every match has), against the patterns without it.
_BARE_URL_PLAIN = re.compile(r"(?<![\w@/.])(?:https?://|www\.)[^\s<>\"'`\[\]{}|\\^]+", re.IGNORECASE)
_SENT_END_PLAIN = re.compile(r"[.!?]+[\"')\]*_]*(?=\s+[\"'(\[*_¿¡]*[A-Z0-9ÁÉÍÓÚÑÄÖÜÀÂÇÈÊÎÔ])")
_CLAUSE_PLAIN = re.compile(
    r";|(?<=[.!?])\s+|\s[–—-]\s|,?\s+(?=(?:but|however|although|though|while|whereas|yet|except|pero|aunque|"
    r"mientras|sin embargo|aber|jedoch|doch|während|obwohl|mais|cependant|toutefois|tandis|alors qu|bien que|"
    r"sauf)\b)",
    re.IGNORECASE,
)
_url_pieces = st.sampled_from(
    ["http://", "https://", "HTTPS://", "HtTp://", "httpſ://", "www.", "WWW.", "wWw.", "h", "w", "x.io", "/", "@",
     ".", " ", "\n", "a", "é", "K", "(", ")", "]", "<", "but", "However", "SIN EMBARGO", ";", ",", "–", "-", "!",
     "?", "e.g.", "Inc.", "A", "1", "¿", "*", "\u00a0", "\u2028"]
)
_url_texts = st.one_of(st.text(max_size=120), st.lists(_url_pieces, max_size=40).map("".join))


@settings(max_examples=500, deadline=None)
@given(_url_texts)
def test_patterns_with_a_first_character_lookahead_match_as_without(text: str) -> None:
    from services.extraction import org_eval

    for fast, plain in (
        (tx.BARE_URL_RE, _BARE_URL_PLAIN),
        (tx._SENT_END_RE, _SENT_END_PLAIN),
        (org_eval._CLAUSE_RE, _CLAUSE_PLAIN),
    ):
        assert [m.span() for m in fast.finditer(text)] == [m.span() for m in plain.finditer(text)]
        for pos in range(0, len(text), 7):  # finditer/search/match from inside the text (lookbehinds before pos)
            got, want = fast.search(text, pos), plain.search(text, pos)
            assert (got and got.span()) == (want and want.span())


_lower_pieces = st.sampled_from(
    ["eBay", "iPhone", "incident.io", "monday.com", "x-1.ai", "-a.io", "9a.co", "a.coM", ".io", ".com", "b.dev",
     "Labs", "&", " ", "\t", "\n", "aB", "aÉ", "é", "ſ", "@", "/", "#", "'", "’", "+", "-", ".", "x", "Q", "1",
     "mySQL", "a.so.b", "a.app", "a.co.uk", "getX", "zZ"]
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_lower_pieces, max_size=30).map("".join),
                 st.lists(_lower_pieces, max_size=30).map(" ".join)))
def test_lower_case_names_found_from_their_hints_equal_the_full_scan(text: str) -> None:
    got = [(m.span(), m.group(0)) for m in comp._lower_name_matches(text)]
    assert got == [(m.span(), m.group(0)) for m in comp._LOWER_NAME_RE.finditer(text)]


def _blank_reference(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        tx._blank(chars, text, s, e)
    return "".join(chars)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab \n\r\té", max_size=40).flatmap(
    lambda t: st.tuples(st.just(t), st.lists(st.tuples(st.integers(0, len(t)), st.integers(0, len(t))), max_size=6))
))
def test_blanking_spans_from_slices_equals_blanking_the_character_list(case) -> None:
    text, spans = case
    assert tx.blank_spans(text, spans) == _blank_reference(text, spans)


def _phrase_reference(doc: tx.Doc, words: list[str], case_sensitive: bool) -> list[tuple[int, int]]:
    """:meth:`Doc.find_phrase` by its definition: consecutive tokens equal to ``words`` (folded unless
    case-sensitive), separated by whitespace only, the first not right after ``@``, ``/`` or ``#``."""
    toks = doc.tokens
    out = []
    for i in range(len(toks) - len(words) + 1):
        run = toks[i : i + len(words)]
        same = all(
            (t.text == w) if case_sensitive else (t.text.casefold() == w.casefold()) for t, w in zip(run, words, strict=True)
        )
        spaced = all(doc.masked[a.end : b.start].isspace() for a, b in itertools.pairwise(run))
        if same and spaced and not (run[0].start > 0 and doc.masked[run[0].start - 1] in "@/#"):
            out.append((run[0].start, run[-1].end))
    return out


@settings(max_examples=300, deadline=None)
@given(_texts, st.lists(st.sampled_from(["together", "Together", "AI", "ai", "lambda", "CoreWeave", "x_y", "Groq",
                                         "é", "Straße", "strasse"]), min_size=1, max_size=2), st.booleans())
def test_find_phrase_equals_its_definition(text: str, words: list[str], case_sensitive: bool) -> None:
    doc = tx.parse(text + " " + " ".join(words))
    assert list(doc.find_phrase(words, case_sensitive=case_sensitive)) == _phrase_reference(doc, words, case_sensitive)


# Issue 16 item 5, round 2: the discovery rules' hint tests before their patterns, and the backwards word match.
_tails = st.lists(
    st.sampled_from(
        ["such as", "SUCH AS", "ſuch aſ", "like", "LIKE", "including", "e.g.", "e.g.,", "E.G.,", "como", "wie",
         "comme", "features", "Add-ons", "modules", "plugins", "in", "near", "nach", "à", "x_y", "é", "日本", "1",
         " ", "  ", "\t", "\n", "*", "**", "_", "__", "(", ",", ".", "Lambda", " apps", " store", " or", "’s", "'s"]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.one_of(_texts, _tails), st.integers(0, 60), st.integers(0, 60))
def test_cue_and_word_before_fast_paths_equal_their_patterns(text: str, a: int, b: int) -> None:
    at = min(len(text), max(a, b))
    for lo in (max(0, at - 40), max(0, at - 20), min(a, b, at)):
        assert comp._feature_cue_before(text, lo, at) == bool(comp._FEATURE_CUE_RE.search(text, lo, at))
        m = comp._PREV_WORD_RE.search(text, lo, at)
        assert comp._prev_word(text, lo, at) == (m.group(1) if m else None)


def test_feature_cue_last_characters_are_every_case_insensitive_match() -> None:
    import sys

    last = re.compile("[sego.,]", re.IGNORECASE)
    assert {chr(i) for i in range(sys.maxunicode + 1) if last.fullmatch(chr(i))} == comp._FEATURE_CUE_LAST


@settings(max_examples=300, deadline=None)
@given(st.one_of(_texts, _tails))
def test_possessive_and_attributive_hints_are_necessary(text: str) -> None:
    if comp._INNER_POSSESSIVE_RE.search(text):
        assert "'" in text or "’" in text
    for pos in range(len(text) + 1):
        if comp._ATTRIBUTIVE_RE.match(text, pos):
            assert text[pos : pos + 1] in comp._ATTRIBUTIVE_FIRST


@settings(max_examples=400, deadline=None)
@given(st.one_of(_texts, _tails, st.lists(st.sampled_from(["AI", "Labs", "Inc", "Technologies", " ", "\t", "x", "\n"]),
                                          max_size=8).map("".join)))
def test_suffixed_hint_equals_its_pattern(text: str) -> None:
    assert comp._suffixed_hint(text) == bool(comp._SUFFIXED_HINT_RE.search(text))
