"""Client side of our gRPC calls: one channel per target per process, deadlines that travel, ids in metadata, and
gRPC's own retries with retry throttling per target from the channels' service config (gRFC A6:
:func:`retry_service_config`) — the one retry layer of a hop to a service; provider retries live in the services
(:class:`shared.resilience.ProviderGuard`).

Channel reuse matters (a new channel per call costs ~2.8× a reused one on loopback: reference/performance.md §1.2),
so :class:`Channels` keeps one ``grpc.aio.Channel`` per target and closes them all at shutdown. Its channels follow
the security settings (:mod:`shared.security`): TLS / mTLS credentials when configured, and the bearer token on every
call when ``auth_token`` is set (call credentials over TLS, plain metadata on loopback plaintext).
"""

from __future__ import annotations

import json
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
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from shared import security
from shared.config import ClientSettings
from shared.errors import RETRYABLE_CODES, DeadlineExceeded, RetryableError, VantageError, from_rpc_error
from shared.grpc_server import ITEM_ID_KEY, REQUEST_ID_KEY, RUN_ID_KEY

T = TypeVar("T")
log = structlog.get_logger("vantage.client")

#: Deadline reported by ``time_remaining()`` for a call without one is effectively infinite; clamp to this (s).
MAX_FORWARDED_DEADLINE = 3600.0


#: Methods that are safe to send again after UNAVAILABLE, per service (gRFC A6 ``retryPolicy``; an empty tuple =
#: every method of the service). Reads and pure computations; ``Complete`` because the response cache and the
#: ``idempotency_key`` it forwards make a second identical call free; ``CancelBatch`` because cancelling twice is
#: cancelling once. Not ``CompleteBatch`` (a new Bright Data snapshot per call) nor ``CompleteStream`` (a
#: client stream: gRPC could replay only its first 256 KiB), nor any orchestrator method (they start and change runs).
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "vantage.search.v1.SearchService": ("Search", "SearchCompany"),
    "vantage.inference.v1.InferenceService": ("Route", "ListModels", "Complete", "CancelBatch"),
    "vantage.extraction.v1.ExtractionService": (),
}
#: gRFC A6: ``maxAttempts`` above 5 is treated as 5.
MAX_GRPC_ATTEMPTS = 5


#: Shortest back-off put in the service config (s). With grpcio 1.85.1 a 1 ms ``initialBackoff`` left a retry pending
#: until the call's deadline (tests/resilience/test_res_one_retry_layer.py caught it); 5 ms and up retried at once.
MIN_GRPC_BACKOFF = 0.01


def _duration(seconds: float) -> str:
    """A service-config back-off (protobuf JSON ``Duration``: decimal seconds with an ``s``), ≥ MIN_GRPC_BACKOFF."""
    return f"{max(seconds, MIN_GRPC_BACKOFF):.3f}s"


