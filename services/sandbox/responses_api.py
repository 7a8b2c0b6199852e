"""OpenAI Responses API emulator: ``POST /openai/v1/responses`` (providers.md §3.1).

With a ``web_search`` / ``web_search_preview`` tool the output is a ``web_search_call`` item
followed by an assistant ``message`` whose single ``output_text`` part carries ``url_citation``
annotations (``start_index``/``end_index`` delimit each ``[domain](url)`` link in the text).
``user_location.country`` is the location that seeds the answer. The ``web_search_call`` search action lists its
``sources`` (``[{type: "url", url}]``: every page retrieved, cited or not) only when the request asks
``include: ["web_search_call.action.sources"]`` (providers.md §3.1, request example and "Output items"; openai SDK
``ResponseIncludable`` / ``responses.create(include=...)``: "Include the sources of the web search tool call"). Without a search tool the
answer has no citations. ``text.format`` ``json_schema`` returns the analyst's classification
(as for chat completions). Every non-optional field of the SDK's ``Response`` model is sent so
``response.output_text`` works. ``stream: true`` is not emulated (400).

Reasoning models (o1/o3/o4/gpt-5…) spend reasoning tokens (half the answer's, here) out of ``max_output_tokens``
first: when reasoning plus answer do not fit, the response ends ``status: "incomplete"``,
``incomplete_details: {reason: "max_output_tokens"}``, with the text cut to what fits (no ``message`` item when
nothing does) and ``usage.output_tokens = max_output_tokens`` (providers-2026-12.md, OpenAI; SDK
``Response.incomplete_details``). The knob ``openai_incomplete_times`` forces that ending on the next N answers
(Responses and chat completions, whose form of it is ``finish_reason: "length"`` with empty content).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from . import analyst, answers
from .common import bearer_token, estimate_tokens, new_id
from .errors import context_length_message, error_response
from .openai_api import auth_error
from .state import SandboxState

router = APIRouter()

WEB_SEARCH_TYPES = (
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
)

#: The ``include`` value that adds ``action.sources`` to ``web_search_call`` items (providers.md §3.1).
INCLUDE_SOURCES = "web_search_call.action.sources"


def input_texts(inp: Any) -> tuple[list[str], str]:
    """(every text in ``input``, the last user text) for a string or a list of input items."""
    if isinstance(inp, str):
        return [inp], inp
    texts: list[str] = []
    last_user = ""
    if isinstance(inp, list):
        for item in inp:
            if not isinstance(item, dict):
                continue
            text = analyst.message_text(item.get("content"))
            if item.get("type") in (None, "message") and text:
                texts.append(text)
                if item.get("role", "user") == "user":
                    last_user = text
    return texts, last_user


def _is_reasoning(model: str) -> bool:
    m = model.lower()
    return m.startswith(("o1", "o3", "o4", "gpt-5"))


@router.post("/openai/v1/responses")
async def create_response(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not bearer_token(request):
        return auth_error()
    try:
        body = await request.json()
    except ValueError:
        return error_response("openai", 400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error_response("openai", 400, "Missing required parameter: 'model'.", param="model")
    if body.get("stream"):
        return error_response(
            "openai", 400, "The sandbox does not emulate streaming for /responses.", param="stream"
        )
    texts, question = input_texts(body.get("input"))
    if not question:
        return error_response("openai", 400, "Missing required parameter: 'input'.", param="input")
    model: str = body["model"]
    instructions = body.get("instructions") if isinstance(body.get("instructions"), str) else None
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    search_tool = next((t for t in tools if t.get("type") in WEB_SEARCH_TYPES), None)
    location = ((search_tool or {}).get("user_location") or {}).get("country")
    include: list[Any] = body["include"] if isinstance(body.get("include"), list) else []

    input_tokens = sum(estimate_tokens(t) + 3 for t in [*texts, instructions or ""])
    limit = state.knobs.openai_max_input_tokens
    if input_tokens > limit:
        return error_response(
            "openai",
            400,
            context_length_message(limit, input_tokens),
            code="context_length_exceeded",
            param="input",
        )

    output: list[dict[str, Any]] = []
    fmt = ((body.get("text") or {}).get("format") or {}) if isinstance(body.get("text"), dict) else {}
    searches = 0
    if fmt.get("type") in ("json_schema", "json_object"):
        cls = analyst.classify("\n\n".join(texts), state.corpus)
        obj = (
            analyst.conform_to_schema(cls, fmt.get("schema"))
            if fmt.get("type") == "json_schema"
            else cls.as_dict()
        )
        text = json.dumps(obj, ensure_ascii=False)
        annotations: list[dict[str, Any]] = []
    else:
        ans = answers.generate(state.corpus, question, model, location, state.knobs.answer_mention_probability)
        if search_tool is not None and body.get("tool_choice") != "none":
            searches = 1
            text, annotations = ans.render_openai()
            # Search-result content is billed as input tokens (providers.md §3.5).
            input_tokens += sum(estimate_tokens(p.snippet) for p in ans.search_results)
            action: dict[str, Any] = {"type": "search", "query": ans.queries[0], "queries": ans.queries}
            if INCLUDE_SOURCES in include:
                action["sources"] = [{"type": "url", "url": p.url} for p in ans.search_results]
            output.append({"type": "web_search_call", "id": new_id("ws_", 48), "status": "completed",
                           "action": action})
        else:
            text, annotations = ans.render_plain(), []
    output_tokens = estimate_tokens(text)
    reasoning = output_tokens // 2 if _is_reasoning(model) else 0
    cap = body.get("max_output_tokens")
    forced_incomplete = state.knobs.openai_incomplete_times > 0
    if forced_incomplete:
        state.knobs.openai_incomplete_times -= 1
        cap = cap if isinstance(cap, int) else output_tokens + reasoning
        reasoning = max(reasoning, cap)  # reasoning used the whole budget
    incomplete = isinstance(cap, int) and output_tokens + reasoning > cap
    if incomplete and isinstance(cap, int):
        reasoning = min(reasoning, cap)
        room = cap - reasoning
        text, annotations = text[: room * 4], [a for a in annotations if a["end_index"] <= room * 4]
        output_tokens = estimate_tokens(text)
    if _is_reasoning(model):
        output.insert(
            0,
            {
                "type": "reasoning",
                "id": new_id("rs_", 48),
                "summary": [],
                "content": None,
                "encrypted_content": None,
                "status": None,
            },
        )
    if text or not incomplete:
        output.append(
            {
                "type": "message",
                "id": new_id("msg_", 48),
                "role": "assistant",
                "status": "incomplete" if incomplete else "completed",
                "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}],
            }
        )
    state.stats.bill(
        "openai",
        requests=1,
        prompt_tokens=input_tokens,
        completion_tokens=output_tokens + reasoning,
        web_search_calls=searches,
    )
    payload: dict[str, Any] = {
        "id": new_id("resp_", 48),
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools,
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output_tokens + reasoning,
        },
        "tool_usage": {"web_search": {"num_requests": searches}},
        "user": None,
        "metadata": body.get("metadata") or {},
    }
    return JSONResponse(payload)
