"""Tavily backend: a few long-lived ``AsyncTavilyClient`` (tavily-python 0.8.5) behind one concurrency limiter.

The ``tavily_concurrency`` connections are split over ``ceil(concurrency / POOL_SIZE)`` SDK clients, each on its own
``httpx.AsyncClient`` of at most :data:`POOL_SIZE` connections (together: ``concurrency``), and each call takes the
client with the most free connections. httpcore scans every connection of its pool, twice per request and more
than linearly in the pool size (``AsyncConnectionPool._assign_requests_to_connections``): with one pool of 50
keep-alive connections that scan was ~30 % of the search service's CPU; with pools of ≤ 8 it is small, while the
number of kept-alive connections (and so of TLS handshakes against the real Tavily) stays what it was.

``TavilyBackend.search`` sends ``POST {base}/search`` with ``include_usage=true`` and turns the answer into a
:class:`~services.search.core.TavilyPage`; SDK and transport errors become :mod:`shared.errors` (providers.md §1.4):

==========================================  ==================================================================
``InvalidAPIKeyError`` (401)                ``FailedPrecondition`` reason ``INVALID_API_KEY`` (the key is never shown)
``UsageLimitExceededError`` (429)           ``ResourceExhausted`` reason ``RATE_LIMITED``, ``retry_after`` from the
                                            ``Retry-After`` header when present
``ForbiddenError`` (403 / 432 / 433)        ``FailedPrecondition`` reason ``CREDITS_EXHAUSTED`` (plan or
                                            pay-as-you-go limit: retrying does not help)
``BadRequestError`` (400)                   ``InvalidArgument`` reason ``PROVIDER_BAD_REQUEST``
5xx, 408, timeouts, connection errors,      ``Unavailable`` (retryable)
malformed bodies
other 4xx                                   ``FailedPrecondition`` reason ``PROVIDER_ERROR``
==========================================  ==================================================================

Every error carries ``provider="tavily"``. No key for a real Tavily → ``FailedPrecondition("TAVILY_API_KEY is not
set")`` at call time (start-up still succeeds so health checks and other RPCs work).

One log line per call (``tavily_search``): a hash of the query (not the query or any page text), depth,
max_results, credits, latency ms, result count, Tavily's request id (``tavily_request_id``: ``request_id`` stays the
RPC's correlation id), outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import math
import time
from typing import Any

import httpx
import structlog
from tavily import AsyncTavilyClient
from tavily.errors import (
    BadRequestError,
    ForbiddenError,
    InvalidAPIKeyError,
    UsageLimitExceededError,
)
from tavily.errors import TimeoutError as TavilyTimeoutError

from services.search.core import Hit, SearchParams, TavilyPage, clean_text, credits_for
from shared import metrics
from shared.config import SearchSettings
from shared.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    VantageError,
)
from shared.grpc_client import Deadline
from shared.logging import register_secret
from shared.resilience import ProviderGuard, parse_retry_after

log = structlog.get_logger("vantage.search.tavily")

PROVIDER = "tavily"
#: The SDK clamps its timeout to this many seconds (providers.md §1.6).
SDK_MAX_TIMEOUT = 120.0
#: Most connections one HTTP client (one httpcore pool) holds; ``tavily_concurrency`` is split over enough clients.
POOL_SIZE = 8

#: Status and headers of the last HTTP response of the current call (set by an httpx hook, read after the SDK
#: raised, since the SDK's exceptions carry neither).
_last_response: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("tavily_last_response", default=None)


#: The keyed call (:class:`services.search.records.KeyedCall`) the current task serves, or None: each attempt
#: counts on it the Tavily request it sends (``sent``) and, when that request is cut after it was sent (a timeout, a
#: cancel), ``cut`` — Tavily may have billed it. Set by the servicer around a keyed call.
current_call: contextvars.ContextVar[Any] = contextvars.ContextVar("search_keyed_call", default=None)


async def _record_response(response: httpx.Response) -> None:
    holder = _last_response.get()
    if holder is not None:
        holder["status"] = response.status_code
        holder["retry_after"] = parse_retry_after(response.headers)


def query_hash(query: str) -> str:
    """Short stable fingerprint of a query for logs (12 hex chars of SHA-256)."""
    return hashlib.sha256(query.encode("utf-8", "replace")).hexdigest()[:12]


def _score(value: Any) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return 0.0
    return s if math.isfinite(s) else 0.0


def _text(value: Any) -> str:
    return clean_text(value) if isinstance(value, str) else ""


def parse_response(body: Any, params: SearchParams) -> TavilyPage:
    """Tavily's JSON answer (providers.md §1.3) → :class:`TavilyPage`. Entries without a URL are dropped;
    credits come from ``usage.credits`` when present, else from the depth."""
    if not isinstance(body, dict):
        raise Unavailable("Tavily returned a malformed response (not a JSON object)", reason="MALFORMED_RESPONSE",
                          provider=PROVIDER)
    hits = []
    for r in body.get("results") or []:
        if not isinstance(r, dict):
            continue
        url = _text(r.get("url")).strip()
        if not url:
            continue
        hits.append(
            Hit(
                title=_text(r.get("title")),
                url=url,
                content=_text(r.get("content")),
                raw_content=_text(r.get("raw_content")),
                score=_score(r.get("score")),
            )
        )
    usage = body.get("usage")
    reported = usage.get("credits") if isinstance(usage, dict) else None
    if not (isinstance(reported, int) and not isinstance(reported, bool)):
        reported = None
    return TavilyPage(
        query=_text(body.get("query")) or params.query,
        hits=tuple(hits),
        credits=credits_for(params.search_depth, reported),
        request_id=_text(body.get("request_id")),
        response_time_s=_score(body.get("response_time")),
    )


def map_error(exc: BaseException, *, status: int | None, retry_after: float | None, timeout: float) -> VantageError | None:
    """The :mod:`shared.errors` equivalent of an SDK/transport exception, or None if ``exc`` is not one."""
    suffix = f" (HTTP {status})" if status else ""

    def detail(e: BaseException) -> str:
        text = str(e).strip()
        return f": {text}" if text else ""

    if isinstance(exc, InvalidAPIKeyError):
        return FailedPrecondition(
            f"Tavily rejected the API key{suffix}; check TAVILY_API_KEY", reason="INVALID_API_KEY", provider=PROVIDER
        )
    if isinstance(exc, UsageLimitExceededError):
        retry = retry_after
        if retry is None:
            retry = getattr(exc, "retry_after_seconds", None)
        return ResourceExhausted(
            f"Tavily rate limit{suffix}{detail(exc)}", retry_after=retry, reason="RATE_LIMITED", provider=PROVIDER
        )
    if isinstance(exc, ForbiddenError):
        return FailedPrecondition(
            f"Tavily refused the request{suffix}: credits exhausted or plan limit reached{detail(exc)}",
            reason="CREDITS_EXHAUSTED",
            provider=PROVIDER,
        )
    if isinstance(exc, BadRequestError):
        return InvalidArgument(f"Tavily rejected the request{suffix}{detail(exc)}", reason="PROVIDER_BAD_REQUEST", provider=PROVIDER)
    if isinstance(exc, TavilyTimeoutError | TimeoutError | httpx.TimeoutException):
        return Unavailable(f"Tavily did not answer within {timeout:.1f} s", reason="TIMEOUT", provider=PROVIDER)
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code >= 500 or code == 408:
            return Unavailable(f"Tavily server error (HTTP {code})", retry_after=retry_after,
                               reason="PROVIDER_UNAVAILABLE", provider=PROVIDER)
        return FailedPrecondition(f"Tavily answered HTTP {code}", reason="PROVIDER_ERROR", provider=PROVIDER)
    if isinstance(exc, httpx.TransportError):
        return Unavailable(f"cannot reach Tavily: {type(exc).__name__}", reason="CONNECTION", provider=PROVIDER)
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return Unavailable("Tavily returned a malformed response", reason="MALFORMED_RESPONSE", provider=PROVIDER)
    if isinstance(exc, TypeError) and status is not None and status != 200:
        # The SDK does ``raise response.raise_for_status()`` on a 2xx other than 200 → ``raise None``.
        return Unavailable(f"Tavily answered HTTP {status}", reason="UNEXPECTED_STATUS", provider=PROVIDER)
    return None


def pool_sizes(concurrency: int, per_pool: int = POOL_SIZE) -> list[int]:
    """Connections of each HTTP client for ``concurrency`` connections in all: ``ceil(concurrency / per_pool)``
    clients, sizes as equal as can be (50 → 8, 7, 7, 7, 7, 7, 7), none over ``per_pool``, summing to ``concurrency``."""
    concurrency, per_pool = max(1, concurrency), max(1, per_pool)
    n = -(-concurrency // per_pool)
    base, extra = divmod(concurrency, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


class Lane:
    """One SDK client over its own ``httpx.AsyncClient`` of ``size`` connections; ``in_flight``: its calls running
    now, ``peak``: the most at once, ``calls``: calls it took since start."""

    __slots__ = ("calls", "http", "in_flight", "peak", "sdk", "size")

    def __init__(self, http: httpx.AsyncClient, sdk: AsyncTavilyClient, size: int) -> None:
        self.http = http
        self.sdk = sdk
        self.size = size
        self.in_flight = 0
        self.peak = 0
        self.calls = 0


class TavilyBackend:
    """:class:`~services.search.core.SearchBackend` over Tavily. Create once per process; close with :meth:`aclose`.

    ``guard`` (:class:`~shared.resilience.ProviderGuard`) holds the adaptive budget of concurrent Tavily calls
    (≤ ``settings.tavily_concurrency``; ``limiter`` is its live capacity limiter, whose ``statistics()`` show the
    calls in flight and waiting), the requests/min limit (``settings.tavily_rpm``, 1,000 for a production key),
    the circuit breaker and the retry policy. ``lanes``: the SDK clients (:class:`Lane`, :func:`pool_sizes`) the
    calls are spread over — each call takes the lane with the most free connections, so no lane has more calls in
    flight than its pool holds while the guard keeps the total ≤ ``concurrency``.
    """

    def __init__(self, settings: SearchSettings) -> None:
        self._api_key = settings.api_key("tavily")
        register_secret(self._api_key)
        self.base_url = settings.base_url("tavily")
        self.credit_usd = settings.tavily_credit_usd
        self.attempt_timeout = min(settings.provider_timeout_seconds, SDK_MAX_TIMEOUT)
        concurrency = max(1, settings.tavily_concurrency)
        self.guard = ProviderGuard.from_settings(settings, PROVIDER, concurrency=concurrency, label="Tavily")
        self.limiter = self.guard.limiter.capacity
        guard = self.guard

        async def on_response(response: httpx.Response) -> None:
            await _record_response(response)
            guard.note_headers(response.headers)

        # Should an SDK constructor raise, the httpx clients made so far have sent nothing and hold no connection:
        # there is nothing to close yet. From here on build() owns closing them (aclose).
        self.lanes: list[Lane] = []
        for size in pool_sizes(concurrency):
            http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=dict(settings.tavily_extra_headers),
                timeout=self.attempt_timeout,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                event_hooks={"response": [on_response]},
            )
            sdk = AsyncTavilyClient(api_key=self._api_key, api_base_url=self.base_url, client=http)
            self.lanes.append(Lane(http, sdk, size))

    async def aclose(self) -> None:
        """Close every SDK client and its HTTP client — all of them even when one fails (the first error is raised
        after)."""
        first: Exception | None = None
        for lane in self.lanes:
            for close in (lane.sdk.close, lane.http.aclose):
                try:
                    await close()
                except Exception as exc:  # close the others all the same
                    first = first or exc
        if first is not None:
            raise first

    def _lane(self) -> Lane:
        """The lane with the most free connections (the first of them on a tie: at low load, one warm pool)."""
        lanes = self.lanes
        best = lanes[0]
        free = best.size - best.in_flight
        for lane in lanes[1:]:
            f = lane.size - lane.in_flight
            if f > free:
                best, free = lane, f
        return best

    async def search(self, params: SearchParams, *, timeout_s: float) -> TavilyPage:
        """One Tavily search within ``timeout_s`` seconds — the caller's deadline, covering the waits for the
        budget and the rate limit, every attempt (each at most ``provider_timeout_seconds``) and the back-off
        between them. 429 / 5xx / timeouts / connection errors / malformed bodies are retried (exponential back-off
        with full jitter, at least Tavily's Retry-After); a timeout caused by the caller's deadline is
        ``DeadlineExceeded``."""
        if not self._api_key:
            raise FailedPrecondition("TAVILY_API_KEY is not set", reason="MISSING_API_KEY", provider=PROVIDER)
        deadline = Deadline(max(0.001, timeout_s))
        fields: dict[str, Any] = {
            "query_sha": query_hash(params.query),
            "query_chars": len(params.query),
            "depth": params.search_depth,
            "max_results": params.max_results,
            "raw": params.include_raw_content,
            "domains": len(params.include_domains) + len(params.exclude_domains),
        }
        return await self.guard.run(lambda n: self._attempt(params, deadline, fields, n), deadline=deadline)

    async def _attempt(self, params: SearchParams, deadline: Deadline, fields: dict[str, Any], n: int) -> TavilyPage:
        holder: dict[str, Any] = {}
        token = _last_response.set(holder)
        fields = {**fields, "attempt": n}
        started = time.perf_counter()
        timeout = self.attempt_timeout
        call = current_call.get()
        sent = False
        try:
            async with self.guard.attempt(deadline):
                started = time.perf_counter()
                timeout = min(deadline.remaining(), self.attempt_timeout)
                if call is not None:
                    call.sent += 1
                sent = True
                try:
                    lane = self._lane()
                    lane.in_flight += 1
                    lane.calls += 1
                    if lane.in_flight > lane.peak:
                        lane.peak = lane.in_flight
                    try:
                        async with asyncio.timeout(timeout):
                            body = await lane.sdk.search(
                                params.query,
                                search_depth=params.search_depth,
                                max_results=params.max_results,
                                include_raw_content=params.include_raw_content,
                                include_domains=list(params.include_domains) or None,
                                exclude_domains=list(params.exclude_domains) or None,
                                include_usage=True,
                                timeout=timeout,
                            )
                    finally:
                        lane.in_flight -= 1
                    page = parse_response(body, params)
                except VantageError:
                    raise
                except Exception as exc:
                    err = map_error(exc, status=holder.get("status"), retry_after=holder.get("retry_after"),
                                    timeout=timeout)
                    if err is None:
                        raise
                    if err.reason == "TIMEOUT" and call is not None:
                        call.cut += 1  # sent, then cut by our timeout: Tavily may have answered and billed it
                    if err.reason == "TIMEOUT" and timeout < self.attempt_timeout:
                        err = DeadlineExceeded(f"the deadline passed while Tavily was answering ({timeout:.2f} s)",
                                               reason="DEADLINE", provider=PROVIDER)
                    raise err from None
        except VantageError as err:
            self._log_failure(fields, started, err, holder)
            raise
        except asyncio.CancelledError:  # the caller went away (deadline, cancel): httpx closes the connection
            if sent and call is not None:
                call.cut += 1  # sent: Tavily may bill it (the servicer lets a sent keyed call finish; a stop cuts it)
            log.info("tavily_search", **fields, outcome="CANCELLED", ms=round((time.perf_counter() - started) * 1000, 1))
            raise
        finally:
            _last_response.reset(token)
        metrics.observe_provider_call("tavily", time.perf_counter() - started, "ok", page.credits * self.credit_usd)
        log.info(
            "tavily_search",
            **fields,
            outcome="OK",
            credits=page.credits,
            results=len(page.hits),
            ms=round((time.perf_counter() - started) * 1000, 1),
            tavily_request_id=page.request_id,
            concurrency_limit=self.guard.limit,
        )
        return page

    @staticmethod
    def _log_failure(fields: dict[str, Any], started: float, err: VantageError, holder: dict[str, Any]) -> None:
        metrics.observe_provider_call("tavily", time.perf_counter() - started, err.code.name)
        log.warning(
            "tavily_search",
            **fields,
            outcome=err.code.name,
            reason=err.reason,
            http_status=holder.get("status"),
            error=err.message,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
