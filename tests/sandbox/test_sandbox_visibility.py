"""AI-visibility emulators through the official SDKs: OpenAI Responses + web search, Anthropic
Messages + web search, the Perplexity Agent API; and the deterministic answer generator itself."""

from __future__ import annotations

import re

import anthropic
import httpx
import openai
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from sandbox_testkit import API_KEY, Sandbox

from services.sandbox.answers import generate
from services.sandbox.corpus import load_corpus

Q_GPU = "What are the best GPU cloud providers for training LLMs?"
Q_INFER = "Which platforms offer serverless inference for open-source models?"
WEB_SEARCH = {"type": "web_search", "user_location": {"type": "approximate", "country": "US"}}


async def test_responses_web_search(sandbox: Sandbox) -> None:
    client = AsyncOpenAI(base_url=sandbox.urls["openai"], api_key=API_KEY, max_retries=0)
    r = await client.responses.create(model="gpt-4.1", input=Q_INFER, tools=[WEB_SEARCH])
    assert r.object == "response" and r.status == "completed" and r.error is None
    assert [item.type for item in r.output] == ["web_search_call", "message"]
    call = r.output[0]
    assert call.status == "completed" and call.action.type == "search" and call.action.query
    text = r.output_text
    assert text and text == r.output[1].content[0].text
    annotations = r.output[1].content[0].annotations
    assert annotations, text
    for a in annotations:
        assert a.type == "url_citation" and a.url.startswith("https://") and a.title
        assert text[a.start_index : a.end_index].endswith(f"]({a.url})")
    u = r.usage
    assert u.total_tokens == u.input_tokens + u.output_tokens and u.input_tokens_details.cached_tokens == 0
    assert u.output_tokens_details.reasoning_tokens == 0
    assert r.parallel_tool_calls is True and r.tool_choice == "auto" and r.tools[0].type == "web_search"
    # Same question, model and location → same answer.
    again = await client.responses.create(model="gpt-4.1", input=Q_INFER, tools=[WEB_SEARCH])
    assert again.output_text == text
    stats = await sandbox.stats()
    assert stats["billing"]["openai"]["web_search_calls"] == 2


async def test_responses_without_tool_and_message_input(sandbox: Sandbox) -> None:
    client = AsyncOpenAI(base_url=sandbox.urls["openai"], api_key=API_KEY, max_retries=0)
    r = await client.responses.create(
        model="gpt-5-mini",
        instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": Q_GPU}]}],
    )
    assert [item.type for item in r.output] == ["reasoning", "message"]
    assert r.output_text and r.output[-1].content[0].annotations == []
    assert r.usage.output_tokens_details.reasoning_tokens > 0


async def test_anthropic_web_search(sandbox: Sandbox) -> None:
    client = AsyncAnthropic(base_url=sandbox.urls["anthropic"], api_key=API_KEY, max_retries=0)
    msg = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=2048,
        messages=[{"role": "user", "content": Q_GPU}],
        tools=[
            {
                "type": "web_search_20250305",
                "name": "web_search",
                "max_uses": 3,
                "user_location": {"type": "approximate", "country": "GB"},
            }
        ],
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    kinds = [b.type for b in msg.content]
    assert kinds[:2] == ["server_tool_use", "web_search_tool_result"] and set(kinds[2:]) == {"text"}
    assert msg.content[1].tool_use_id == msg.content[0].id
    result_urls = {r.url for r in msg.content[1].content}
    cited = [c for b in msg.content[2:] for c in (b.citations or [])]
    assert cited and all(
        c.type == "web_search_result_location" and c.url in result_urls and c.cited_text for c in cited
    )
    assert msg.usage.server_tool_use.web_search_requests == 1 and msg.usage.input_tokens > 0
    assert "".join(b.text for b in msg.content[2:]).strip()


async def test_anthropic_auth_headers_and_errors(sandbox: Sandbox) -> None:
    url = sandbox.urls["anthropic"] + "/v1/messages"
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": Q_INFER}],
    }
    async with httpx.AsyncClient() as h:
        old_sdk = await h.post(url, json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert old_sdk.status_code == 200 and old_sdk.json()["content"][0]["type"] == "text"
        missing = await h.post(url, json=body)
        assert missing.status_code == 401
        assert missing.json()["type"] == "error" and missing.json()["error"]["type"] == "authentication_error"
    client = AsyncAnthropic(base_url=sandbox.urls["anthropic"], api_key=API_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[])
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(**body, extra_headers={"X-Sandbox-Fault": "429"})


async def test_anthropic_forced_tool_gives_schema_input(sandbox: Sandbox) -> None:
    corpus = load_corpus()
    pages = corpus.company_pages("anthropic")
    user = "Company: Anthropic\n\n" + "\n\n".join(f"URL: {p.url}\n{p.content[:1200]}" for p in pages)
    tool = {
        "name": "record_classification",
        "description": "Record the classification.",
        "input_schema": {
            "type": "object",
            "properties": {
                "tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]},
                "score": {"type": "integer"},
            },
            "required": ["tier", "score"],
        },
    }
    client = AsyncAnthropic(base_url=sandbox.urls["anthropic"], api_key=API_KEY, max_retries=0)
    msg = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=512,
        messages=[{"role": "user", "content": user}],
        tools=[tool],
        tool_choice={"type": "tool", "name": "record_classification"},
    )
    assert msg.stop_reason == "tool_use" and msg.content[0].type == "tool_use"
    assert msg.content[0].input["tier"] == "HOT"


