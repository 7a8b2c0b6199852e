"""The extraction memo caches are bounded by bytes (issue 11 item 8) and do not change any result."""

from __future__ import annotations

import pytest

from services.extraction import core, memo, names, text, urls
from shared.config import Settings


@pytest.fixture
def budget():
    """Run with a chosen total budget; restore the configured default afterwards."""
    yield memo.configure
    memo.configure(Settings().extraction_cache_max_bytes)


def _answer(i: int) -> str:
    return (
        f"1. **Vendor{i} Analytics Platform** — strong for teams, see https://vendor{i}.example.co.uk/path/{i}\n"
        f"2. **Other{i} Cloud Suite** by Other{i} Inc. is cheaper ([docs](https://docs.other{i}.example.com/{i}))\n"
        f"3. Acme{i} and Zeta{i} Labs are also used by {i} companies in Lisbon.\n"
    )


def _run(n: int) -> list[object]:
    org = core.Org("Vendor0 Analytics", "vendor0.example.co.uk", ())
    return [core.analyze(_answer(i), org, [f"Other{i} Cloud Suite"], [], core.ExtractionConfig()) for i in range(n)]


def test_distinct_answers_stay_within_the_byte_budget(budget):
    budget(256 * 1024)
    _run(300)
    held = memo.total_bytes()
    assert 0 < held <= 256 * 1024
    # Each cache stays inside its own share, and the busiest ones evicted (they hold fewer entries than calls made).
    assert names.clean_name.cache_bytes() <= memo.share_bytes()
    assert 0 < names.clean_name.cache_len() < 300


def test_results_are_the_same_with_and_without_memoisation(budget):
    budget(0)
    assert memo.total_bytes() == 0
    uncached = _run(40)
    assert memo.total_bytes() == 0
    budget(64 * 1024 * 1024)
    assert _run(40) == uncached  # first pass fills the caches
    assert _run(40) == uncached  # second pass answers from them
    assert memo.total_bytes() > 0


def test_an_entry_larger_than_a_cache_share_is_returned_but_not_kept(budget):
    budget(64 * 1024 * len(memo._registry))  # 64 KiB per cache
    memo.clear_all()
    big = "# Title\n\n" + "word " * 40_000  # ~200 KB of Markdown: its plain text alone exceeds 64 KiB
    before = text.plain.cache_len()
    assert text.plain(big).startswith("# Title word")
    assert text.plain.cache_len() == before
    assert text.plain.cache_bytes() <= 64 * 1024
    assert urls.host_of("https://Example.COM/x") == "example.com"
    assert urls.host_of.cache_len() == 1


def test_negative_budget_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        memo.configure(-1)
