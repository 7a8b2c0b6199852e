"""In-memory caches are bounded by bytes, not entries (issue 11, item 8): the search cache weighs each page by its
deep size in memory and evicts least recently used pages past ``search_cache_max_bytes``, whatever the pages hold."""

from __future__ import annotations

import sys

from services.search.cache import TTLCache, deep_sizeof
from services.search.core import Hit, TavilyPage
from services.search.engine import SearchEngine, page_bytes
from shared.config import Settings


def page(i: int, text_chars: int, char: str = "x") -> TavilyPage:
    hit = Hit(title=f"t{i}", url=f"https://example.com/{i}", content=char * text_chars, raw_content="", score=0.9)
    return TavilyPage(query=f"q{i}", hits=(hit,), credits=1)


def test_deep_sizeof_counts_what_a_page_holds_in_bytes_not_characters() -> None:
    ascii_page, wide_page = page(1, 100_000), page(2, 100_000, "😀")
    assert deep_sizeof(ascii_page) >= 100_000
    assert deep_sizeof(wide_page) >= 400_000  # 4 bytes per code point outside the BMP (PEP 393)
    assert deep_sizeof(wide_page) > sys.getsizeof(wide_page) + 400_000 - 1
    assert page_bytes(ascii_page) == deep_sizeof(ascii_page)


def test_the_cache_holds_at_most_its_byte_bound_however_many_entries_it_allows() -> None:
    cache: TTLCache[int, TavilyPage] = TTLCache(10_000, 60, max_weight=2_000_000, weigh=page_bytes)
    for i in range(50):
        cache.put(i, page(i, 200_000, "é" if i % 2 else "x"))  # 0.2-0.4 MB each: 50 entries would be ~15 MB
        assert cache.weight <= 2_000_000
    assert 4 <= len(cache) < 20 and cache.stats.evictions > 30
    assert cache.get(49) is not None and cache.get(0) is None  # least recently used went first
    cache.put(99, page(99, 3_000_000))  # heavier than the whole bound: not stored
    assert cache.get(99) is None and cache.weight <= 2_000_000


def test_the_search_engine_cache_is_bounded_by_the_byte_setting() -> None:
    settings = Settings()
    assert settings.search_cache_max_bytes == 256 * 1024 * 1024
    engine = SearchEngine(object(), usd_per_credit=0.008, cache_entries=10_000, cache_ttl_seconds=60,  # type: ignore[arg-type]
                          cache_max_bytes=1_000_000)
    for i in range(20):
        engine.flight.cache.put(("k", i), page(i, 100_000))
    assert engine.flight.cache.weight <= 1_000_000 and len(engine.flight.cache) < 10
