"""The response cache's fast paths (issue 16 item 1): statements built once (one key by equality, several by one
expanding IN, chunks of 500 whose last may hold one key), and an answer stored by orjson without
``dataclasses.asdict`` — the same JSON object as the standard library's canonical form, read back equal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from services.inference.cache import (
    CachedResult,
    Entry,
    ResponseCache,
    canonical_json,
    result_from_json,
    result_to_json,
)
from services.inference.providers import Citation, CompletionResult
from services.inference.store import CHAIN
from shared.db import create_engine


def reference_json(r: CompletionResult) -> str:
    """The stored form as it was built before the fast path: ``dataclasses.asdict`` + :func:`canonical_json`."""
    data = dataclasses.asdict(r)
    data.pop("cached", None)
    return canonical_json(data)


texts = st.text(max_size=40)
citations = st.lists(st.builds(Citation, texts, texts), max_size=3)
floats = st.floats(allow_nan=False, allow_infinity=False)
results = st.builds(
    CompletionResult, text=texts, provider=texts, model=texts, json_text=texts, citations=citations,
    input_tokens=st.integers(0, 2**40), output_tokens=st.integers(0, 2**40), cost_usd=floats,
    finish_reason=texts, search_queries=st.lists(texts, max_size=3), markdown=texts, snapshot_id=texts,
    web_search_calls=st.integers(0, 100), web_search_triggered=st.none() | st.booleans(),
    links_attached=citations,
)


@settings(max_examples=300, deadline=None)
@given(results)
def test_stored_form_is_the_canonical_json_object(r: CompletionResult) -> None:
    stored = result_to_json(r)
    assert json.loads(stored) == json.loads(reference_json(r))
    assert list(json.loads(stored)) == sorted(json.loads(stored))  # keys sorted, as canonical_json sorts them
    assert result_from_json(stored) == r == result_from_json(reference_json(r))


def test_text_orjson_refuses_is_stored_by_the_standard_library() -> None:
    r = CompletionResult(text="half a pair: \ud800", provider="openai", model="m", cost_usd=1e-05)
    assert result_to_json(r) == reference_json(r)
    assert result_from_json(result_to_json(r)) == r
    # A row written with NaN (the standard library writes it; orjson does not read it) still reads back.
    assert result_from_json('{"text": "x", "provider": "p", "model": "m", "cost_usd": NaN}').text == "x"


def test_a_hit_is_stored_without_its_cached_flag() -> None:
    hit = CachedResult(text="t", provider="p", model="m")
    assert "cached" not in json.loads(result_to_json(hit))


async def test_one_key_several_keys_and_a_chunk_of_one(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        await CHAIN.upgrade(engine)
        cache = ResponseCache(engine)
        answers = {f"{i:064d}": CompletionResult(text=f"answer {i}", provider="openai", model="m",
                                                 citations=[Citation(f"https://{i}.example", "é")])
                   for i in range(502)}
        for key, r in list(answers.items())[:3]:
            await cache.put(key, "openai", "m", r)  # the same upsert statement each time
        keys = list(answers)
        assert await cache.get(keys[0]) == answers[keys[0]]  # equality statement
        assert await cache.get("f" * 64) is None
        assert await cache.get_many([keys[1], "f" * 64, keys[2]]) == {k: answers[k] for k in keys[1:3]}
        await cache.put(keys[0], "openai", "m", answers[keys[1]])  # a newer answer replaces the row
        assert await cache.get(keys[0]) == answers[keys[1]]
        await cache.put_many([Entry(k, "openai", "m", result_to_json(answers[k])) for k in keys[3:]])
        # 501 keys: one chunk of 500 through IN, then one key through the equality statement.
        found = await cache.get_many(keys[1:])
        assert found == {k: answers[k] for k in keys[1:]}
        assert cache.stats.errors == 0 and cache.stats.stores == 4 + 499
    finally:
        await engine.dispose()
