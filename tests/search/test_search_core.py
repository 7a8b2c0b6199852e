"""Unit tests of the pure search core: validation, filtering, sorting, credits/cost, the LLM-context formatter."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.search.core import (
    TRUNCATION_MARKER,
    Defaults,
    Hit,
    SearchParams,
    clean_text,
    company_query,
    cost_usd,
    credits_for,
    cut_text,
    filter_hits,
    format_llm_context,
    host_matches,
    normalise_domain,
    safe_cut_index,
    sort_hits,
    source_cap_for,
    validate_company,
    validate_search,
)
from shared.errors import InvalidArgument

TEMPLATE = "{company} GPU compute infrastructure machine learning training inference funding employees"


def hit(url: str, score: float, text: str = "Some text.", raw: str = "", title: str = "") -> Hit:
    return Hit(title=title or url, url=url, content=text, raw_content=raw, score=score)


def search(**kw: object):
    base: dict[str, object] = dict(
        query="acme", max_results=None, search_depth="", include_raw_content=None, min_score=None
    )
    base.update(kw)
    return validate_search(**base)  # type: ignore[arg-type]


def violations(exc: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return dict(exc.value.violations)


# --- validation -----------------------------------------------------------------------------------------------


def test_defaults_fill_unset_fields() -> None:
    spec = search(query="  Acme   Corp  ")
    assert spec.params == SearchParams("Acme Corp", 20, "advanced", True, (), ())
    assert spec.min_score == 0.4
    assert spec.context_char_budget == 0


def test_explicit_values_win_over_defaults() -> None:
    spec = search(max_results=5, search_depth="Basic", include_raw_content=False, min_score=0.0)
    assert (spec.params.max_results, spec.params.search_depth, spec.params.include_raw_content) == (5, "basic", False)
    assert spec.min_score == 0.0


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   \n "}, "query"),
        ({"query": "x" * 401}, "query"),
        ({"max_results": 0}, "max_results"),
        ({"max_results": 21}, "max_results"),
        ({"max_results": -1}, "max_results"),
        ({"search_depth": "deep"}, "search_depth"),
        ({"min_score": 1.01}, "min_score"),
        ({"min_score": -0.1}, "min_score"),
        ({"min_score": float("nan")}, "min_score"),
        ({"include_domains": ["a.com"] * 301}, "include_domains"),
        ({"exclude_domains": ["a.com"] * 151}, "exclude_domains"),
        ({"include_domains": ["ok.com", " "]}, "include_domains[1]"),
        ({"context_char_budget": -1}, "context_char_budget"),
    ],
)
def test_invalid_fields_are_named(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        search(**kw)
    assert field in violations(exc)
    assert field.split("[")[0] in exc.value.message


def test_every_violation_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as exc:
        search(query="", max_results=99, search_depth="nope", min_score=2.0)
    assert set(violations(exc)) == {"query", "max_results", "search_depth", "min_score"}


def test_domain_limits_are_inclusive_and_domains_normalised() -> None:
    spec = search(include_domains=[f"d{i}.com" for i in range(300)], exclude_domains=["HTTPS://WWW.X.com/a?b"] * 150)
    assert len(spec.params.include_domains) == 300
    assert spec.params.exclude_domains == ("www.x.com",)
    assert normalise_domain("user@Example.COM:443/x") == "example.com"


def test_cache_key_ignores_min_score_whitespace_and_domain_order() -> None:
    a = search(query="acme  gpu", min_score=0.1, include_domains=["b.com", "a.com"]).params
    b = search(query=" acme gpu ", min_score=0.9, include_domains=["a.com", "b.com"]).params
    assert a.cache_key() == b.cache_key()
    assert a.cache_key() != search(query="acme gpu", search_depth="basic").params.cache_key()
    assert a.cache_key() != search(query="acme gpu", max_results=3).params.cache_key()


def test_company_query_and_spec() -> None:
    assert company_query(TEMPLATE, "  Together  AI ") == "Together AI " + TEMPLATE.removeprefix("{company} ")
    assert company_query("{company} site {domain}", "Acme", "") == "Acme site"
    spec = validate_company(
        company="Acme", domain="https://www.Acme.ai/", template=TEMPLATE, search_depth="", min_score=None,
        max_results=None, context_char_budget=0, defaults=Defaults(context_char_budget=60_000),
    )
    assert spec.context_char_budget == 60_000
    assert spec.official_domain == "www.acme.ai"
    assert spec.params.include_domains == ()  # the domain tags results, it does not restrict them
    assert spec.params.query.startswith("Acme GPU compute")


def test_company_fetches_page_text_but_returns_it_only_on_request() -> None:
    base: dict[str, object] = dict(
        company="Acme", domain="acme.ai", template=TEMPLATE, search_depth="", min_score=None, max_results=None,
        context_char_budget=0,
    )
    lean = validate_company(**base)  # type: ignore[arg-type]
    assert lean.params.include_raw_content  # fetched: the LLM context is built from it
    assert not lean.return_raw_content  # …but not returned a second time
    raw = validate_company(**base, include_raw_content=True)  # type: ignore[arg-type]
    assert raw.return_raw_content
    assert raw.params.cache_key() == lean.params.cache_key()  # one Tavily fetch serves both
    assert not validate_company(**base, include_raw_content=False).return_raw_content  # type: ignore[arg-type]
    # Raw fetching configured off: asking for the text fetches it (another cache entry); not asking does not.
    off = Defaults(include_raw_content=False)
    assert not validate_company(**base, defaults=off).params.include_raw_content  # type: ignore[arg-type]
    asked = validate_company(**base, include_raw_content=True, defaults=off)  # type: ignore[arg-type]
    assert asked.params.include_raw_content and asked.return_raw_content


def test_search_returns_page_text_as_fetched() -> None:
    assert search().return_raw_content and search().params.include_raw_content  # unset = true, as before
    spec = search(include_raw_content=False)
    assert not spec.return_raw_content and not spec.params.include_raw_content


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"company": " "}, "company"),
        ({"company": "x" * 400}, "company"),
        ({"domain": "not a domain"}, "domain"),
        ({"search_depth": "slow"}, "search_depth"),
        ({"context_char_budget": -5}, "context_char_budget"),
    ],
)
def test_company_validation(kw: dict[str, object], field: str) -> None:
    base: dict[str, object] = dict(
        company="Acme", domain="", template=TEMPLATE, search_depth="", min_score=None, max_results=None,
        context_char_budget=0,
    )
    base.update(kw)
    with pytest.raises(InvalidArgument) as exc:
        validate_company(**base)  # type: ignore[arg-type]
    assert field in violations(exc)


# --- filtering, sorting, credits ------------------------------------------------------------------------------


def test_filter_keeps_scores_at_or_above_threshold_sorted() -> None:
    hits = [hit("https://c", 0.39), hit("https://b", 0.4), hit("https://a", 0.9), hit("https://d", 0.1)]
    kept, dropped = filter_hits(hits, 0.4)
    assert [h.url for h in kept] == ["https://a", "https://b"]
    assert dropped == 2
    assert filter_hits(hits, 0.0) == (sort_hits(hits), 0)
    assert filter_hits([], 0.4) == ([], 0)


def test_sort_is_by_score_then_url() -> None:
    hits = [hit("https://z", 0.5), hit("https://a", 0.5), hit("https://m", 0.7)]
    assert [h.url for h in sort_hits(hits)] == ["https://m", "https://a", "https://z"]


@pytest.mark.parametrize(
    ("depth", "reported", "expected"),
    [("advanced", None, 2), ("basic", None, 1), ("fast", None, 1), ("ultra-fast", None, 1), ("basic", 2, 2), ("advanced", 0, 0)],
)
def test_credits(depth: str, reported: int | None, expected: int) -> None:
    assert credits_for(depth, reported) == expected


def test_cost() -> None:
    assert cost_usd(2, 0.008) == pytest.approx(0.016)
    assert cost_usd(1, 0.008) == pytest.approx(0.008)
    assert cost_usd(0, 0.008) == 0.0


def test_host_matches() -> None:
    assert host_matches("https://www.together.ai/about", "together.ai")
    assert host_matches("https://docs.together.ai/x", "www.together.ai")
    assert not host_matches("https://nottogether.ai/", "together.ai")
    assert not host_matches("https://together.ai/", "")


# --- text cutting ---------------------------------------------------------------------------------------------


def test_cut_prefers_paragraph_then_sentence_then_space() -> None:
    text = "First paragraph here.\n\nSecond paragraph. It goes on and on"
    assert cut_text(text, 40) == "First paragraph here."
    assert cut_text("One sentence here. Two sentence there and more", 30) == "One sentence here."
    assert cut_text("word " * 10, 12) == "word word"
    assert cut_text("abcdefghij", 4) == "abcd"
    assert cut_text("short", 10) == "short"
    assert cut_text("anything", 0) == ""


def test_cut_never_splits_a_grapheme() -> None:
    assert cut_text("e\u0301" * 10, 5) == "e\u0301e\u0301"  # e + combining acute, never a bare accent
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # ZWJ sequence
    assert cut_text("ab" + family, 4) == "ab"
    flags = "\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea"  # FR DE
    assert cut_text(flags, 3) == flags[:2]
    assert safe_cut_index("a\U0001f44d\U0001f3fd", 2) == 1  # thumbs-up + skin tone stay together


def test_clean_text_repairs_surrogates() -> None:
    assert clean_text("a\ud83d\ude00b") == "a\U0001f600b"  # a pair split in two code points is joined
    assert clean_text("a\ud83db") == "a\ufffdb"  # a lone surrogate is replaced
    clean_text("x\udc00y\x00").encode("utf-8")


# --- LLM context ----------------------------------------------------------------------------------------------


def test_context_format_and_order() -> None:
    hits = [
        hit("https://b.com", 0.5, text="Snippet B."),
        hit("https://a.com", 0.9, text="Snippet A.", raw="Raw A.", title="Page A"),
        hit("https://c.com", 0.7, text="", raw=""),  # nothing to show: left out, not a bare header
    ]
    text, truncated = format_llm_context(hits, 10_000, 5_000)
    assert text == (
        "[1] Page A\nURL: https://a.com\nScore: 0.90\nRaw A.\n"
        "\n"
        "[2] https://b.com\nURL: https://b.com\nScore: 0.50\nSnippet B.\n"
    )
    assert not truncated


def test_context_tags_company_pages() -> None:
    text, _ = format_llm_context([hit("https://www.acme.ai/about", 0.8)], 1000, 1000, official_domain="acme.ai")
    assert "Score: 0.80\nSource: company website\nSome text." in text


def test_context_truncates_at_boundary_with_marker() -> None:
    body = ("This is a sentence about GPUs. " * 40).strip()
    text, truncated = format_llm_context([hit("https://a.com", 0.9, raw=body)], 400, 10_000)
    assert truncated
    assert len(text) <= 400
    assert text.endswith("GPUs." + TRUNCATION_MARKER + "\n")


def test_context_per_source_cap() -> None:
    hits = [hit(f"https://s{i}.com", 0.9 - i / 10, raw="word " * 500) for i in range(3)]
    text, truncated = format_llm_context(hits, 100_000, 300)
    blocks = text.split("\n\n[")
    assert len(blocks) == 3 and truncated
    assert all(len(b) <= 301 for b in blocks)


def test_context_drops_sources_that_do_not_fit() -> None:
    hits = [hit("https://a.com", 0.9, raw="A" * 300), hit("https://b.com", 0.8, raw="B" * 300)]
    text, truncated = format_llm_context(hits, 360, 1000)
    assert "https://a.com" in text and "https://b.com" not in text
    assert truncated
    assert format_llm_context(hits, 20, 1000) == ("", True)
    assert format_llm_context([], 1000, 1000) == ("", False)


# --- properties -----------------------------------------------------------------------------------------------

#: Text mixing arbitrary characters with boundaries, combining sequences, ZWJ emoji, flags and lone surrogates.
_text = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["\n\n", ". ", " ", "e\u0301", "\U0001f468\u200d\U0001f469", "\U0001f1eb\U0001f1f7", "\ud83d"]),
    ),
    max_size=30,
).map("".join)
_hits = st.lists(
    st.builds(
        Hit,
        title=st.text(max_size=40),
        url=st.from_regex(r"https://[a-z]{1,8}\.(com|ai)/[a-z0-9]{0,6}", fullmatch=True),
        content=_text,
        raw_content=st.one_of(st.just(""), _text),
        score=st.floats(0, 1),
    ),
    max_size=12,
    unique_by=lambda h: h.url,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(hits=_hits, budget=st.integers(0, 3000), cap=st.integers(0, 1500), min_score=st.floats(0, 1))
def test_context_properties(hits: list[Hit], budget: int, cap: int, min_score: float) -> None:
    kept, dropped = filter_hits(hits, min_score)
    assert len(kept) + dropped == len(hits)
    assert all(h.score >= min_score for h in kept)
    text, _ = format_llm_context(kept, budget, cap)
    assert len(text) <= budget
    text.encode("utf-8")  # strict: raises on a lone surrogate
    urls = re.findall(r"^URL: (.*)$", text, flags=re.M)
    kept_urls = [h.url for h in kept]
    assert set(urls) <= set(kept_urls)
    assert urls == [u for u in kept_urls if u in urls]  # highest score first
    scores = [float(s) for s in re.findall(r"^Score: (\d\.\d\d)$", text, flags=re.M)]
    assert scores == sorted(scores, reverse=True)
    if cap > 0:
        blocks = re.split(r"\n(?=\[\d+\] )", text) if text else []
        assert all(len(b) <= cap for b in blocks)


@given(text=_text, limit=st.integers(0, 500))
def test_cut_properties(text: str, limit: int) -> None:
    out = cut_text(clean_text(text), limit)
    assert len(out) <= limit
    assert clean_text(text).startswith(out)
    out.encode("utf-8")


def test_source_cap_scales_down_with_the_budget() -> None:
    d = Defaults(context_char_budget=60_000, context_source_char_cap=15_000)
    assert [source_cap_for(b, d) for b in (120_000, 60_000, 30_000, 7_500, 3)] == [15_000, 15_000, 7_500, 1_875, 1]
    assert search(context_char_budget=30_000, defaults=d).context_source_char_cap == 7_500
    spec = validate_company(
        company="Acme", domain="", template=TEMPLATE, search_depth="", min_score=None, max_results=None,
        context_char_budget=15_000, defaults=d,
    )
    assert (spec.context_char_budget, spec.context_source_char_cap) == (15_000, 3_750)


def test_cut_drops_a_dangling_heading() -> None:
    text = "Intro paragraph that is long enough.\n\n## Next section\n\nBody of the next section goes here."
    assert cut_text(text, 60) == "Intro paragraph that is long enough."
