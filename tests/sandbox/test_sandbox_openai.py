"""OpenAI chat-completions emulator + deterministic analyst, via the official AsyncOpenAI SDK."""

from __future__ import annotations

import enum
import json
import re
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, Field
from sandbox_testkit import API_KEY, Sandbox
from tavily import AsyncTavilyClient

from services.sandbox.corpus import load_corpus

CATEGORIES = [
    "Frontier pre-training",
    "Massive in-house inference",
    "AI infrastructure platform",
    "Post-training at scale",
    "Specialized model training",
    "Fine-tuning or API wrapper",
    "No significant AI compute",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "category": {"type": "string", "enum": CATEGORIES},
        "rationale": {"type": "string"},
        "evidence_urls": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["tier", "score", "category", "rationale", "evidence_urls"],
    "additionalProperties": False,
}
SYSTEM = (
    "You are a GPU-demand analyst. Classify the company into a tier and one of these categories: "
    + "; ".join(CATEGORIES)
    + ". Frontier pre-training means tens of thousands of GPUs. Cite only the sources given."
)


def oai(sb: Sandbox, **kw) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=sb.urls["openai"], api_key=API_KEY, max_retries=kw.pop("max_retries", 0), **kw
    )


def prompt_for(company_key: str) -> str:
    """A prompt in the search service's style, built from the company's own corpus pages."""
    corpus = load_corpus()
    company = corpus.companies[company_key]
    blocks = [
        f"[{n}] Title: {p.title}\nURL: {p.url}\nContent: {p.content[:1500]}"
        for n, p in enumerate(corpus.company_pages(company_key), 1)
    ]
    return f"Company: {company.name}\n\nSources:\n\n" + "\n\n".join(blocks)


async def classify(sb: Sandbox, user: str, model: str = "gpt-4.1-mini") -> dict:
    resp = await oai(sb).chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "classification", "schema": SCHEMA, "strict": True},
        },
    )
    assert resp.object == "chat.completion" and resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.refusal is None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.prompt_tokens >= len(user) // 4
    return json.loads(resp.choices[0].message.content)


async def test_schema_valid_and_evidence_from_prompt(sandbox: Sandbox) -> None:
    # The realistic path: search with the Tavily SDK, format the hits, classify.
    tv = AsyncTavilyClient(api_key=API_KEY, api_base_url=sandbox.urls["tavily"])
    res = await tv.search("Perplexity AI inference GPUs", max_results=8)
    hits = [r for r in res["results"] if r["score"] >= 0.4]
    user = "Company: Perplexity\n\n" + "\n\n".join(
        f"Source {i}: {r['title']}\nURL: {r['url']}\n{r['content']}" for i, r in enumerate(hits, 1)
    )
    out = await classify(sandbox, user)
    jsonschema.validate(out, SCHEMA)
    prompt_urls = set(re.findall(r"https?://\S+", user))
    assert out["evidence_urls"] and set(out["evidence_urls"]) <= prompt_urls
    assert out["tier"] in ("HOT", "WARM")
    assert out["category"] == "Massive in-house inference"


@pytest.mark.parametrize(
    ("company", "tiers", "category"),
    [
        ("anthropic", {"HOT"}, "Frontier pre-training"),
        ("openai", {"HOT"}, "Frontier pre-training"),
        ("mistral", {"HOT"}, "Frontier pre-training"),
        ("together", {"HOT"}, "AI infrastructure platform"),
        ("coreweave", {"HOT"}, "AI infrastructure platform"),
        ("characterai", {"HOT", "WARM"}, "Massive in-house inference"),
        ("runway", {"WARM"}, "Specialized model training"),
        ("stability", {"WARM"}, "Specialized model training"),
        ("cohere", {"HOT", "WARM"}, None),
        ("jasper", {"COLD"}, "Fine-tuning or API wrapper"),
        ("pitchpilot", {"COLD"}, "Fine-tuning or API wrapper"),
        ("tallybook", {"COLD"}, None),
    ],
)
async def test_analyst_tiers_on_own_pages(
    sandbox: Sandbox, company: str, tiers: set, category: str | None
) -> None:
    user = prompt_for(company)
    out = await classify(sandbox, user)
    jsonschema.validate(out, SCHEMA)
    assert out["tier"] in tiers, out
    if category:
        assert out["category"] == category, out
    assert set(out["evidence_urls"]) <= set(re.findall(r"https?://\S+", user))