def retry_service_config(settings: ClientSettings) -> dict[str, Any]:
    """The retry part of the service config (gRFC A6, https://github.com/grpc/proposal/blob/master/A6-client-retries.md):

    - ``methodConfig``: one ``retryPolicy`` for the :data:`IDEMPOTENT_METHODS` — ``settings.retry_attempts``
      attempts in all (at most :data:`MAX_GRPC_ATTEMPTS`), back-off ``random(0, min(initial · 2ⁿ, max))``
      (``retry_initial_seconds``, ``retry_max_seconds``; gRPC core's full jitter), on ``UNAVAILABLE`` only. The
      call's deadline covers every attempt and back-off (A6: retries never extend it). Our servers add
      ``grpc-retry-pushback-ms: -1`` (:func:`shared.grpc_server.without_client_retry`) to an
      UNAVAILABLE that their provider guard already retried, so the attempts are not multiplied hop by hop;
      what gRPC retries is a server that could not be reached, restarted or shut down mid-call.
    - ``retryThrottling``: ``retry_throttle_max_tokens`` / ``retry_throttle_token_ratio`` — per target, each failed
      attempt takes a token, each success gives back ``token_ratio``; at or below half of ``max_tokens`` no call is
      retried (so retries stop when more than ``r / (1 + r)`` of the attempts fail).

    Empty when ``retry_attempts`` ≤ 1 (A6 requires ``maxAttempts`` ≥ 2)."""
    attempts = min(MAX_GRPC_ATTEMPTS, int(settings.retry_attempts))
    if attempts < 2:
        return {}
    names: list[dict[str, str]] = []
    for svc, methods in IDEMPOTENT_METHODS.items():
        names += [{"service": svc, "method": m} for m in methods] or [{"service": svc}]
    return {
        "methodConfig": [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": attempts,
                    "initialBackoff": _duration(settings.retry_initial_seconds),
                    "maxBackoff": _duration(max(settings.retry_max_seconds, settings.retry_initial_seconds)),
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
        "retryThrottling": {
            # gRPC core parses maxTokens as an integer (A6: 0 < maxTokens ≤ 1000) and keeps 3 decimals of tokenRatio.
            "maxTokens": max(1, min(1000, round(settings.retry_throttle_max_tokens))),
            "tokenRatio": round(max(settings.retry_throttle_token_ratio, 0.001), 3),
        },
    }


def service_config(settings: ClientSettings) -> dict[str, Any]:
    """The channels' gRPC service config (https://github.com/grpc/grpc/blob/master/doc/service_config.md):
    ``loadBalancingConfig`` = ``settings.grpc_lb_policy`` over every address the target resolves to, and with
    round_robin ``healthCheckConfig`` (gRFC A17 client-side health checking: each backend is watched through
    ``grpc.health.v1.Health/Watch`` on the server-wide name ``""``; a NOT_SERVING one gets no calls until it
    serves again; a server without the health service counts as healthy). pick_first ignores health checking.
    Retries and retry throttling: :func:`retry_service_config`.

    gRPC core's health watch carries no call credentials or interceptor metadata, so when the servers require the
    bearer token for health too (``auth_allow_health`` false) client-side health checking is left off: every watch
    would be refused and every backend counted as down."""
    config: dict[str, Any] = {"loadBalancingConfig": [{settings.grpc_lb_policy: {}}]}
    health_open = settings.auth_allow_health or security.auth_token(settings) is None
    if settings.grpc_lb_policy == "round_robin" and health_open:
        config["healthCheckConfig"] = {"serviceName": ""}
    config.update(retry_service_config(settings))
    return config


def channel_options(settings: ClientSettings) -> list[tuple[str, Any]]:
    """Channel args: explicit message limits, the :func:`service_config`, and keepalive (keepalive.md).

    Keepalive pings every 30 s, idle included (``max_pings_without_data`` 0: gRPC core otherwise stops after 2
    pings without data), stay below the idle timeouts of the balancers and NATs in between (AWS NLB 350 s, GCP
    10 min, Azure LB 4 min), so an idle connection is not reaped silently; our servers accept pings every 10 s
    (shared/grpc_server.py). The resolver's own service config (DNS TXT) is ignored: ours is the one in force."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config(settings))),
        ("grpc.service_config_disable_resolution", 1),
    ]


class Channels:
    """One ``grpc.aio`` channel per target, created on first use, closed by :meth:`close`. Its channels retry the
    idempotent methods on UNAVAILABLE and throttle those retries per target (:func:`retry_service_config`), so a
    caller makes one call and no retry loop of its own (transport failures after the call reached a server: see
    :func:`call_under_deadline`).

    Credentials are built once, here: an unreadable certificate or half-configured pair raises
    :class:`shared.security.TLSConfigError` at start-up rather than on the first call.
    """

    def __init__(self, settings: ClientSettings) -> None:
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
    """Not for calls over :class:`Channels` (their service config retries the idempotent methods, and
    :func:`call_under_deadline` resends what is left): a generic retry of a provider step that has no guard of its
    own (the Bright Data trigger).

    Call ``fn`` up to ``attempts`` times; wait with exponential back-off and full jitter
    (``random(0, min(initial·2^n, maximum))``, gRFC A6 / AWS "Exponential Backoff and Jitter"), at least the
    provider's retry-after when it gave one. ``AioRpcError`` is re-raised as a :class:`VantageError`."""

    jitter = wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None) or 0.0
        return max(jitter(state), min(float(hint), maximum * 4))

    stop: stop_base = stop_after_attempt(max(1, attempts))
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


