"""Latency and fault injection, in-flight/cancellation tracking — as one raw ASGI middleware.

Every provider request passes through :class:`SandboxMiddleware`, which

1. maps the path to an endpoint name (``tavily.search``, ``openai.chat_completions``, ...);
2. counts it (calls, in-flight, status sent);
3. reads the whole request body up front, so that while it sleeps it can wait on the ASGI
   ``receive`` channel for ``http.disconnect`` — a client that gives up is noticed at once
   (not after the sleep) and recorded as ``cancelled`` with a timestamp;
4. decides a fault: the ``X-Sandbox-Fault`` request header forces one
   (``429 | 500 | 503 | hang | reset | malformed | truncated | oversize``), otherwise the
   seeded RNG draws one from the endpoint's rates (``rate_429`` … ``rate_oversize``, all 0 by default) — the
   next draw of the endpoint's sequence, or with ``fault_draws: "request"`` a draw keyed by the request (path,
   query, body) and its attempt number (:meth:`SandboxState.draw_fault`);
5. sleeps the endpoint's latency (fixed or lognormal), then answers with the fault or hands
   the request to the route handler.

Injected errors carry ``x-sandbox-fault: <kind>`` and, when ``suppress_sdk_retries`` is on,
``x-should-retry: false``, which the OpenAI and Anthropic SDKs obey (providers.md §3.3, §4.3),
so the retry layer under test, not the SDK, sees every fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from .brightdata import BLOCKED_MESSAGE
from .errors import error_body, oversize_error
from .state import SandboxState
from .stats import REQUEST_BILLING

log = structlog.get_logger("sandbox.faults")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FAULT_HEADER = b"x-sandbox-fault"
FAULT_KINDS = frozenset({"429", "500", "503", "hang", "reset", "malformed", "truncated", "oversize"})

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/tavily/search/?$"), "tavily.search"),
    ("POST", re.compile(r"^/openai/v1/chat/completions/?$"), "openai.chat_completions"),
    ("POST", re.compile(r"^/openai/v1/responses/?$"), "openai.responses"),
    ("GET", re.compile(r"^/openai/v1/models(/[^/]+)?/?$"), "openai.models"),
    ("POST", re.compile(r"^/anthropic/v1/messages/?$"), "anthropic.messages"),
    ("POST", re.compile(r"^/perplexity/(v1/)?chat/completions/?$"), "perplexity.chat_completions"),
    ("POST", re.compile(r"^/perplexity/v1/(agent|responses)/?$"), "perplexity.agent"),
    ("POST", re.compile(r"^/brightdata/datasets/v3/trigger/?$"), "brightdata.trigger"),
    ("POST", re.compile(r"^/brightdata/datasets/v3/scrape/?$"), "brightdata.scrape"),
    ("GET", re.compile(r"^/brightdata/datasets/v3/progress/[^/]+/?$"), "brightdata.progress"),
    ("GET", re.compile(r"^/brightdata/datasets/v3/snapshot/[^/]+/?$"), "brightdata.snapshot"),
    ("POST", re.compile(r"^/brightdata/datasets/v3/snapshot/[^/]+/cancel/?$"), "brightdata.cancel"),
    ("GET", re.compile(r"^/brightdata/datasets/v3/snapshots/?$"), "brightdata.snapshots"),
    ("GET", re.compile(r"^/brightdata/datasets/v3/snapshot/[^/]+/parts/?$"), "brightdata.parts"),
]


def endpoint_name(method: str, path: str) -> str | None:
    """Endpoint name for stats/knobs, or None for admin and unknown paths."""
    for m, pattern, name in _ROUTES:
        if m == method and pattern.match(path):
            return name
    return None


def request_key(scope: Scope, body: bytes) -> bytes:
    """What identifies a request for a keyed fault draw: its path, query string and body — what an SDK's retry
    resends unchanged — not its headers, which carry per-attempt values (the OpenAI and Anthropic SDKs'
    ``x-stainless-retry-count``, set per attempt by ``_build_headers`` in their ``_base_client.py``)."""
    return b"%s?%s\n%s" % (str(scope.get("path", "")).encode(), bytes(scope.get("query_string", b"")), body)


async def wait_or_disconnect(receive: Receive, seconds: float) -> bool:
    """Wait up to ``seconds``; return True as soon as the client disconnects.

    Only valid once the request body has been fully read: from then on uvicorn's ``receive``
    blocks until the connection is lost and then yields ``http.disconnect``.
    """
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(remaining):
                message = await receive()
        except TimeoutError:
            return False
        if message.get("type") == "http.disconnect":
            return True
    return False


def _abort_connection(receive: Receive, reset: bool = True) -> bool:
    """Close the TCP connection under this request: RST if ``reset``, else FIN after the
    data already written (a response cut short). False if not possible.

    uvicorn's ``receive`` is a bound method of its request cycle, which holds the transport;
    there is no ASGI way to do this, and an emulator needs it to produce connection errors.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        return False
    if not reset:
        transport.close()
        return True
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


