"""The built cache-hit answer is reused only while the cache returns the same page object."""

import pytest

from services.search.core import Hit, SearchParams, SearchSpec, TavilyPage
from services.search.server import HitResponses, ValidatedRequests
from shared.errors import InvalidArgument
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
    a = search_pb2.SearchCompanyRequest(company="Acme")
    b = search_pb2.SearchCompanyRequest(company="Acme", include_raw_content=True)
    third = search_pb2.SearchCompanyRequest(company="Third")
    # an explicit include_raw_content is part of the request key
    assert a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True)
    validated: list[str] = []

    def validate(request: search_pb2.SearchCompanyRequest) -> SearchSpec:
        validated.append(request.company)
        return spec if request.include_raw_content else lean

    entry = memo.spec(a, validate)
    assert entry == (lean, HitResponses.key(lean)) and entry[1][0] == lean.params.cache_key()
    assert memo.spec(a, validate) == entry and validated == ["Acme"]  # remembered: not validated again
    assert memo.spec(b, validate)[1] != entry[1]
    memo.spec(third, validate)
    memo.spec(a, validate)
    assert validated == ["Acme", "Acme", "Third", "Acme"]  # LRU bound: a was forgotten, so validated again


def test_search_validated_requests_never_remember_an_invalid_request() -> None:
    memo = ValidatedRequests()
    calls: list[int] = []

    def invalid(request: search_pb2.SearchCompanyRequest) -> SearchSpec:
        calls.append(1)
        raise InvalidArgument("company is required", field="company")

    for _ in range(2):
        with pytest.raises(InvalidArgument):
            memo.spec(search_pb2.SearchCompanyRequest(), invalid)
    assert len(calls) == 2
