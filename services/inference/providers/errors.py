"""Provider HTTP errors → :mod:`shared.errors`, one table for every provider.

The OpenAI and Anthropic SDKs raise the same shapes (providers.md §3.3, §4.3): ``APIStatusError`` with
``status_code``, ``response`` (headers) and ``body``; ``APITimeoutError`` ⊂ ``APIConnectionError``; and
``APIResponseValidationError``. Perplexity speaks through the OpenAI SDK; Bright Data through httpx, whose status
and body feed :func:`map_status` directly. The mapping:

=============================================  ==============================================================
provider answer                                 our error (gRPC status, ErrorInfo reason)
=============================================  ==============================================================
429                                            ``ResourceExhausted`` + retry-after (``PROVIDER_RATE_LIMITED``)
≥ 500, 408, 409, 529, timeouts, connections     ``Unavailable`` (retryable)
400/413 "input too long"                       ``InvalidArgument(field="messages", reason="CONTEXT_TOO_LONG")``
other 400, 422                                 ``InvalidArgument(reason="PROVIDER_BAD_REQUEST")``
404                                            ``InvalidArgument(field="model", reason="MODEL_NOT_FOUND")``
401                                            ``FailedPrecondition`` ("the X API key was rejected", never the key)
402, 403                                       ``FailedPrecondition``
200 with a body that is not the expected JSON   ``Unavailable(reason="malformed_response")``
=============================================  ==============================================================

Every SDK provider's call goes through :func:`budgeted_call`, the one place where a provider call is budgeted,
rate-limited, guarded by the provider's circuit breaker and retried (:mod:`shared.resilience`): the retryable rows
above (429, 5xx, timeouts, connections, malformed bodies) are retried within the RPC deadline; the others are not.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

import anthropic
import anyio
import openai

from services.inference.providers import CompletionResult, log_call, parse_retry_after
from shared.config import InferenceSettings
from shared.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    VantageError,
)
from shared.grpc_client import Deadline
from shared.logging import redact_text
from shared.resilience import (
    AIMDLimiter,
    CircuitBreaker,
    ProviderGuard,
    RateLimits,
    RetryPolicy,
    estimate_tokens,
)

T = TypeVar("T")

#: Phrases of a 400 that mean "the prompt is too long", across OpenAI (code context_length_exceeded,
#: string_above_max_length), vLLM ("maximum context length"), Anthropic ("prompt is too long", request_too_large)
#: and other compatible servers ("too long", "too large", "request not supported").
CONTEXT_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "too long",
    "too large",
    "request not supported",
    "string_above_max_length",
    "request_too_large",
)


def body_error(body: object) -> tuple[str, str, str]:
    """(message, code, param) from an error body: OpenAI's ``{"error": {message, type, param, code}}`` (or its
    inner object, as the OpenAI SDK keeps it) and Anthropic's ``{"type": "error", "error": {type, message}}``."""
    err: Any = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(err, str):
        return err, "", ""
    if not isinstance(err, Mapping):
        return (str(body)[:500] if body else ""), "", ""
    code = err.get("code") or err.get("type") or ""
    return str(err.get("message") or ""), str(code), str(err.get("param") or "")


def map_status(
    status: int,
    message: str,
    *,
    provider: str,
    label: str,
    key_env: str,
    code: str = "",
    param: str = "",
    headers: Mapping[str, str] | None = None,
) -> VantageError:
    """Our error for an HTTP ``status`` with the provider's ``message`` / ``code`` / ``param`` (see the table)."""
    msg = redact_text(message)[:500] or f"HTTP {status}"
    meta = {"status": str(status)}
    if code:
        meta["provider_error_code"] = code
    retry_after = parse_retry_after(headers)
    kw: dict[str, Any] = {"provider": provider, "metadata": meta}
    if status == 429:
        return ResourceExhausted(f"{label} rate limit: {msg}", retry_after=retry_after,
                                 reason="PROVIDER_RATE_LIMITED", **kw)
    if status == 401:
        return FailedPrecondition(f"the {label} API key was rejected (check {key_env})", reason="PROVIDER_AUTH", **kw)
    if status in (402, 403):
        return FailedPrecondition(f"{label} refused the request: {msg}", reason="PROVIDER_PERMISSION_DENIED", **kw)
    if status >= 500 or status in (408, 409):
        return Unavailable(f"{label} error {status}: {msg}", retry_after=retry_after,
                           reason="PROVIDER_UNAVAILABLE", **kw)
    text = f"{code} {msg}".lower()
    if status == 413 or (status == 400 and any(p in text for p in CONTEXT_PHRASES)):
        return InvalidArgument(f"the prompt is too long for the model: {msg}", field="messages",
                               reason="CONTEXT_TOO_LONG", **kw)
    if status == 404:
        return InvalidArgument(f"{label}: {msg}", field="model", reason="MODEL_NOT_FOUND", **kw)
    return InvalidArgument(f"{label} rejected the request: {msg}", field=param, reason="PROVIDER_BAD_REQUEST", **kw)


