"""Anthropic Messages API emulator: ``POST /anthropic/v1/messages`` (providers.md §4).

Auth: ``x-api-key`` (SDK 0.x/1.x) or ``Authorization: Bearer`` (SDK 2.x); any
``anthropic-version``. With a ``web_search_*`` tool the content is ``server_tool_use`` →
``web_search_tool_result`` (``web_search_result`` items) → ``text`` blocks whose ``citations``
are ``web_search_result_location`` entries; ``usage.server_tool_use.web_search_requests``
counts the searches. Without it the answer is plain text blocks. Prompts with sources and a
company (classification) get the analyst's JSON as text; ``tool_choice: {type: tool}`` with a
custom tool returns a ``tool_use`` block whose input fits the tool's ``input_schema``.
Errors: ``{"type": "error", "error": {"type", "message"}}``. ``stream: true`` is not emulated.

Structured output (platform.claude.com/docs/en/build-with-claude/structured-outputs; anthropic SDK 2.15
``OutputConfigParam`` / ``JSONOutputFormatParam``): ``output_config: {format: {type: "json_schema", schema}}``
answers with one ``text`` block holding JSON that fits the schema.

Thinking (platform.claude.com/docs/en/build-with-claude/extended-thinking): on when the request says
``thinking: {type: enabled | adaptive}``, and by default on the Opus 5 / Sonnet 5 families (:func:`thinks`) unless
``thinking: {type: disabled}`` (providers-2026-12.md). A thinking turn starts with a ``thinking`` block whose
tokens (:data:`THINKING_TOKENS`) count toward ``max_tokens`` and ``usage.output_tokens``; a turn that does not fit
is cut and stops with ``max_tokens``. A forced tool (``tool_choice`` ``{type: tool}`` or ``{type: any}``) with
thinking on is a 400 ``invalid_request_error`` "Thinking may not be enabled when tool_choice forces tool use.", the
real API's wording (langchain-ai/langchain PR #35544; UKGovernmentBEIS/inspect_ai PR #2333). The knob
``anthropic_pause_turns`` makes the next N web-search turns stop with ``pause_turn`` (a long server-tool turn;
the client sends the turn back to continue it).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from . import analyst, answers, packing
from .common import bearer_token, estimate_tokens, new_id
from .errors import error_response
from .state import SandboxState

router = APIRouter()

#: Output tokens a thinking turn spends on its ``thinking`` block before the answer (sandbox figure).
THINKING_TOKENS = 800
THINKING_FORCED_TOOL = "Thinking may not be enabled when tool_choice forces tool use."
_THINKS_BY_DEFAULT = re.compile(r"^claude-(opus|sonnet)-5(\b|[-.])")


def thinks(model: str, thinking: Any) -> bool:
    """Whether a request thinks: its ``thinking`` config, else the model's default (on for Opus 5 / Sonnet 5)."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("enabled", "adaptive"):
        return True
    if kind == "disabled":
        return False
    return _THINKS_BY_DEFAULT.match(model.lower()) is not None


def _enc(text: str) -> str:
    # Stand-in for Anthropic's opaque encrypted_content / encrypted_index blobs.
    return base64.b64encode(text.encode()).decode()


def _page_age(date: str | None) -> str | None:
    return datetime.strptime(date, "%Y-%m-%d").strftime("%B %-d, %Y") if date else None


