"""The provider interface of the inference service and the domain types it speaks (no gRPC, no protobuf).

A provider is one upstream API (OpenAI-compatible chat completions, Anthropic Messages, Perplexity's Agent API, a Bright
Data scraper dataset). The servicer never talks to an SDK: it validates, routes (:mod:`services.inference.router`)
and calls :meth:`Provider.complete` (or, for batch providers, :class:`BatchProvider`'s methods). Providers raise
:mod:`shared.errors` classes only — SDK exceptions are translated at the provider boundary, so the interceptor can
turn them into gRPC statuses with ``BadRequest`` / ``RetryInfo`` / ``ErrorInfo`` details.

Units: tokens are counts as the provider reports them; money is USD (``float``); times are seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from shared import metrics
from shared.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    VantageError,
)
from shared.grpc_client import Deadline
from shared.resilience import parse_retry_after  # re-exported: the providers' one parser (shared with search)

log = structlog.get_logger("vantage.inference.provider")

#: Chat roles a request may carry (CompleteRequest.messages[i].role).
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do (exposed by ``Route`` / ``ListModels``).

    ``max_batch_size`` is the most prompts one provider batch may hold (Bright Data: ≤ 20 per snapshot,
    providers.md §2.7); 1 for providers that answer one prompt per call.
    """

    supports_batching: bool = False
    max_batch_size: int = 1
    supports_web_search: bool = False
    supports_locations: bool = False


@dataclass(frozen=True)
class ChatMessage:
    role: str  # one of ROLES
    content: str


@dataclass(frozen=True)
class Citation:
    url: str
    title: str = ""


@dataclass
class CompletionRequest:
    """One completion, validated (see :func:`services.inference.core.build_request`).

    ``json_schema`` is the parsed JSON Schema (a dict) the answer must match, or None for free text;
    ``location`` an upper-case ISO 3166-1 alpha-2 country or ""; ``max_output_tokens`` 0 means the configured
    default (``settings.max_output_tokens``). ``extra_headers`` are sent as-is on the HTTP request (only the
    sandbox fault pass-through sets them). ``cache_scope`` is part of the response-cache key only (never sent to a
    provider): answers are shared between requests of one scope; "" = the global scope.
    """

    model: str
    messages: list[ChatMessage]
    json_schema: dict[str, Any] | None = None
    schema_name: str = "result"
    location: str = ""
    web_search: bool = False
    max_output_tokens: int = 0
    idempotency_key: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)
    cache_scope: str = ""


@dataclass
class CompletionResult:
    """One answer.

    ``json_text``: the answer parsed as JSON and re-serialised (compact) when a schema was given, else "".
    ``input_tokens`` / ``output_tokens``: token counts billed by the provider. ``cost_usd``: USD of this call
    (tokens × price + web searches × price + records × price). ``model``: the model as the provider reported it.
    """

    text: str
    provider: str
    model: str
    json_text: str = ""
    citations: list[Citation] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    finish_reason: str = ""
    search_queries: list[str] = field(default_factory=list)
    markdown: str = ""
    snapshot_id: str = ""
    web_search_calls: int = 0
    #: ``web_search_triggered`` (Bright Data records only; None = the provider does not say) and
    #: ``links_attached``: pages retrieved, not cited (Bright Data: the record's ``links_attached`` not among its
    #: ``citations``, which hold both; OpenAI / Anthropic: search sources / results minus the cited URLs).
    web_search_triggered: bool | None = None
    links_attached: list[Citation] = field(default_factory=list)


@dataclass(frozen=True)
class ItemFailure:
    """Why one item of a batch failed (maps to ``vantage.common.v1.ItemError``).

    ``code`` is a gRPC status code name ("UNAVAILABLE", "INVALID_ARGUMENT", ...); ``provider_error_code`` the
    provider's own code (Bright Data ``error_code``, OpenAI ``error.code``) when it gave one.
    """

    code: str
    message: str
    provider_error_code: str = ""
    provider: str = ""


#: Outcome of one batch member: an answer or a failure.
Outcome = CompletionResult | ItemFailure

_ERRORS_BY_CODE: dict[str, type[VantageError]] = {
    c.code.name: c
    for c in (InvalidArgument, NotFound, FailedPrecondition, Unimplemented, DeadlineExceeded, Cancelled,
              Unavailable, ResourceExhausted)
}


def failure_from(err: VantageError, *, provider: str = "") -> ItemFailure:
    """The item failure that records ``err`` (its status code name, message and the provider's error code)."""
    return ItemFailure(
        code=err.code.name,
        message=err.message,
        provider_error_code=err.metadata.get("provider_error_code", ""),
        provider=err.provider or provider,
    )