def map_sdk_error(exc: Exception, *, provider: str, label: str, key_env: str) -> VantageError:
    """Translate an OpenAI- or Anthropic-SDK exception (never leaking the key)."""
    if isinstance(exc, openai.APITimeoutError | anthropic.APITimeoutError):
        return Unavailable(f"{label} did not answer in time", provider=provider, reason="PROVIDER_TIMEOUT")
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        cause = type(exc.__cause__ or exc).__name__
        return Unavailable(f"cannot reach {label}: {cause}", provider=provider, reason="PROVIDER_CONNECTION")
    if isinstance(exc, openai.APIResponseValidationError | anthropic.APIResponseValidationError):
        return Unavailable(f"{label} sent a response that is not the expected shape", provider=provider,
                           reason="malformed_response")
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        message, code, param = body_error(exc.body)
        code = code or str(getattr(exc, "code", "") or "")
        return map_status(
            exc.status_code,
            message or exc.message,
            provider=provider,
            label=label,
            key_env=key_env,
            code=code,
            param=param,
            headers=exc.response.headers,
        )
    return Unavailable(f"{label} call failed: {type(exc).__name__}", provider=provider, reason="PROVIDER_ERROR")


def map_call_error(exc: Exception, *, provider: str, label: str, key_env: str) -> VantageError | None:
    """Our error for anything an SDK call can raise; None for an exception that is a bug of ours (→ INTERNAL)."""
    if isinstance(exc, openai.APIError | anthropic.APIError):
        return map_sdk_error(exc, provider=provider, label=label, key_env=key_env)
    if isinstance(exc, ValueError):  # a 200 whose body is not JSON: the SDK's own decoding failed
        return Unavailable(f"{label} sent a response that is not JSON", provider=provider, reason="malformed_response")
    return None


def guard_for(
    settings: InferenceSettings, provider: str, label: str, concurrency: int, limiter: anyio.CapacityLimiter | None = None
) -> ProviderGuard:
    """The :class:`~shared.resilience.ProviderGuard` of an SDK provider: ``concurrency`` (its ``*_concurrency``
    setting) is the budget its adaptive limit never exceeds; ``limiter``, when given, is the capacity limiter the
    guard resizes (so ``provider.limiter`` keeps showing the live limit) and its size is the budget instead."""
    if limiter is not None:
        concurrency = int(limiter.total_tokens)
    return ProviderGuard.from_settings(settings, provider, concurrency=concurrency, label=label, capacity=limiter)


def http_client_for(sdk: Any, guard: ProviderGuard) -> Any:
    """The SDK's default async HTTP client with a response hook that feeds every response's rate-limit headers
    to ``guard`` (``x-ratelimit-remaining-*`` / ``anthropic-ratelimit-*``: a used-up window pauses new calls until
    its reset). ``sdk`` is the ``openai`` or ``anthropic`` module."""

    async def on_response(response: Any) -> None:
        guard.note_headers(response.headers)

    return sdk.DefaultAsyncHttpxClient(event_hooks={"response": [on_response]})


def request_tokens(messages: Iterable[str], max_output_tokens: int) -> int:
    """Tokens a request may consume, for tokens/min limits: the prompt estimate (≈ 4 characters per token) plus the
    output allowance, as providers count it against TPM."""
    return sum(estimate_tokens(m) for m in messages) + max(0, max_output_tokens)


