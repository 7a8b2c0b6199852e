"""Tavily emulator through the official AsyncTavilyClient (providers.md §1)."""

from __future__ import annotations

import httpx
import pytest
from sandbox_testkit import API_KEY, Sandbox
from tavily import AsyncTavilyClient, BadRequestError, InvalidAPIKeyError


def client(sb: Sandbox, key: str | None = API_KEY) -> AsyncTavilyClient:
    return AsyncTavilyClient(api_key=key, api_base_url=sb.urls["tavily"])


async def test_company_search_sorted_scores_and_low_tail(sandbox: Sandbox) -> None:
    res = await client(sandbox).search("Anthropic GPU compute training infrastructure", max_results=10)
    results = res["results"]
    assert len(results) == 10
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    low = [s for s in scores if s < 0.4]
    assert 2 <= len(low) <= 7, scores  # a realistic low-relevance tail for the filter to drop
    top = results[:3]
    assert all("anthropic" in (r["url"] + r["title"]).lower() for r in top)
    assert all(r["raw_content"] is None for r in results)
    assert all(len(r["content"]) <= 500 for r in results)  # basic: one chunk per page
    assert res["query"] == "Anthropic GPU compute training infrastructure"
    assert res["answer"] is None and res["images"] == []
    assert isinstance(res["response_time"], float) and len(res["request_id"]) == 36
    assert "usage" not in res


async def test_raw_content_favicon_answer_usage(sandbox: Sandbox) -> None:
    res = await client(sandbox).search(
        "Together AI GPU clusters",
        max_results=3,
        include_raw_content=True,
        include_favicon=True,
        include_answer=True,
        include_usage=True,
    )
    first = res["results"][0]
    assert first["raw_content"].startswith("#") and len(first["raw_content"]) > len(first["content"])
    assert first["favicon"].endswith("/favicon.ico")
    assert isinstance(res["answer"], str) and res["answer"]
    assert res["usage"] == {"credits": 1}
    text = await client(sandbox).search("Together AI", max_results=1, include_raw_content="text")
    assert "#" not in text["results"][0]["raw_content"].splitlines()[0]


async def test_advanced_chunks_and_credit_accounting(sandbox: Sandbox) -> None:
    c = client(sandbox)
    await c.search("Mistral AI compute", search_depth="basic")
    adv = await c.search(
        "Mistral AI compute training cluster GPUs",
        search_depth="advanced",
        chunks_per_source=3,
        include_usage=True,
    )
    assert adv["usage"] == {"credits": 2}
    assert any(" [...] " in r["content"] for r in adv["results"])
    for r in adv["results"]:
        assert all(len(chunk) <= 500 for chunk in r["content"].split(" [...] "))
    await c.search("Cohere", search_depth="fast")
    stats = await sandbox.stats()
    assert stats["billing"]["tavily"] == {"searches": 3, "credits": 4}  # 1 + 2 + 1
    assert stats["endpoints"]["tavily.search"]["status"] == {"200": 3}


async def test_domain_filters(sandbox: Sandbox) -> None:
    c = client(sandbox)
    inc = await c.search("GPU clusters for training", include_domains=["together.ai"], max_results=10)
    assert inc["results"] and all("together.ai" in r["url"] for r in inc["results"])
    exc = await c.search("Together AI", exclude_domains=["together.ai", "computewire.news"], max_results=10)
    assert exc["results"] and not any(
        "together.ai" in r["url"] or "computewire.news" in r["url"] for r in exc["results"]
    )


async def test_missing_key_is_401(sandbox: Sandbox) -> None:
    with pytest.raises(InvalidAPIKeyError):
        await AsyncTavilyClient(api_key="", api_base_url=sandbox.urls["tavily"]).search("Cohere")
    async with httpx.AsyncClient() as h:
        r = await h.post(sandbox.urls["tavily"] + "/search", json={"query": "Cohere"})
        assert r.status_code == 401 and "error" in r.json()["detail"]
        # Old SDKs put the key in the body (§1.1): accepted.
        ok = await h.post(sandbox.urls["tavily"] + "/search", json={"query": "Cohere", "api_key": "k"})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_results": 50}, "max_results"),
        ({"search_depth": "deep"}, "search depth"),
        ({"topic": "sports"}, "topic"),
        ({"chunks_per_source": 9}, "chunks_per_source"),
    ],
)
async def test_validation_is_400(sandbox: Sandbox, kwargs: dict, needle: str) -> None:
    with pytest.raises(BadRequestError) as exc:
        await client(sandbox).search("Cohere", **kwargs)
    assert needle in str(exc.value)
    stats = await sandbox.stats()
    assert stats["endpoints"]["tavily.search"]["status"] == {"400": 1}
    assert "tavily" not in stats["billing"]  # rejected searches cost nothing


async def test_news_topic_has_published_dates(sandbox: Sandbox) -> None:
    res = await client(sandbox).search("GPU cloud funding", topic="news", max_results=5)
    assert res["results"] and all(r["published_date"] for r in res["results"])
