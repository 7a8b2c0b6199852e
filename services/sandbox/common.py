"""Small helpers shared by the emulators: auth headers, token estimates, ids, JSON responses."""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response


def bearer_token(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>``, if any."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def estimate_tokens(text: str) -> int:
    """Rough token count: one token per 4 characters (OpenAI's rule of thumb), at least 1."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def new_id(prefix: str, n: int = 24) -> str:
    """A random provider-style id, e.g. ``chatcmpl-<hex>`` or ``msg_<hex>``."""
    return prefix + secrets.token_hex(n // 2 + 1)[:n]


def stable_hash(*parts: object) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def json_response(payload: Any, status_code: int = 200) -> Response:
    """``payload`` as ``application/json``, encoded by orjson (the large Tavily and chat answers are the sandbox's
    hot path; ``json`` took ~10 % of its CPU per researched item). Same JSON values as Starlette's
    :class:`JSONResponse` (non-ASCII unescaped, compact); what orjson refuses (a lone surrogate echoed from a
    request) falls back to it."""
    try:
        body = orjson.dumps(payload)
    except TypeError:  # orjson.JSONEncodeError
        return JSONResponse(payload, status_code=status_code)
    return Response(body, status_code=status_code, media_type="application/json")