class SandboxMiddleware:
    """See the module docstring. ``state`` is the app's :class:`SandboxState`."""

    def __init__(self, app: Callable[..., Awaitable[None]], state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = endpoint_name(scope["method"], scope["path"])
        if name is None:
            await self.app(scope, receive, send)
            return
        state = self.state
        stats = state.stats
        started = time.time()
        # Handlers report response_time from here, so injected latency is included.
        scope.setdefault("state", {})["sandbox_started"] = time.perf_counter()
        stats.begin(name)
        sent_status: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent_status.append(int(message["status"]))
                if message["status"] == 429 and name.startswith("brightdata."):  # counted before it is sent
                    state.snapshots.note_429(time.monotonic(), state.knobs)
            await send(message)

        try:
            await self._handle(name, scope, receive, counting_send, started)
        finally:
            stats.end(name, sent_status[0] if sent_status else None)

    async def _handle(self, name: str, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        state = self.state
        provider = name.split(".", 1)[0]

        # 1. Buffer the body so the channel is free for disconnect detection.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                state.stats.cancelled(name, started, "body")
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        # Bright Data's IP block after too many 429s refuses every call, before anything else (see brightdata.py).
        if provider == "brightdata" and state.snapshots.blocked:
            await self._send_raw(send, 403, json_dumps({"error": BLOCKED_MESSAGE}), "application/json",
                                 {"x-sandbox-fault": "blocked"})
            return

        # 2. Decide the fault and the latency.
        knobs = state.knobs
        ep = knobs.endpoint(name)
        forced = _header(scope, FAULT_HEADER)
        fault = forced.lower() if forced and forced.lower() in FAULT_KINDS else None
        if fault is None:
            fault = state.draw_fault(name, ep, request_key(scope, body))
        if fault is not None:
            state.stats.fault(name, fault)
            log.info("fault_injected", endpoint=name, fault=fault, forced=bool(forced))
        delay = state.draw_latency(name, ep)

        # 3. Sleep (latency or hang) while watching for the client going away.
        if fault == "hang":
            if await wait_or_disconnect(receive, knobs.hang_max_s):
                state.stats.cancelled(name, started, "hang")
                return
            await self._send_error(send, provider, 504, "Gateway timeout (sandbox hang)", "hang")
            return
        if delay > 0 and await wait_or_disconnect(receive, delay):
            state.stats.cancelled(name, started, "latency")
            return

        # 4. Immediate faults.
        if fault in ("429", "500", "503"):
            status = int(fault)
            msg = {
                429: "Rate limit reached for requests (sandbox). Please try again later.",
                500: "The server had an error while processing your request (sandbox).",
                503: "The service is temporarily unavailable (sandbox).",
            }[status]
            await self._send_error(send, provider, status, msg, fault, ep.retry_after_s)
            return
        if fault == "oversize":
            limit = {
                "openai": knobs.openai_max_input_tokens,
                "anthropic": knobs.anthropic_max_input_tokens,
                "perplexity": knobs.perplexity_max_input_tokens,
            }.get(provider, 0)
            status, payload, ctype = oversize_error(provider, limit, max(limit * 2, len(body) // 4))
            await self._send_raw(send, status, payload, ctype, {"x-sandbox-fault": fault})
            return
        if fault == "reset":
            if _abort_connection(receive):
                return
            raise ConnectionAbortedError("sandbox reset fault")  # uvicorn drops the connection

        # 5. Hand over to the route, replaying the buffered body.
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # What the route bills is counted under billing_unread too when its answer never reaches the client.
        billed: list[tuple[str, dict[str, int]]] = []
        token = REQUEST_BILLING.set(billed)
        try:
            if fault in ("malformed", "truncated"):
                await self._mangle(fault, scope, replay, send, receive)
                state.stats.unread(billed)
                return
            await self.app(scope, replay, send)
            if _client_gone(receive):  # uvicorn drops what is sent to a client that disconnected
                state.stats.unread(billed)
        finally:
            REQUEST_BILLING.reset(token)

    async def _mangle(self, fault: str, scope: Scope, replay: Receive, send: Send, receive: Receive) -> None:
        """Run the route but corrupt its 200 answer: invalid JSON, or a body cut mid-way."""
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, replay, capture)
        start = next(m for m in captured if m["type"] == "http.response.start")
        full = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        if fault == "malformed":
            payload = full[: max(1, len(full) // 2)] + b'<<garbage not json}"'
            await self._send_raw(
                send, start["status"], payload, "application/json", {"x-sandbox-fault": fault}
            )
            return
        headers = [
            (k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"x-sandbox-fault")
        ]
        headers += [(b"content-length", str(len(full)).encode()), (b"x-sandbox-fault", b"truncated")]
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": full[: len(full) // 2], "more_body": True})
        if not _abort_connection(receive, reset=False):
            raise ConnectionAbortedError("sandbox truncated fault")

    async def _send_error(
        self,
        send: Send,
        provider: str,
        status: int,
        message: str,
        fault: str,
        retry_after: float | None = None,
    ) -> None:
        status, payload, ctype = error_body(provider, status, message)
        headers = {"x-sandbox-fault": fault}
        if self.state.knobs.suppress_sdk_retries:
            headers["x-should-retry"] = "false"
        if status == 429 and retry_after is not None:
            headers["retry-after"] = str(max(0, round(retry_after)))
            headers["retry-after-ms"] = str(int(retry_after * 1000))
        await self._send_raw(send, status, payload, ctype, headers)

    @staticmethod
    async def _send_raw(send: Send, status: int, payload: bytes, ctype: str, headers: dict[str, str]) -> None:
        raw = [(b"content-type", ctype.encode()), (b"content-length", str(len(payload)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


def _client_gone(receive: Receive) -> bool:
    """True when uvicorn's request cycle under ``receive`` saw the client disconnect (see :func:`_abort_connection`
    for why the cycle is reached this way)."""
    return bool(getattr(getattr(receive, "__self__", None), "disconnected", False))


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1").strip()
    return None


def json_dumps(obj: Any) -> bytes:
    """Compact JSON, as the providers send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