def error_from(failure: ItemFailure) -> VantageError:
    """The error to raise for a single-item call that ended in ``failure`` (reason = the provider's code)."""
    cls = _ERRORS_BY_CODE.get(failure.code, VantageError)
    meta = {"provider_error_code": failure.provider_error_code} if failure.provider_error_code else {}
    return cls(failure.message, provider=failure.provider, reason=failure.provider_error_code or failure.code,
               metadata=meta)


@runtime_checkable
class Provider(Protocol):
    """One upstream API that answers one prompt per call."""

    #: Provider id, as routed: "openai", "anthropic", "perplexity", "brightdata_chatgpt", "brightdata_perplexity".
    name: str
    capabilities: Capabilities

    @property
    def available(self) -> bool:
        """True when the provider can be called (it has a key, or runs against the sandbox)."""
        ...

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        """Answer ``req`` before ``deadline`` (waiting for the provider's budget included; None = the provider's
        configured timeout).

        Raises :mod:`shared.errors` classes: ``InvalidArgument`` (reason ``CONTEXT_TOO_LONG`` when the prompt is
        too long), ``ResourceExhausted`` / ``Unavailable`` (retryable, with ``retry_after``),
        ``FailedPrecondition`` (no or rejected key), ``DeadlineExceeded``.
        """
        ...

    async def aclose(self) -> None:
        """Release the provider's HTTP client."""
        ...


@runtime_checkable
class BatchProvider(Provider, Protocol):
    """A provider that answers many prompts per job (Bright Data snapshots): submit, then collect.

    Submitting and collecting are separate so that a caller can persist the job id between the two and re-attach
    after a crash (``ResumeBatch``) without paying twice.
    """

    async def submit_batch(self, reqs: Sequence[CompletionRequest], *, deadline: Deadline | None = None) -> str:
        """Start one job for ``reqs`` (all the same model and location, ≤ ``max_batch_size``); its id."""
        ...

    async def collect_batch(
        self,
        job_id: str,
        count: int,
        *,
        prompts: Sequence[str] | None = None,
        model: str = "",
        deadline: Deadline | None = None,
    ) -> list[Outcome]:
        """Wait for job ``job_id`` of ``count`` requests and return one outcome per request, in submission order.
        Provider trouble becomes :class:`ItemFailure` values; only cancellation propagates."""
        ...

    async def complete_batch(self, reqs: Sequence[CompletionRequest], *, deadline: Deadline | None = None) -> list[Outcome]:
        """``submit_batch`` then ``collect_batch``."""
        ...

    async def cancel_batch(self, job_id: str) -> bool:
        """Cancel a running job; True when the provider accepted the cancellation."""
        ...

    def release_batch(self, job_id: str) -> None:
        """Forget a submitted job that will not be collected by this caller (frees its in-flight slot)."""
        ...


def log_call(
    provider: str,
    model: str,
    started: float,
    *,
    result: CompletionResult | None = None,
    error: BaseException | None = None,
    **extra: Any,
) -> None:
    """The one log line per provider call: provider, model, tokens, cost (USD), latency (ms) and the outcome.
    Never the prompt, never a key. ``started`` is a ``time.perf_counter()`` value. The same figures feed the
    ``provider_calls_total`` / ``provider_call_seconds`` / ``cost_usd_total`` metrics."""
    seconds = time.perf_counter() - started
    ms = round(seconds * 1000, 1)
    if result is not None:
        metrics.observe_provider_call(provider, seconds, "ok", result.cost_usd)
    else:
        metrics.observe_provider_call(provider, seconds, getattr(getattr(error, "code", None), "name", None) or "error")
    if result is not None:
        log.info(
            "provider_call",
            provider=provider,
            model=model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost_usd=result.cost_usd,
            web_search_calls=result.web_search_calls,
            ms=ms,
            outcome="ok",
            **extra,
        )
    else:
        code = getattr(getattr(error, "code", None), "name", None) or type(error).__name__
        log.info(
            "provider_call",
            provider=provider,
            model=model,
            ms=ms,
            outcome=code,
            reason=getattr(error, "reason", ""),
            **extra,
        )


__all__ = [
    "ROLES",
    "BatchProvider",
    "Capabilities",
    "ChatMessage",
    "Citation",
    "CompletionRequest",
    "CompletionResult",
    "ItemFailure",
    "Outcome",
    "Provider",
    "error_from",
    "failure_from",
    "log_call",
    "parse_retry_after",
]
