"""The built cache-hit answer is reused only while the cache returns the same page object."""

from services.search.core import Hit, SearchParams, SearchSpec, TavilyPage
from services.search.server import HitResponses, ValidatedRequests
from vantage.search.v1 import search_pb2


def _page() -> TavilyPage:
    return TavilyPage("q", (Hit("t", "https://a.example.com/", "c", "raw", 0.9),), 2, "rid")


def test_hit_response_reused_for_same_page_and_variant_only() -> None:
    hits = HitResponses(size=2)
    spec = SearchSpec(SearchParams("q", 20, "advanced", True), min_score=0.4, context_char_budget=100)
    page, resp = _page(), search_pb2.SearchResponse(query="q")
    key = HitResponses.key(spec)
    hits.put(key, page, resp)
    assert hits.get(key, page) is resp
    assert hits.get(key, _page()) is None  # the page was replaced (refresh / expiry): rebuild
    other = HitResponses.key(SearchSpec(spec.params, min_score=0.5, context_char_budget=100))
    assert other != key and hits.get(other, page) is None
    hits.put(other, page, resp)
    hits.put(("third",), page, resp)
    assert hits.get(key, page) is None  # LRU bound


def test_search_validated_requests_remember_specs_by_request_bytes() -> None:
    memo = ValidatedRequests(size=2)
    spec = SearchSpec(SearchParams("q", 20, "advanced", True), min_score=0.4, context_char_budget=100)
    lean = SearchSpec(spec.params, min_score=0.4, context_char_budget=100, return_raw_content=False)
    a = search_pb2.SearchCompanyRequest(company="Acme").SerializeToString(deterministic=True)
    b = search_pb2.SearchCompanyRequest(company="Acme", include_raw_content=True).SerializeToString(deterministic=True)
    assert a != b  # an explicit include_raw_content is part of the request key
    assert memo.get(a) is None
    entry = memo.put(a, lean)
    assert entry == (lean, HitResponses.key(lean)) and entry[1][0] == lean.params.cache_key()
    assert memo.get(a) == entry
    memo.put(b, spec)
    assert memo.get(b)[1] != entry[1]  # type: ignore[index]
    memo.put(b"third", spec)
    assert memo.get(a) is None  # LRU bound
