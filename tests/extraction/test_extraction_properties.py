"""Properties of the extractor over arbitrary and Markdown-shaped text (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.extraction.core import Org, analyze
from services.extraction.text import parse

ORGS = [Org("Together AI", "together.ai", ("Together",)), Org("Runway", "runwayml.com"), Org("CoreWeave", "")]

_words = st.sampled_from(
    [
        "CoreWeave",
        "Lambda",
        "Together AI",
        "together",
        "runway",
        "Runway",
        "**Nebius**",
        "[RunPod](https://runpod.io)",
        "https://www.together.ai/pricing?utm_source=x",
        "is",
        "a",
        "great",
        "expensive",
        "not",
        "GPU",
        "cloud",
        ".",
        ",",
        "and",
        "Pricing",
        "www.coreweave.com/x).",
        "[1]",
        "<https://lambda.ai>",
        "|",
        "#",
        "-",
        "1.",
        "**",
        "`",
        "(",
        ")",
        "Vast.ai",
        "AWS Lambda",
        "é",
        "日本",
        "\t",
    ]
)
_line = st.lists(_words, max_size=12).map(" ".join)
_markdown = st.lists(
    st.one_of(
        _line,
        _line.map(lambda s: "### " + s),
        _line.map(lambda s: "1. " + s),
        _line.map(lambda s: "  - " + s),
        st.tuples(_line, _line).map(lambda t: f"| {t[0]} | {t[1]} |\n|---|---|\n| {t[1]} | x |"),
        st.just("```"),
        st.just(""),
    ),
    max_size=12,
).map("\n".join)
_any_text = st.one_of(st.text(max_size=300), _markdown)


def _check(answer: str, org: Org) -> None:
    a = analyze(answer, org, ["Lambda", "Nebius"], [("https://together.ai/a", "t"), ("not a url", "")])
    e = a.org_eval
    # rank 0 iff not mentioned; offsets and counts agree with it.
    assert (e.rank == 0) == (not e.mentioned)
    assert (e.first_offset == -1) == (not e.mentioned) == (e.mention_count == 0)
    if e.mentioned:
        assert 0 <= e.first_offset < len(answer)
        assert e.evidence
    assert e.sentiment in ("POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED")
    # Citation positions are 1..n, URLs unique.
    assert [c.position for c in a.citations] == list(range(1, len(a.citations) + 1))
    assert len({c.url for c in a.citations}) == len(a.citations)
    assert all(c.source in ("PROVIDER", "INLINE_LINK", "BARE_URL") for c in a.citations)
    assert all(not (c.owned and c.competitor) for c in a.citations)
    assert e.owned_citation_count == sum(c.owned for c in a.citations)
    # One ranking shared by the org and the competitors.
    ranks = sorted([c.rank for c in a.competitors] + ([e.rank] if e.mentioned else []))
    assert ranks == list(range(1, len(ranks) + 1))
    assert all(c.mention_count >= 1 and c.name for c in a.competitors)
    assert len({c.name.casefold() for c in a.competitors}) == len(a.competitors)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_text, st.sampled_from(ORGS))
def test_never_raises_and_invariants_hold(answer: str, org: Org) -> None:
    _check(answer, org)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_parse_keeps_offsets(text: str) -> None:
    doc = parse(text)
    assert len(doc.masked) == len(text)
    last = -1
    for u in doc.units:
        assert 0 <= u.start <= u.body <= u.end <= len(text)
        assert u.start >= last  # document order, no overlap
        last = u.end


def test_large_answer_is_fast_enough() -> None:
    import time

    block = (
        "1. **CoreWeave** – Large clusters; see https://coreweave.com/x?utm_source=y.\n"
        "2. **Together AI** – Reliable inference. Keep an eye on your cash runway.\n"
        "| Lambda | $2.99 | simple |\n"
    )
    answer = block * 400  # ≈ 90 kB
    start = time.perf_counter()
    a = analyze(answer, ORGS[0])
    assert time.perf_counter() - start < 10
    assert a.org_eval.mention_count == 400


@pytest.mark.parametrize(
    "answer",
    [
        "Runway " * 14_000,
        "**a " * 25_000,
        "Aaa " * 25_000,
        "A, " * 30_000 + "and B",
        "[" * 50_000 + "]" * 50_000,
        "https://a.io/" + "(" * 25_000 + "x" + ")" * 25_000,
        "# " + "a # " * 25_000,
        "Done. " * 16_000,
        "Teams also consider Abc, Bcd and Cde Labs. **Def** is a strong option.\n1. **Efg** – Fgh.\n" * 1_200,
    ],
    ids=[
        "repeated-name",
        "unclosed-bold",
        "capitalised-words",
        "long-enumeration",
        "brackets",
        "parens-url",
        "heading-hashes",
        "many-sentences",
        "many-candidates",
    ],
)
def test_adversarial_inputs_stay_fast(answer: str) -> None:
    """No regex may backtrack quadratically: ~100 kB of hostile Markdown is read in seconds, not minutes."""
    import time

    start = time.perf_counter()
    analyze(answer, ORGS[1])
    assert time.perf_counter() - start < 15