class _StopAtDeadline(stop_base):
    """Stop retrying when (almost) nothing is left of ``deadline`` (a tenacity stop condition)."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: Any) -> bool:
        return self.deadline.remaining(0.0) <= 0.05


def is_transport_failure(exc: BaseException) -> bool:
    """True for an UNAVAILABLE that gRPC itself produced — the server unreachable, restarting, or gone in the middle
    of the call — and not a service's own answer: our servers mark theirs with gRFC A6 pushback (they already
    retried their dependency, :func:`shared.grpc_server.without_client_retry`), and any other code (RESOURCE_EXHAUSTED
    after the provider guard gave up, INVALID_ARGUMENT, …) is the service's verdict, not worth resending."""
    if isinstance(exc, grpc.aio.AioRpcError):
        exc = from_rpc_error(exc)
    return isinstance(exc, VantageError) and exc.code == grpc.StatusCode.UNAVAILABLE and not exc.retried_by_server


def is_worth_resending(exc: BaseException) -> bool:
    """:func:`is_transport_failure`, or a RESOURCE_EXHAUSTED that tells when to come back (RetryInfo): a rate limit
    the service could not wait out inside its own call (``provider_retry_after_max_seconds``) is a "later", not a
    "no" — resent after its retry-after, within the same one deadline. A provider 5xx is never resent here: the
    service's guard spent its attempts on it and pushed back."""
    if isinstance(exc, grpc.aio.AioRpcError):
        exc = from_rpc_error(exc)
    if is_transport_failure(exc):
        return True
    return (isinstance(exc, RetryableError) and exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            and bool(getattr(exc, "retry_after", None)))


async def call_under_deadline(
    fn: Callable[[float], Awaitable[T]],
    *,
    seconds: float,
    attempts: int,
    initial: float,
    maximum: float,
    retryable: Callable[[BaseException], bool] = is_worth_resending,
) -> T:
    """The one retry loop of a call from the orchestrator to a service: ``fn(timeout)`` is the RPC, given as its
    ``timeout`` the time left of ONE deadline of ``seconds`` for the whole stage — each attempt gets what the earlier
    ones left, never a fresh timeout — and it is attempted at most ``attempts`` times. Only transport failures
    and rate limits with a retry-after (:func:`is_worth_resending`) are resent: the channel's service config has already retried the idempotent
    methods before they reached the server (gRFC A6), and the services retry their providers themselves under the
    deadline they are given (:class:`shared.resilience.ProviderGuard`), so nothing is multiplied across hops.
    Back-off: full jitter ``random(0, min(initial·2^n, maximum))``, cut to the time left. ``AioRpcError`` is raised
    as a :class:`VantageError`; DeadlineExceeded when no time is left for another attempt."""
    deadline = Deadline(seconds)
    jitter = wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = float(getattr(exc, "retry_after", None) or 0.0)
        return min(max(jitter(state), hint), max(0.0, deadline.remaining(0.0) - 0.05))

    async for attempt in AsyncRetrying(
        stop=stop_any(stop_after_attempt(max(1, attempts)), _StopAtDeadline(deadline)),
        wait=wait, retry=retry_if_exception(retryable), reraise=True,
    ):
        with attempt:
            if deadline.expired:
                raise DeadlineExceeded(f"no time left of the {seconds:g} s deadline")
            try:
                return await fn(deadline.remaining())
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
    "call_under_deadline",
    "channel_options",
    "forward_timeout",
    "is_retryable",
    "is_transport_failure",
    "is_worth_resending",
    "retry_service_config",
    "service_config",
    "with_retries",
]
