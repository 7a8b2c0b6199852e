"""Provider-shaped error bodies (providers.md §1.4, §2.5, §3.3, §4.3, §5.1).

Each builder returns ``(status, body_bytes, content_type)`` so that both the route handlers
and the fault middleware (which speaks raw ASGI) can use them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.responses import Response

_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}


def error_body(
    provider: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    err_type: str | None = None,
) -> tuple[int, bytes, str]:
    """Serialise an error the way ``provider`` does.

    - tavily: ``{"detail": {"error": msg}}`` — the SDK reads ``detail.error`` (§1.4).
    - openai / perplexity: ``{"error": {"message", "type", "param", "code"}}`` (§3.3).
    - anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}`` (§4.3).
    - brightdata: JSON ``{"error": msg}`` (401/5xx bodies are UNCONFIRMED in §2.5).
    """
    body: dict[str, Any]
    if provider == "tavily":
        body = {"detail": {"error": message}}
    elif provider in ("openai", "perplexity"):
        t, c = _OPENAI_TYPES.get(status, ("invalid_request_error", None))
        body = {
            "error": {
                "message": message,
                "type": err_type or t,
                "param": param,
                "code": code if code is not None else c,
            }
        }
    elif provider == "anthropic":
        body = {
            "type": "error",
            "error": {"type": err_type or _ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:24]}",
        }
    else:
        body = {"error": message}
    return status, json.dumps(body).encode(), "application/json"


def error_response(
    provider: str, status: int, message: str, headers: dict[str, str] | None = None, **kw: Any
) -> Response:
    """:func:`error_body` wrapped in a FastAPI response."""
    status, body, ctype = error_body(provider, status, message, **kw)
    return Response(content=body, status_code=status, media_type=ctype, headers=headers)


def context_length_message(limit: int, tokens: int) -> str:
    """OpenAI's wording for ``context_length_exceeded`` (400)."""
    return (
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages."
    )


def oversize_error(provider: str, limit: int, tokens: int) -> tuple[int, bytes, str]:
    """The "request too big" error of each provider."""
    if provider in ("openai", "perplexity"):
        return error_body(
            provider,
            400,
            context_length_message(limit, tokens),
            code="context_length_exceeded",
            param="messages",
        )
    if provider == "anthropic":
        return error_body(provider, 400, f"prompt is too long: {tokens} tokens > {limit} maximum")
    if provider == "tavily":
        return error_body(provider, 400, "Query is too long. Max query length is 400 characters.")
    return (
        400,
        json.dumps({"validation_errors": ["prompt: must be at most 4096 characters"]}).encode(),
        "application/json",
    )