async def test_perplexity_agent_api(sandbox: Sandbox) -> None:
    """The Agent API through the OpenAI SDK (``/v1/responses``; ``/v1/agent`` is the same route): forced search
    gives search_results items whose ids the text's [n] markers name; a merely offered tool gives no search."""
    client = AsyncOpenAI(base_url=sandbox.urls["perplexity"] + "/v1", api_key="pplx-test", max_retries=0)
    raw = await client.responses.with_raw_response.create(
        input=Q_INFER, tools=[{"type": "web_search", "user_location": {"country": "US"}}],
        tool_choice={"type": "web_search"},  # type: ignore[typeddict-item]
        extra_body={"preset": "fast"},
    )
    r, data = raw.parse(), raw.http_response.json()
    items = [o for o in data["output"] if o["type"] == "search_results"]
    assert items and data["status"] == "completed" and data["model"] == "perplexity/sonar"
    results = [x for item in items for x in item["results"]]
    assert all({"id", "title", "url", "snippet"} <= set(x) for x in results)
    text = r.output_text
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
    assert markers and markers <= {x["id"] for x in results}
    usage = data["usage"]
    assert usage["tool_calls_details"]["web_search"]["invocation"] == len(items)
    cost = usage["cost"]
    assert cost["currency"] == "USD" and cost["total_cost"] == pytest.approx(
        cost["input_cost"] + cost["output_cost"] + cost["tool_calls_cost"])
    offered = await client.responses.create(input=Q_INFER, tools=[{"type": "web_search"}],
                                            extra_body={"preset": "fast"})
    assert [o.type for o in offered.output] == ["message"] and not (offered.usage.model_extra or {}).get(
        "tool_calls_details")
    async with httpx.AsyncClient(base_url=sandbox.urls["perplexity"], headers={"authorization": "Bearer k"}) as h:
        agent = await h.post("/v1/agent", json={"preset": "low", "input": Q_GPU, "tools": [{"type": "web_search"}],
                                                "tool_choice": {"type": "web_search"}})
        assert agent.status_code == 200 and any(o["type"] == "search_results" for o in agent.json()["output"])
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="sonar", input="hi")  # legacy ids are not Agent API model ids


async def test_perplexity_chat_completions_is_retired(sandbox: Sandbox) -> None:
    client = AsyncOpenAI(base_url=sandbox.urls["perplexity"], api_key="pplx-test", max_retries=0)
    with pytest.raises(openai.APIStatusError) as ei:
        await client.chat.completions.create(model="sonar", messages=[{"role": "user", "content": Q_INFER}])
    assert ei.value.status_code == 410
    assert "retired on 2026-09-27" in ei.value.message and "/v1/agent" in ei.value.message


def test_answers_vary_by_model_and_location_and_carry_traps() -> None:
    corpus = load_corpus()
    ranks, shapes = set(), set()
    for q in (Q_GPU, Q_INFER, "Where can I fine-tune open models on my own data?"):
        for model in ("chatgpt", "perplexity", "gpt-4.1", "claude-sonnet-5"):
            for loc in ("US", "GB", "DE"):
                a = generate(corpus, q, model, loc)
                ranks.add(a.vendors.index("Together AI") + 1 if "Together AI" in a.vendors else 0)
                shapes.add(a.shape)
                md = a.render_plain()
                assert md == generate(corpus, q, model, loc).render_plain()  # deterministic
    assert 0 in ranks and len(ranks - {0}) >= 3, ranks  # absent sometimes, several different ranks
    assert shapes == {"numbered", "headings", "table", "prose"}


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ("numbered", r"^1\. \*\*"),
        ("headings", r"^### \w"),
        ("table", r"^\| Provider \| Best for \| Notes \|$"),
        ("prose", r"^\*\*[\w .]+\*\* is a strong option"),
    ],
)
def test_answer_shapes_are_realistic_markdown(shape: str, pattern: str) -> None:
    corpus = load_corpus()
    found = None
    for i in range(80):
        a = generate(corpus, Q_GPU, f"model-{i}", "US")
        if a.shape == shape:
            found = a
            break
    assert found is not None
    md = found.render_plain()
    assert re.search(pattern, md, re.MULTILINE), md
    traps = (
        "cash runway",
        "together before",
        "AWS Lambda functions",
        "Training stability",
        "cohere:",
        "perplexity,",
        "jasper-green",
    )
    assert any(t in md for t in traps)
    owned = {p.domain for p in found.cited}
    assert owned  # citations point at corpus pages (owned, competitor or third-party domains)