@router.post("/anthropic/v1/messages")
async def messages(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not (request.headers.get("x-api-key") or bearer_token(request)):
        return error_response("anthropic", 401, "x-api-key header is required")
    try:
        body = await request.json()
    except ValueError:
        return error_response("anthropic", 400, "There was an issue with the request body: invalid JSON")
    if not isinstance(body, dict):
        return error_response("anthropic", 400, "Request body must be a JSON object")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return error_response("anthropic", 400, f"{name}: Field required")
    msgs = body["messages"]
    if not isinstance(msgs, list) or not msgs:
        return error_response("anthropic", 400, "messages: at least one message is required")
    if body.get("stream"):
        return error_response("anthropic", 400, "stream: the sandbox does not emulate streaming")
    model: str = body["model"]
    system = analyst.message_text(body.get("system"))
    texts = [analyst.message_text(m.get("content")) for m in msgs if isinstance(m, dict)]
    user_texts = [
        analyst.message_text(m.get("content"))
        for m in msgs
        if isinstance(m, dict) and m.get("role") == "user"
    ]
    question = user_texts[-1] if user_texts else texts[-1]
    input_tokens = sum(estimate_tokens(t) + 3 for t in [system, *texts])
    limit = state.knobs.anthropic_max_input_tokens
    if input_tokens > limit:
        return error_response(
            "anthropic", 400, f"prompt is too long: {input_tokens} tokens > {limit} maximum"
        )

    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    search_tool = next((t for t in tools if str(t.get("type", "")).startswith("web_search")), None)
    if search_tool and search_tool.get("allowed_domains") and search_tool.get("blocked_domains"):
        return error_response(
            "anthropic", 400, "tools.0: cannot specify both allowed_domains and blocked_domains"
        )
    tool_choice = body.get("tool_choice") or {}
    thinking = thinks(model, body.get("thinking"))
    if thinking and isinstance(tool_choice, dict) and tool_choice.get("type") in ("tool", "any"):
        return error_response("anthropic", 400, THINKING_FORCED_TOOL)
    output_format = ((body.get("output_config") or {}).get("format") or {}) if isinstance(
        body.get("output_config"), dict) else {}
    if output_format and (output_format.get("type") != "json_schema" or not isinstance(
            output_format.get("schema"), dict)):
        return error_response("anthropic", 400, "output_config.format: type must be 'json_schema' with a schema")
    forced = next(
        (t for t in tools if tool_choice.get("type") == "tool" and t.get("name") == tool_choice.get("name")),
        None,
    )

    content: list[dict[str, Any]] = []
    searches = 0
    stop_reason = "end_turn"
    user_all = "\n\n".join(user_texts)
    if output_format:
        schema = output_format["schema"]
        packed = packing.answer(state, user_all, schema, request.headers.get("x-sandbox-fault"), "anthropic.messages")
        if packed is None:
            packed = analyst.conform_to_schema(analyst.classify(user_all, state.corpus), schema)
        content.append({"type": "text", "text": json.dumps(packed, ensure_ascii=False), "citations": None})
    elif forced is not None and "input_schema" in forced:
        packed = packing.answer(
            state, user_all, forced["input_schema"], request.headers.get("x-sandbox-fault"), "anthropic.messages"
        )
        if packed is None:
            packed = analyst.conform_to_schema(analyst.classify(user_all, state.corpus), forced["input_schema"])
        content.append(
            {
                "type": "tool_use",
                "id": new_id("toolu_", 24),
                "name": forced["name"],
                "input": packed,
            }
        )
        stop_reason = "tool_use"
    elif search_tool is None and (
        analyst.extract_urls(user_all) and analyst.find_company(user_all, None) != "the company"
    ):
        cls = analyst.classify(user_all, state.corpus)
        content.append(
            {"type": "text", "text": json.dumps(cls.as_dict(), ensure_ascii=False), "citations": None}
        )
    else:
        location = (search_tool or {}).get("user_location", {}) or {}
        ans = answers.generate(state.corpus, question, model, location.get("country"), state.knobs.answer_mention_probability)
        if search_tool is not None:
            searches = 1
            tool_id = new_id("srvtoolu_", 24)
            content.append(
                {
                    "type": "server_tool_use",
                    "id": tool_id,
                    "name": "web_search",
                    "input": {"query": ans.queries[0]},
                }
            )
            content.append(
                {
                    "type": "web_search_tool_result",
                    "tool_use_id": tool_id,
                    "content": [
                        {
                            "type": "web_search_result",
                            "url": p.url,
                            "title": p.title,
                            "encrypted_content": _enc(p.snippet),
                            "page_age": _page_age(p.date),
                        }
                        for p in ans.search_results
                    ],
                }
            )
            input_tokens += sum(estimate_tokens(p.snippet) for p in ans.search_results)
            for text, sources in ans.blocks():
                citations = [
                    {
                        "type": "web_search_result_location",
                        "url": p.url,
                        "title": p.title,
                        "cited_text": p.snippet[:150],
                        "encrypted_index": _enc(f"{p.url}#0"),
                    }
                    for p in sources
                ]
                content.append({"type": "text", "text": text, "citations": citations or None})
        else:
            content.append({"type": "text", "text": ans.render_plain(), "citations": None})

    output_tokens = sum(
        estimate_tokens(c.get("text") or json.dumps(c.get("input") or c.get("content") or ""))
        for c in content
        if c["type"] in ("text", "tool_use")
    )
    if thinking:
        content.insert(0, {"type": "thinking", "thinking": "Weighing the sources before answering.",
                           "signature": _enc(f"sig:{model}:{question[:40]}")})
        output_tokens += THINKING_TOKENS
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and output_tokens > max_tokens:
        # Cut the turn at max_tokens: thinking first, then as much text as fits (4 characters a token).
        stop_reason = "max_tokens"
        room = max(0, max_tokens - (THINKING_TOKENS if thinking else 0)) * 4
        for c in content:
            if c["type"] == "text":
                c["text"], room = c["text"][:room], max(0, room - len(c["text"]))
        content = [c for c in content if c["type"] != "text" or c["text"]]
        output_tokens = max_tokens
    elif search_tool is not None and state.knobs.anthropic_pause_turns > 0:
        # Paused after searching: the turn so far holds the search, not the answer (sent back, it continues).
        state.knobs.anthropic_pause_turns -= 1
        stop_reason = "pause_turn"
        content = [c for c in content if c["type"] not in ("text", "thinking")]
        output_tokens = sum(estimate_tokens(json.dumps(c.get("input") or "")) for c in content
                            if c["type"] == "server_tool_use")
    state.stats.bill(
        "anthropic",
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        web_search_requests=searches,
    )
    return JSONResponse(
        {
            "id": new_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "server_tool_use": {"web_search_requests": searches, "web_fetch_requests": 0},
                "service_tier": "standard",
            },
        }
    )
