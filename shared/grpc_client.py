"""Client side of our gRPC calls: one channel per target per process, deadlines that travel, ids in metadata,
retries with exponential back-off and full jitter.

Channel reuse matters (a new channel per call costs ~2.8× a reused one on loopback: reference/performance.md §1.2),
so :class:`Channels` keeps one ``grpc.aio.Channel`` per target and closes them all at shutdown. Its channels follow
the security settings (:mod:`shared.security`): TLS / mTLS credentials when configured, and the bearer token on every
call when ``auth_token`` is set (call credentials over TLS, plain metadata on loopback plaintext).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from shared import security
from shared.config import Settings
from shared.errors import RETRYABLE_CODES, RetryableError, VantageError, from_rpc_error
from shared.grpc_server import ITEM_ID_KEY, REQUEST_ID_KEY, RUN_ID_KEY

T = TypeVar("T")
log = structlog.get_logger("vantage.client")

#: Deadline reported by ``time_remaining()`` for a call without one is effectively infinite; clamp to this (s).
MAX_FORWARDED_DEADLINE = 3600.0


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    """Channel args: explicit message limits and keepalive pings every 30 s for long polls (keepalive.md)."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 1),
    ]


class Channels:
    """One ``grpc.aio`` channel per target, created on first use, closed by :meth:`close`.

    Credentials are built once, here: an unreadable certificate or half-configured pair raises
    :class:`shared.security.TLSConfigError` at start-up rather than on the first call.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        security.register_settings_secrets(settings)
        self._credentials = security.channel_credentials(settings)
        self._options = channel_options(settings) + security.channel_security_options(settings)
        self._interceptors = security.client_interceptors(settings) or None

    @property
    def tls(self) -> bool:
        """True when this factory's channels use TLS."""
        return self._credentials is not None

    def get(self, target: str) -> grpc.aio.Channel:
        ch = self._channels.get(target)
        if ch is None:
            if self._credentials is not None:
                ch = grpc.aio.secure_channel(
                    target, self._credentials, options=self._options, interceptors=self._interceptors
                )
            else:
                ch = grpc.aio.insecure_channel(target, options=self._options, interceptors=self._interceptors)
            self._channels[target] = ch
        return ch

    def for_service(self, service: str) -> grpc.aio.Channel:
        """Channel to ``service`` (search, inference, extraction, orchestrator) at its configured address."""
        return self.get(self._settings.addr(service))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


def call_metadata(*, run_id: str = "", item_id: str = "", request_id: str = "") -> tuple[tuple[str, str], ...]:
    """Metadata that carries correlation ids to the next service (bound to its logs by its interceptor)."""
    ctx = structlog.contextvars.get_contextvars()
    pairs = {
        RUN_ID_KEY: run_id or ctx.get("run_id", ""),
        ITEM_ID_KEY: item_id or ctx.get("item_id", ""),
        REQUEST_ID_KEY: request_id or ctx.get("request_id", ""),
    }
    return tuple((k, str(v)) for k, v in pairs.items() if v)


def forward_timeout(context: grpc.aio.ServicerContext | None, default: float, margin: float = 0.05) -> float:
    """Seconds to give a downstream call from inside a handler: the caller's remaining time minus ``margin``,
    clamped to ``[0.001, MAX_FORWARDED_DEADLINE]``; ``default`` when there is no incoming deadline.

    ``time_remaining()`` of a call without a deadline is a far-future value, so it is clamped, not trusted.
    """
    if context is None:
        return default
    remaining = context.time_remaining()
    if remaining is None or remaining > MAX_FORWARDED_DEADLINE:
        return default
    return max(0.001, min(remaining - margin, MAX_FORWARDED_DEADLINE))


def is_retryable(exc: BaseException) -> bool:
    """True for errors worth another attempt: UNAVAILABLE, RESOURCE_EXHAUSTED, and provider 429/5xx/timeouts
    (raised as :class:`~shared.errors.RetryableError`)."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in RETRYABLE_CODES
    return False


async def with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    initial: float,
    maximum: float,
    total_seconds: float | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> T:
    """Call ``fn`` up to ``attempts`` times; wait with exponential back-off and full jitter
    (``random(0, min(initial·2^n, maximum))``, gRFC A6 / AWS "Exponential Backoff and Jitter"), at least the
    provider's retry-after when it gave one. ``AioRpcError`` is re-raised as a :class:`VantageError`."""

    jitter = wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None) or 0.0
        return max(jitter(state), min(float(hint), maximum * 4))

    stop = stop_after_attempt(max(1, attempts))
    if total_seconds is not None:
        stop = stop | stop_after_delay(total_seconds)
    async for attempt in AsyncRetrying(
        stop=stop, wait=wait, retry=retry_if_exception(retryable), reraise=True
    ):
        with attempt:
            try:
                return await fn()
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None
    raise AssertionError("unreachable")  # pragma: no cover


class Deadline:
    """A monotonic deadline that several calls share (Go's ``ctx`` deadline)."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def remaining(self, floor: float = 0.001) -> float:
        return max(floor, self._at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._at


__all__ = [
    "Channels",
    "Deadline",
    "VantageError",
    "call_metadata",
    "channel_options",
    "forward_timeout",
    "is_retryable",
    "with_retries",
]
