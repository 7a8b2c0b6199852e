"""OpenAI emulator under ``/openai/v1`` (providers.md §3).

- ``POST /openai/v1/chat/completions`` (§3.2): the deterministic analyst (:mod:`.analyst`)
  answers classification prompts; with ``response_format`` ``json_schema`` the content is an
  instance of the caller's schema (packed enrichment prompts are answered by :mod:`.packing`), with ``json_object`` the default classification dict,
  otherwise prose. Buyer-style questions without sources get an assistant answer from
  :mod:`.answers`. ``stream: true`` is served as SSE ``chat.completion.chunk`` events.
- ``POST /openai/v1/responses`` (§3.1): see :mod:`.responses_api` (same router).
- ``GET /openai/v1/models`` and ``GET /openai/v1/models/{id}``.

Usage: prompt tokens ≈ characters of all message contents / 4 (+3 per message), completion
tokens ≈ characters of the output / 4. A prompt above ``openai_max_input_tokens`` gets 400
``context_length_exceeded`` with OpenAI's wording. Errors: ``{"error": {message, type, param,
code}}``; 401 without a Bearer key.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from . import analyst, answers, packing
from .common import bearer_token, estimate_tokens, json_response, new_id
from .errors import context_length_message, error_response
from .state import SandboxState

router = APIRouter()

MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "o3",
    "o4-mini",
    "gpt-5.4-nano",
    "gpt-5.4-mini",
    "gpt-5.5",
)
_CREATED = 1_715_000_000  # fixed "created" for model objects
SYSTEM_FINGERPRINT = "fp_sandbox_v1"


def auth_error(provider: str = "openai") -> Response:
    return error_response(
        provider,
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )


def split_messages(messages: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(system text, user text, text of every message) from chat ``messages``."""
    system, user, every = [], [], []
    for m in messages:
        text = analyst.message_text(m.get("content"))
        every.append(text)
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            user.append(text)
    return "\n\n".join(system), "\n\n".join(user), "\n\n".join(every)


def prompt_tokens_for(texts: list[str]) -> int:
    return sum(estimate_tokens(t) + 3 for t in texts) + 3


def generate_content(
    state: SandboxState,
    system: str,
    user: str,
    response_format: dict[str, Any] | None,
    model: str,
    location: str | None = None,
    fault: str | None = None,
) -> str:
    """The assistant message content for a chat-style request (shared with Perplexity). ``fault`` is the
    request's ``X-Sandbox-Fault`` header, read here only for packed prompts (:mod:`.packing`)."""
    rf_type = (response_format or {}).get("type", "text")
    evidence_text = (
        user if analyst.extract_urls(user) or not analyst.extract_urls(system) else f"{system}\n\n{user}"
    )
    if rf_type == "json_schema":
        spec = (response_format or {}).get("json_schema") or {}
        packed = packing.answer(state, user, spec.get("schema"), fault)
        if packed is not None:
            return json.dumps(packed, ensure_ascii=False)
        cls = analyst.classify(evidence_text, state.corpus)
        return json.dumps(analyst.conform_to_schema(cls, spec.get("schema")), ensure_ascii=False)
    if rf_type == "json_object":
        cls = analyst.classify(evidence_text, state.corpus)
        return json.dumps(cls.as_dict(), ensure_ascii=False)
    if analyst.extract_urls(evidence_text) or analyst.find_company(user, None) != "the company":
        return analyst.plain_text(analyst.classify(evidence_text, state.corpus))
    ans = answers.generate(state.corpus, user, model, location, state.knobs.answer_mention_probability)
    return ans.render_plain()


def _truncate(content: str, max_tokens: int | None) -> tuple[str, str]:
    """Cut the output at ``max_tokens`` (4 chars each) → (content, finish_reason)."""
    if max_tokens is not None and estimate_tokens(content) > max_tokens:
        return content[: max(0, max_tokens * 4)], "length"
    return content, "stop"