async def test_no_sources_is_cold(sandbox: Sandbox) -> None:
    out = await classify(sandbox, "Company: Nimbus Widgets Inc.\n\nNo search results were found.")
    assert out["tier"] in ("COLD", "WATCH") and out["evidence_urls"] == []


async def test_deterministic(sandbox: Sandbox) -> None:
    user = prompt_for("runway")
    first = await classify(sandbox, user)
    second = await classify(sandbox, user)
    assert first == second


class Tier(enum.StrEnum):
    HOT = "HOT"
    WARM = "WARM"
    WATCH = "WATCH"
    COLD = "COLD"


class Verdict(BaseModel):
    tier: Tier
    score: int = Field(ge=0, le=100)
    category: Literal[tuple(CATEGORIES)]  # type: ignore[valid-type]
    rationale: str
    evidence_urls: list[str]


async def test_sdk_parse_with_pydantic_model(sandbox: Sandbox) -> None:
    # .parse() sends a strict schema with $defs/$ref for the enum; the answer must fit it.
    resp = await oai(sandbox).chat.completions.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt_for("jasper")}],
        response_format=Verdict,
    )
    parsed = resp.choices[0].message.parsed
    assert isinstance(parsed, Verdict) and parsed.tier is Tier.COLD


async def test_plain_text_and_stream(sandbox: Sandbox) -> None:
    c = oai(sandbox)
    resp = await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt_for("anthropic")}]
    )
    text = resp.choices[0].message.content
    assert "Anthropic" in text and "HOT" in text
    stream = await c.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": prompt_for("anthropic")}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(parts) == text and usage is not None and usage.completion_tokens > 0


async def test_context_length_exceeded(sandbox: Sandbox) -> None:
    huge = "GPU " * 130_000  # ≈ 520k chars ≈ 130k tokens > 128k default
    with pytest.raises(openai.BadRequestError) as exc:
        await oai(sandbox).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": huge}]
        )
    assert exc.value.code == "context_length_exceeded"
    assert "maximum context length is 128000 tokens" in exc.value.message
    # The limit is a runtime knob.
    await sandbox.configure({"openai_max_input_tokens": 50})
    with pytest.raises(openai.BadRequestError) as exc2:
        await oai(sandbox).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * 400}]
        )
    assert exc2.value.code == "context_length_exceeded"
    # And forced by header.
    await sandbox.configure({"openai_max_input_tokens": 128000})
    with pytest.raises(openai.BadRequestError) as exc3:
        await oai(sandbox).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Sandbox-Fault": "oversize"},
        )
    assert exc3.value.code == "context_length_exceeded"


async def test_rate_limit_fault_header(sandbox: Sandbox) -> None:
    c = oai(sandbox, max_retries=2)  # x-should-retry: false must stop the SDK's own retries
    with pytest.raises(openai.RateLimitError) as exc:
        await c.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Sandbox-Fault": "429"},
        )
    headers = exc.value.response.headers
    assert headers["retry-after"] == "1" and headers["x-should-retry"] == "false"
    assert exc.value.body["type"] == "requests" or exc.value.code == "rate_limit_exceeded"
    stats = await sandbox.stats()
    ep = stats["endpoints"]["openai.chat_completions"]
    assert ep["calls"] == 1 and ep["status"] == {"429": 1} and ep["faults"] == {"429": 1}


async def test_auth_and_models(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient() as h:
        r = await h.post(
            sandbox.urls["openai"] + "/chat/completions", json={"model": "gpt-4o", "messages": []}
        )
        assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    models = await oai(sandbox).models.list()
    ids = [m.id async for m in models]
    assert "gpt-4o-mini" in ids and "gpt-5-mini" in ids
    with pytest.raises(openai.BadRequestError):
        await oai(sandbox).chat.completions.create(model="gpt-4o", messages=[])