async def budgeted_call(
    *,
    provider: str,
    label: str,
    key_env: str,
    model: str,
    deadline: Deadline,
    max_timeout: float,
    call: Callable[[float], Awaitable[T]],
    to_result: Callable[[T], CompletionResult],
    guard: ProviderGuard | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    tokens: int = 0,
) -> CompletionResult:
    """One provider call with retries, under the provider's guard (:mod:`shared.resilience`).

    Each attempt: circuit check (an open circuit fails fast: ``Unavailable(reason="CIRCUIT_OPEN")`` with the
    remaining cool-down as ``RetryInfo``), the provider's requests/tokens-per-minute limits (``tokens`` = this
    request's estimate), a slot of its adaptive (AIMD) concurrency limit — all waits counted against ``deadline`` —
    then ``call(timeout_s)`` with ``timeout_s = min(time left, max_timeout)``, the raw answer turned into a result
    by ``to_result`` (which may raise :mod:`shared.errors`), one ``provider_call`` log line (with the attempt number
    and the current concurrency limit), SDK errors mapped. Attempts that end with a 429, a 5xx, a timeout, a
    connection error or a malformed body are retried (``settings.provider_max_attempts`` in all, exponential
    back-off with full jitter, at least the provider's retry-after) while ``deadline`` — the RPC's — leaves time.

    ``call`` is awaited directly, never shielded: when the RPC is cancelled, grpc.aio cancels the handler task and
    the SDK's HTTP request is cancelled with it (the back-off sleep too). A timeout caused by the caller's deadline
    (not by the provider's own ``max_timeout``) is ``DeadlineExceeded``, not a retryable ``Unavailable``.
    ``guard`` None (tests, tools) = a plain budget of ``limiter``'s size, no retries.
    """
    if guard is None:
        guard = ProviderGuard(
            provider, label=label,
            limiter=AIMDLimiter(provider, int(limiter.total_tokens) if limiter else 1, capacity=limiter,
                                adaptive=False),
            breaker=CircuitBreaker(provider, failure_threshold=0, cooldown=0),
            rates=RateLimits(provider),
            retry=RetryPolicy(max_attempts=1),
        )

    async def attempt(n: int) -> CompletionResult:
        async with guard.attempt(deadline, tokens=tokens):
            started = time.perf_counter()
            timeout_s = min(deadline.remaining(), max_timeout)
            try:
                result = to_result(await call(timeout_s))
            except VantageError as e:
                log_call(provider, model, started, error=e, attempt=n, concurrency_limit=guard.limit)
                raise
            except Exception as e:
                err = map_call_error(e, provider=provider, label=label, key_env=key_env)
                if err is None:
                    raise
                if err.reason == "PROVIDER_TIMEOUT" and timeout_s < max_timeout:
                    err = DeadlineExceeded(f"the deadline passed while {label} was answering", provider=provider)
                log_call(provider, model, started, error=err, attempt=n, concurrency_limit=guard.limit)
                raise err from None
        log_call(provider, model, started, result=result, attempt=n, concurrency_limit=guard.limit)
        return result

    if deadline.expired:
        raise DeadlineExceeded(f"the deadline passed before calling {label}", provider=provider)
    return await guard.run(attempt, deadline=deadline)


class SdkProvider:
    """Plumbing shared by the providers reached through a vendor SDK (OpenAI, Anthropic, Perplexity): one SDK client
    per process (``None`` when no key is configured: every call then fails with ``FailedPrecondition``) and one
    :class:`~shared.resilience.ProviderGuard` (adaptive budget ≤ the provider's ``<name>_concurrency`` setting, rate
    limits, circuit breaker, retries) whose rate-limit headers are fed by the client's responses.

    Subclasses set ``name`` (also the settings prefix: ``settings.base_url(name)``, ``settings.api_key(name)``),
    ``label``, ``key_env`` and ``capabilities``, and implement :meth:`make_client`.
    """

    name: str
    label: str
    key_env: str
    #: The SDK's async client class and module (``http_client_for`` reads the module's exception types).
    sdk_client: Any
    sdk_module: Any

    def __init__(
        self,
        settings: InferenceSettings,
        client: Any | None,
        limiter: anyio.CapacityLimiter | None,
        guard: ProviderGuard | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self.guard = guard or guard_for(settings, self.name, self.label, self.concurrency(settings), limiter)
        self.limiter = self.guard.limiter.capacity

    @classmethod
    def concurrency(cls, settings: InferenceSettings) -> int:
        """The configured budget of concurrent calls (``settings.<name>_concurrency``)."""
        return int(getattr(settings, f"{cls.name}_concurrency"))

    @classmethod
    def make_client(cls, settings: InferenceSettings, key: str, guard: ProviderGuard) -> Any:
        """The SDK client for ``key`` at ``settings.base_url(name)`` (``max_retries=0``: the guard retries;
        ``http_client_for`` feeds the guard the responses' rate-limit headers)."""
        return cls.sdk_client(
            base_url=settings.base_url(cls.name),  # type: ignore[arg-type]
            api_key=key,
            max_retries=0,
            timeout=settings.provider_timeout_seconds,
            http_client=http_client_for(cls.sdk_module, guard),
        )

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> Self:
        """The provider with its client (none without a key) and its guard."""
        key = settings.api_key(cls.name)  # type: ignore[arg-type]
        guard = guard_for(settings, cls.name, cls.label, cls.concurrency(settings))
        client = cls.make_client(settings, key, guard) if key else None
        return cls(settings, client, guard.limiter.capacity, guard)

    @property
    def available(self) -> bool:
        return self._client is not None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