def completion_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def validate_chat_body(provider: str, body: Any) -> Response | None:
    if not isinstance(body, dict):
        return error_response(provider, 400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_response(provider, 400, "you must provide a model parameter", param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        return error_response(
            provider, 400, "'messages' must be a non-empty array of message objects.", param="messages"
        )
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            return error_response(
                provider, 400, "Invalid value for 'response_format.type'.", param="response_format"
            )
        if rf["type"] == "json_schema" and not isinstance((rf.get("json_schema") or {}).get("name"), str):
            return error_response(
                provider,
                400,
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
            )
    return None


@router.post("/openai/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not bearer_token(request):
        return auth_error()
    try:
        body = await request.json()
    except ValueError:
        return error_response("openai", 400, "We could not parse the JSON body of your request.")
    if (bad := validate_chat_body("openai", body)) is not None:
        return bad
    model: str = body["model"]
    system, user, _ = split_messages(body["messages"])
    texts = [analyst.message_text(m.get("content")) for m in body["messages"]]
    prompt_tokens = prompt_tokens_for(texts)
    limit = state.knobs.openai_max_input_tokens
    if prompt_tokens > limit:
        return error_response(
            "openai",
            400,
            context_length_message(limit, prompt_tokens),
            code="context_length_exceeded",
            param="messages",
        )
    content = generate_content(
        state, system, user, body.get("response_format"), model, fault=request.headers.get("x-sandbox-fault")
    )
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    content, finish = _truncate(content, max_tokens if isinstance(max_tokens, int) else None)
    completion_tokens = estimate_tokens(content)
    # A reasoning model that spends the whole budget thinking ends ``finish_reason: "length"`` with empty content
    # (openai SDK ``ChatCompletion.Choice.finish_reason`` Literal includes "length"; providers-2026-12.md, OpenAI:
    # reasoning tokens come out of ``max_completion_tokens``).
    if state.knobs.openai_incomplete_times > 0:
        state.knobs.openai_incomplete_times -= 1
        content, finish = "", "length"
        completion_tokens = max_tokens if isinstance(max_tokens, int) else completion_tokens
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
    state.stats.bill(
        "openai", requests=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens * n
    )
    cid = new_id("chatcmpl-", 29)
    created = int(time.time())
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(cid, created, model, content, finish, prompt_tokens, completion_tokens, include_usage),
            media_type="text/event-stream",
        )
    return json_response(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                    "finish_reason": finish,
                    "logprobs": None,
                }
                for i in range(n)
            ],
            "usage": completion_usage(prompt_tokens, completion_tokens * n),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
    )


async def _stream(
    cid: str,
    created: int,
    model: str,
    content: str,
    finish: str,
    prompt_tokens: int,
    completion_tokens: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE ``chat.completion.chunk`` events: role, ~40-char content deltas, finish, [DONE]."""

    def chunk(delta: dict[str, Any], finish_reason: str | None, usage: Any = None) -> bytes:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": []
            if usage is not None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if include_usage:
            obj["usage"] = usage
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

    yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
    for i in range(0, len(content), 40):
        yield chunk({"content": content[i : i + 40]}, None)
    yield chunk({}, finish)
    if include_usage:
        yield chunk({}, None, completion_usage(prompt_tokens, completion_tokens))
    yield b"data: [DONE]\n\n"


def _model_obj(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "system"}


@router.get("/openai/v1/models")
async def list_models(request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not bearer_token(request):
        return auth_error()
    return {"object": "list", "data": [_model_obj(m) for m in MODELS]}


@router.get("/openai/v1/models/{model_id}")
async def get_model(model_id: str, request: Request) -> Any:
    state: SandboxState = request.app.state.sandbox
    if state.knobs.require_auth and not bearer_token(request):
        return auth_error()
    if model_id not in MODELS:
        return error_response(
            "openai", 404, f"The model '{model_id}' does not exist", code="model_not_found", param="model"
        )
    return _model_obj(model_id)
