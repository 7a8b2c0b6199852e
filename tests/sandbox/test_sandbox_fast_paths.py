"""The sandbox's CPU fast paths (issue 16 item 6) against their plain definitions: memoised and prefiltered code
must answer exactly what the direct computation answers."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from services.sandbox import analyst
from services.sandbox.corpus import _tokenize, load_corpus, tokenize

_LINES = st.text(alphabet=st.sampled_from("ab .\n\r\x0b\x85\u2028"), max_size=60)


@given(_LINES, st.integers(min_value=0, max_value=4))
def test_first_lines_is_splitlines_prefix(text: str, n: int) -> None:
    assert analyst._first_lines(text, n) == text.splitlines()[:n]


def test_first_lines_beyond_the_prefix() -> None:
    text = "x" * 5000 + "\r\n" + "y" * 10 + "\nz"
    assert analyst._first_lines(text, 2) == text.splitlines()[:2]


_WORDS = st.sampled_from(["Acme", "acme", "ACME", "Acme Labs", "labs", "x", "Acme.", "Acmes", "é", "K"])


@settings(max_examples=300)
@given(st.lists(_WORDS, max_size=8).map(" ".join), st.sampled_from(["Acme", "Acme Labs", "acme labs", "Kelvin K"]))
def test_mentions_prefilter_matches_the_regexes(text: str, company: str) -> None:
    block = analyst.Block(url="https://example.org/page", text=text)
    first = company.split()[0]
    plain = bool(
        re.search(rf"(?<!\w){re.escape(company)}(?!\w)", text, re.IGNORECASE)
        or re.search(rf"(?<!\w){re.escape(first)}(?!\w)", text)
    )
    assert analyst._mentions(block, company) == plain


@given(st.text(max_size=80))
def test_sentence_signals_is_the_plain_scan(sent: str) -> None:
    plain = []
    for sig, w, rx, negatable in analyst._COMPILED:
        hits = sum(1 for m in rx.finditer(sent) if not (negatable and analyst._NEG.search(sent[: m.start()])))
        if hits:
            plain.append((sig, w, hits))
    assert analyst.sentence_signals(sent) == tuple(plain)


def test_sentence_signals_on_a_training_sentence() -> None:
    sig = {s: h for s, _, h in analyst.sentence_signals("We train our own foundation models on H100 GPUs.")}
    assert sig, "a GPU-training sentence must raise signals"


@given(st.text(alphabet=st.sampled_from("ab.c-'1 Together.ai GPU"), max_size=60))
def test_tokenize_cache_is_plain(text: str) -> None:
    assert tokenize(text) == _tokenize(text)
    tokenize(text).append("mutated")  # callers get their own list
    assert tokenize(text) == _tokenize(text)


def test_ranking_cache_returns_what_ranking_returns() -> None:
    corpus = load_corpus()
    for q in ("Together AI GPU compute", "Anthropic funding employees", "payroll software", "zzzz"):
        direct = corpus._rank(q, 20, None, None)
        first = corpus.search(q, 20)
        again = corpus.search(q, 20)
        assert [(h.page.url, h.score, h.bm25) for h in first] == [(h.page.url, h.score, h.bm25) for h in direct]
        assert again == first and again is not first
        again.clear()  # a caller's list is its own
        assert corpus.search(q, 20) == first


def test_classify_is_the_same_cold_and_warm() -> None:
    corpus = load_corpus()
    pages = [p for p in corpus.pages if p.company == corpus.pages[0].company][:4]
    prompt = "Company: Example Co\nDomain: example.org\n\n" + "\n\n".join(
        f"[{i}] {p.title}\nURL: {p.url}\nScore: 0.80\n{p.content}" for i, p in enumerate(pages, 1)
    )
    analyst._text_signals.cache_clear()
    analyst.sentence_signals.cache_clear()
    cold = analyst.classify(prompt, corpus).as_dict()
    warm = analyst.classify(prompt, corpus).as_dict()
    assert cold == warm
    assert analyst._text_signals.cache_info().hits > 0
