"""Resilience to provider faults: adaptive concurrency (AIMD), circuit breaker, rate limits, retries with
exponential back-off and full jitter — composed per provider by :class:`ProviderGuard`.

One guard per external provider per process (OpenAI, Anthropic, Perplexity, Tavily, …), made once at start-up.
Every attempt at a provider call goes through :meth:`ProviderGuard.attempt`, and :meth:`ProviderGuard.run` retries
attempts that failed with a retryable error::

    guard = ProviderGuard.from_settings(settings, "openai", concurrency=settings.openai_concurrency)

    async def one(attempt: int) -> Answer:
        async with guard.attempt(deadline, tokens=estimate):
            return await client.call(timeout=min(deadline.remaining(), per_attempt_timeout))

    answer = await guard.run(one, deadline=deadline)

What happens on each attempt, in order:

1. **Circuit breaker** (:class:`CircuitBreaker`; Nygard, *Release It!*, and the closed / open / half-open states of
   Hystrix and resilience4j): after ``failure_threshold`` consecutive failures (5xx, timeouts, connection errors,
   malformed bodies) the circuit opens and every call fails at once with ``UNAVAILABLE`` (reason
   ``CIRCUIT_OPEN``) and a ``RetryInfo`` carrying the remaining cool-down, instead of piling up calls on a dead
   provider. After the cool-down one probe call is let through (half-open): success closes the circuit, failure opens
   it again. 429s are neither successes nor failures (the provider is alive, only busy: AIMD handles them).
2. **Rate limits** (:class:`RateLimits`): requests/min and tokens/min as leaky buckets (aiolimiter), plus a pause
   until the reset announced by the provider's rate-limit headers when they say nothing is left
   (``x-ratelimit-remaining-requests: 0`` + ``x-ratelimit-reset-requests: 1.5s`` from OpenAI,
   ``anthropic-ratelimit-requests-remaining: 0`` + ``…-reset: <RFC 3339>``, IETF ``ratelimit-remaining`` /
   ``ratelimit-reset``). Waiting counts against the call's deadline.
3. **Adaptive concurrency** (:class:`AIMDLimiter`): Netflix concurrency-limits' ``AIMDLimit``
   (github.com/Netflix/concurrency-limits, ``AIMDLimit.java``; reference/performance.md §3.3). On a drop — a 429 /
   ``RESOURCE_EXHAUSTED`` or a timeout — ``limit ← max(min_limit, min(limit − 1, ⌊limit · 0.9⌋))`` (once per
   window); on a success while the limiter was at least half used (``inflight · 2 ≥ limit``) the limit grows by one
   per window of ``limit`` successes (see :class:`AIMDLimiter` for why not by one per success); never above the
   configured budget (the provider's ``*_concurrency`` setting). Other errors leave the limit alone. The limit is
   a resizable ``anyio.CapacityLimiter`` (``total_tokens``), exported as the ``provider_concurrency_limit`` gauge and
   logged when it drops.

4. **Fair share between callers** (:class:`FairShare`): the calls of one provider are admitted per *caller* — the
   gRPC peer connection that asked (:data:`current_caller`, set by the server interceptor; the shared bearer token
   says nothing about who calls, and is never a key or a label) — so that one client cannot take the whole budget
   (the Tavily budget of the search service, an LLM provider's): a caller alone may use every slot, but while other
   callers are waiting it holds at most ``⌈limit / active callers⌉`` of them (max-min fair share, the idea of
   Linux CFS and of weighted fair queueing with equal weights); its surplus calls wait at the gate, not in the
   provider's queue, so a newcomer's call overtakes them. Calls outside any RPC (background work) share one
   anonymous caller.

Retries (:meth:`ProviderGuard.run`, :class:`RetryPolicy`): on 429 / 5xx / timeouts / connection errors / malformed
bodies, at most ``max_attempts`` attempts in all (gRFC A6 caps client retries at 5 attempts), waiting
``random(0, min(initial · 2ⁿ⁻¹, max))`` seconds — exponential back-off with *full jitter* (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015; gRFC A6 "Client Retries") — but at least the provider's ``Retry-After`` /
``retry-after-ms``. The call's deadline (the RPC's) covers every attempt and every wait: a retry that could not
start before it is not tried, and a ``Retry-After`` longer than ``max_retry_after`` (or than the time left) ends the
call at once with ``RESOURCE_EXHAUSTED`` + ``RetryInfo`` so that the caller can decide. Circuit-open errors are never
retried here (failing fast is their point).

**Deadlines are the caller's, failures are the provider's**: an attempt that timed out because the *call's* deadline
(the RPC's, forwarded) ran out — the time left was at most :data:`DEADLINE_SLACK` when it ended — says nothing
about the provider: it feeds neither the breaker nor the AIMD limit (:func:`classify` with the deadline gives
``IGNORE``), and :meth:`ProviderGuard.attempt` raises it as ``DeadlineExceeded`` (``DEADLINE_EXCEEDED``), never as a
retryable ``UNAVAILABLE``. A client that sends 300 calls with a 20 ms deadline therefore leaves the circuit closed
and the concurrency limit where it was (``tests/resilience/test_res_client_deadlines.py``).

Units: seconds for every duration, tokens as counted by :func:`estimate_tokens` (≈ 4 characters per token).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import enum
import math
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import structlog
from aiolimiter import AsyncLimiter
from prometheus_client import Counter, Gauge

from shared.errors import (
    DeadlineExceeded,
    ResourceExhausted,
    RetryableError,
    Unavailable,
    VantageError,
)

T = TypeVar("T")
log = structlog.get_logger("vantage.resilience")

#: ErrorInfo reason of the fail-fast error of an open circuit.
CIRCUIT_OPEN = "CIRCUIT_OPEN"
#: ErrorInfo reasons (of :class:`~shared.errors.Unavailable`) that mean "the provider did not answer in time".
TIMEOUT_REASONS = frozenset({"PROVIDER_TIMEOUT", "TIMEOUT"})
#: Seconds left on a call's deadline at or below which a timeout is the caller's deadline passing (an HTTP timeout
#: set to the time left fires within a few milliseconds of it), not the provider being slow.
DEADLINE_SLACK = 0.005
#: Characters per token of the simple estimate (OpenAI's rule of thumb for English text).
CHARS_PER_TOKEN = 4

CONCURRENCY_LIMIT = Gauge(
    "provider_concurrency_limit", "Current adaptive (AIMD) concurrency limit of a provider.", ["provider"]
)
CONCURRENCY_MAX = Gauge("provider_concurrency_max", "Configured concurrency budget of a provider.", ["provider"])
CIRCUIT_STATE = Gauge(
    "provider_circuit_state", "Circuit breaker state of a provider: 0 closed, 1 half-open, 2 open.", ["provider"]
)
RETRIES = Counter("provider_retries_total", "Provider call attempts retried, by cause.", ["provider", "cause"])
FAIR_SHARE_WAITS = Counter(
    "provider_fair_share_waits_total",
    "Provider calls that waited because their caller already held its fair share of the provider's slots.",
    ["provider"],
)

#: Who the current RPC is for (an opaque key: the peer connection); "" outside any RPC. Set by
#: :class:`shared.grpc_server.ContextInterceptor`, read by :class:`FairShare` through :meth:`ProviderGuard.attempt`.
current_caller: contextvars.ContextVar[str] = contextvars.ContextVar("vantage_caller", default="")


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` by the simple estimate: ⌈characters / 4⌉ (0 for ""). Deliberately provider-agnostic and
    slightly pessimistic for English prose, so a prompt trimmed to fit by this estimate fits in practice."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


# --- outcome classification ----------------------------------------------------------------------------------


class Signal(enum.Enum):
    """What one attempt says about the provider."""

    SUCCESS = "success"  # answered
    OVERLOAD = "overload"  # 429 / RESOURCE_EXHAUSTED: alive but over its limit
    TIMEOUT = "timeout"  # did not answer within the attempt's timeout
    FAILURE = "failure"  # 5xx, connection error, malformed body
    CLIENT_ERROR = "client_error"  # answered, but refused the request (4xx): the provider is healthy
    IGNORE = "ignore"  # says nothing about the provider (cancelled, our deadline, our bug)


def deadline_passed(deadline: Any | None, slack: float = DEADLINE_SLACK) -> bool:
    """True when ``deadline`` (a :class:`shared.grpc_client.Deadline`; None = no deadline) has at most ``slack``
    seconds left."""
    return deadline is not None and deadline.remaining(0.0) <= slack


def is_timeout(exc: BaseException) -> bool:
    """True for a provider timeout (``Unavailable`` with a reason in :data:`TIMEOUT_REASONS`)."""
    return isinstance(exc, Unavailable) and exc.reason in TIMEOUT_REASONS


def classify(exc: BaseException | None, deadline: Any | None = None) -> Signal:
    """The :class:`Signal` of an attempt that ended with ``exc`` (None = success). With the call's ``deadline``, a
    timeout that ended with the deadline spent (:func:`deadline_passed`) is ``IGNORE``: the caller's deadline, not
    the provider's fault."""
    if exc is None:
        return Signal.SUCCESS
    if isinstance(exc, ResourceExhausted):
        return Signal.OVERLOAD
    if isinstance(exc, Unavailable):
        if exc.reason == CIRCUIT_OPEN:
            return Signal.IGNORE
        if exc.reason in TIMEOUT_REASONS:
            return Signal.IGNORE if deadline_passed(deadline) else Signal.TIMEOUT
        return Signal.FAILURE
    if isinstance(exc, DeadlineExceeded):
        return Signal.IGNORE  # the caller's deadline, not the provider's fault
    if isinstance(exc, VantageError):
        return Signal.CLIENT_ERROR
    return Signal.IGNORE


def is_retryable_signal(sig: Signal) -> bool:
    return sig in (Signal.OVERLOAD, Signal.TIMEOUT, Signal.FAILURE)


# --- adaptive concurrency --------------------------------------------------------------------------------------


def aimd_next(limit: float, inflight: int, dropped: bool, *, backoff_ratio: float = 0.9, min_limit: int = 1,
              max_limit: int, increase: float = 1.0) -> float:
    """Netflix ``AIMDLimit._update``: the next limit after one sample.

    ``inflight`` is the number of calls in flight when the sampled call started (itself included); ``dropped`` is
    true for a 429 / RESOURCE_EXHAUSTED or a timeout. On a drop ``max(min_limit, min(limit − 1, ⌊limit · ratio⌋))``;
    else, when ``inflight · 2 ≥ limit``, ``limit + increase`` (Netflix: 1 per sample). Clamped to
    ``[min_limit, max_limit]``.
    """
    if dropped:
        limit = max(min_limit, min(int(limit) - 1, int(limit * backoff_ratio)))
    elif inflight * 2 >= int(limit):
        limit += increase
    return max(float(min_limit), min(float(max_limit), limit))


class AIMDLimiter:
    """Adaptive concurrency limit of one provider over a resizable ``anyio.CapacityLimiter``.

    ``max_limit`` is the configured budget (the limit never grows past it); the limit starts there (``initial``,
    default = ``max_limit``) and only shrinks when the provider signals overload. ``adaptive=False`` keeps it fixed.

    Decrease: exactly Netflix's (:func:`aimd_next`), at most once per window — a drop reported by a call that
    started before the last decrease is not counted again, as TCP cuts its window once per round trip (RFC 6582
    §3.2); without that, a burst of 429s from calls already in flight collapses the limit to 1.
    Increase: ``per_window=True`` (default) adds ``1 / limit`` per saturated success, i.e. +1 per window of
    ``limit`` completions — TCP congestion avoidance (RFC 5681 §3.1) — instead of Netflix's +1 per success, which
    doubles the limit every round trip. Measured against a fake API that answers 429 above 20 concurrent calls (60
    closed-loop workers, 20 ms calls, ``tests/resilience/test_res_aimd.py``; goodput relative to exactly 20 calls in
    flight): +1 per success holds ~82–87 % goodput but gets a 429 on ~31 % of calls; +1 per window keeps ~90–92 %
    goodput with ~2 % 429s (reference/performance.md §7 goal 8: ≥ 85 %, ≤ 5 %). ``per_window=False`` is Netflix's
    rule verbatim.
    """

    def __init__(
        self,
        name: str,
        max_limit: int,
        *,
        initial: int | None = None,
        min_limit: int = 1,
        backoff_ratio: float = 0.9,
        adaptive: bool = True,
        per_window: bool = True,
        capacity: anyio.CapacityLimiter | None = None,
    ) -> None:
        if not 0.5 <= backoff_ratio < 1:
            raise ValueError(f"backoff_ratio must be in [0.5, 1), got {backoff_ratio}")  # Netflix's allowed range
        self.name = name
        self.max_limit = max(1, int(max_limit))
        self.min_limit = max(1, min(int(min_limit), self.max_limit))
        self.backoff_ratio = backoff_ratio
        self.adaptive = adaptive
        self.per_window = per_window
        start = self.max_limit if initial is None else max(self.min_limit, min(int(initial), self.max_limit))
        self._limit = float(start)  # fractional: per-window growth adds 1/limit per success
        self.capacity = capacity or anyio.CapacityLimiter(start)
        self.capacity.total_tokens = start
        self.drops = 0
        self.epoch = 0  # decreases so far: attempts started before the last one carry an older epoch
        CONCURRENCY_LIMIT.labels(name).set(start)
        CONCURRENCY_MAX.labels(name).set(self.max_limit)

    @property
    def limit(self) -> int:
        return int(self.capacity.total_tokens)

    @property
    def in_flight(self) -> int:
        return int(self.capacity.borrowed_tokens)

    @property
    def waiting(self) -> int:
        return int(self.capacity.statistics().tasks_waiting)

    def on_sample(self, inflight: int, sig: Signal, epoch: int | None = None) -> None:
        """Feed one finished attempt (``inflight`` as it was when the attempt started; ``epoch`` the limiter's
        :attr:`epoch` then). A drop from an attempt that started before the last decrease is not counted again."""
        if not self.adaptive or sig not in (Signal.SUCCESS, Signal.OVERLOAD, Signal.TIMEOUT):
            return
        dropped = sig is not Signal.SUCCESS
        if dropped and epoch is not None and epoch < self.epoch:
            return  # this window was already cut (TCP's one reduction per window, RFC 6582 §3.2)
        before = self.limit
        self._limit = aimd_next(
            self._limit, inflight, dropped, backoff_ratio=self.backoff_ratio, min_limit=self.min_limit,
            max_limit=self.max_limit, increase=1.0 / max(1.0, self._limit) if self.per_window else 1.0,
        )
        after = int(self._limit)
        if after == before:
            return
        self.capacity.total_tokens = after
        CONCURRENCY_LIMIT.labels(self.name).set(after)
        if dropped:
            self.drops += 1
            self.epoch += 1
            log.info("concurrency_limit", provider=self.name, limit=after, previous=before, cause=sig.value,
                     in_flight=self.in_flight)
        else:
            log.debug("concurrency_limit", provider=self.name, limit=after, previous=before, cause="success")

    @contextlib.asynccontextmanager
    async def slot(self, deadline: Any | None = None, label: str = "") -> AsyncIterator[_Slot]:
        """Hold one slot for the block; waiting for it counts against ``deadline`` (``DeadlineExceeded`` when it
        passes). The block's outcome is fed to the limit via the yielded slot's :meth:`_Slot.record` (or, when not
        recorded, from the exception that left the block)."""
        token = object()
        try:
            if deadline is None:
                await self.capacity.acquire_on_behalf_of(token)
            else:
                with anyio.fail_after(max(0.0, deadline.remaining(0.0))):
                    await self.capacity.acquire_on_behalf_of(token)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the deadline passed while waiting for one of {self.limit} {label or self.name} call slots",
                provider=self.name, reason="BUDGET_WAIT",
            ) from None
        s = _Slot(self.in_flight, self.epoch)
        try:
            yield s
        except BaseException as e:
            if s.signal is None:
                s.signal = classify(e, deadline) if not isinstance(e, asyncio.CancelledError) else Signal.IGNORE
            raise
        finally:
            self.capacity.release_on_behalf_of(token)
            self.on_sample(s.inflight, s.signal or Signal.SUCCESS, s.epoch)


@dataclass
class _Slot:
    inflight: int
    epoch: int = 0
    signal: Signal | None = None

    def record(self, sig: Signal) -> None:
        self.signal = sig


# --- fair share between callers ------------------------------------------------------------------------------


class FairShare:
    """Max-min fair admission of callers to a provider's ``limit`` slots (see the module docstring, step 4).

    A caller is *inside* from admission to the end of its attempt (waiting for the provider's slot or holding it).
    A call is admitted at once when its caller has fewer than ``⌈limit / active⌉`` calls inside (``active`` =
    callers inside or waiting), or when fewer than ``limit`` calls are inside in all and no other caller is waiting;
    otherwise it waits until one of those holds. A caller alone therefore uses every slot (but queues its surplus
    here, not in the provider's queue), and a greedy caller keeps about its share while others want slots.
    State per caller lives only while it has calls inside or waiting (memory bounded by concurrent calls).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._inside: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._wakers: set[asyncio.Future[None]] = set()
        self._total = 0  # sum of _inside
        self.waits = 0

    def share(self, limit: int) -> int:
        """Slots one caller may hold while others wait: ``⌈limit / active callers⌉`` (at least 1)."""
        active = len(self._inside.keys() | self._waiting.keys())
        return max(1, math.ceil(limit / max(1, active)))

    def _may_enter(self, caller: str, limit: int) -> bool:
        if self._inside.get(caller, 0) < self.share(limit):
            return True
        # Over its share: only a free slot that no other caller waits for (work-conserving; a surplus call waits
        # here, at the gate, rather than in the provider's FIFO queue where a newcomer would queue behind it).
        return self._total < limit and not any(c != caller for c in self._waiting)

    def inside(self, caller: str) -> int:
        """Calls of ``caller`` admitted and not finished."""
        return self._inside.get(caller, 0)

    @contextlib.asynccontextmanager
    async def turn(self, caller: str, limit: Callable[[], int], deadline: Any | None = None) -> AsyncIterator[None]:
        """Be inside for the block (``limit()`` = the provider's current limit); waiting counts against
        ``deadline`` (``DeadlineExceeded`` when it passes)."""
        if not self._may_enter(caller, limit()):
            self.waits += 1
            FAIR_SHARE_WAITS.labels(self.name).inc()
            self._waiting[caller] = self._waiting.get(caller, 0) + 1
            loop = asyncio.get_running_loop()
            try:
                with anyio.fail_after(max(0.0, deadline.remaining(0.0)) if deadline is not None else None):
                    while True:
                        self._waiting[caller] -= 1  # our own entry is not "another caller waiting"
                        ok = self._may_enter(caller, limit())
                        self._waiting[caller] += 1
                        if ok:
                            break
                        waker: asyncio.Future[None] = loop.create_future()
                        self._wakers.add(waker)
                        try:
                            await waker
                        finally:
                            self._wakers.discard(waker)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the deadline passed while waiting for this caller's fair share of the {self.name} budget",
                    provider=self.name, reason="FAIR_SHARE_WAIT",
                ) from None
            finally:
                left = self._waiting[caller] - 1
                if left > 0:
                    self._waiting[caller] = left
                else:
                    del self._waiting[caller]
                self._wake()
        self._inside[caller] = self._inside.get(caller, 0) + 1
        self._total += 1
        try:
            yield
        finally:
            self._total -= 1
            left = self._inside[caller] - 1
            if left > 0:
                self._inside[caller] = left
            else:
                del self._inside[caller]
            self._wake()

    def _wake(self) -> None:
        """Let every waiter re-check (no lock, no await: safe in a ``finally`` of a cancelled call)."""
        for w in self._wakers:
            if not w.done():
                w.set_result(None)
        self._wakers.clear()


# --- circuit breaker -------------------------------------------------------------------------------------------


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Per-provider circuit breaker: CLOSED → (``failure_threshold`` consecutive failures) → OPEN → (after
    ``cooldown`` s) HALF_OPEN: one probe call → success: CLOSED, failure: OPEN again.

    ``failure_threshold`` ≤ 0 disables it. ``clock`` is ``time.monotonic`` (injectable for tests).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        cooldown: float,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.label = label or name
        self.failure_threshold = failure_threshold
        self.cooldown = max(0.0, cooldown)
        self._clock = clock
        self.state = CircuitState.CLOSED
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.opens = 0
        self._probe = False
        CIRCUIT_STATE.labels(name).set(0)

    @property
    def enabled(self) -> bool:
        return self.failure_threshold > 0

    def remaining_cooldown(self) -> float:
        return max(0.0, self.opened_at + self.cooldown - self._clock())

    def _set(self, state: CircuitState) -> None:
        if state is not self.state:
            log.info("circuit_state", provider=self.name, state=state.name.lower(), previous=self.state.name.lower(),
                     consecutive_failures=self.failures)
        self.state = state
        CIRCUIT_STATE.labels(self.name).set(int(state))

    def _open_error(self, retry_after: float) -> Unavailable:
        return Unavailable(
            f"{self.label} is failing ({self.failures} consecutive failures): circuit open, retry in "
            f"{retry_after:.1f} s",
            retry_after=retry_after, provider=self.name, reason=CIRCUIT_OPEN,
        )

    def check(self) -> bool:
        """Before a call: raise the fail-fast ``Unavailable(reason=CIRCUIT_OPEN, retry_after=remaining cool-down)``
        when the circuit is open (or half-open with its probe already out); True when this call is the probe."""
        if not self.enabled:
            return False
        if self.state is CircuitState.OPEN:
            left = self.remaining_cooldown()
            if left > 0:
                raise self._open_error(left)
            self._set(CircuitState.HALF_OPEN)
            self._probe = False
        if self.state is CircuitState.HALF_OPEN:
            if self._probe:
                raise self._open_error(max(0.1, self.cooldown / 2))
            self._probe = True
            return True
        return False

    def record(self, sig: Signal, *, probe: bool) -> None:
        """After a call: feed its :class:`Signal` (``probe`` = :meth:`check` returned True for it)."""
        if not self.enabled:
            return
        if probe:
            self._probe = False
        if sig in (Signal.SUCCESS, Signal.CLIENT_ERROR):
            self.failures = 0
            if self.state is not CircuitState.CLOSED:
                self._set(CircuitState.CLOSED)
        elif sig in (Signal.FAILURE, Signal.TIMEOUT):
            self.failures += 1
            if self.state is CircuitState.HALF_OPEN or (
                self.state is CircuitState.CLOSED and self.failures >= self.failure_threshold
            ):
                self.opened_at = self._clock()
                self.opens += 1
                self._set(CircuitState.OPEN)


# --- rate limits -----------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str) -> float | None:
    """Seconds of an OpenAI reset duration (``"1s"``, ``"6m0s"``, ``"120ms"``, ``"1h2m3.5s"``) or a plain number of
    seconds; None when unparsable."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait that a response's headers ask for: ``retry-after-ms`` (milliseconds; OpenAI's, honoured by
    its SDK, providers.md §3.3) first, else ``retry-after`` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3; a
    date in the past is 0). None when both are absent or unparsable (negative, not finite). ``headers`` is any
    case-insensitive mapping (``httpx.Headers``) or a dict with lower-case names; ``now`` is Unix seconds (tests)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        secs = _seconds(ms, 1000.0)
        if secs is not None:
            return secs
    ra = headers.get("retry-after")
    if not ra:
        return None
    secs = _seconds(ra, 1.0)
    if secs is not None:
        return secs
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110's IMF-fixdate is GMT; an obsolete form may come without a zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds(raw: str, per_second: float) -> float | None:
    """``raw`` / ``per_second`` when ``raw`` is a finite, non-negative number; else None."""
    try:
        value = float(raw) / per_second
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _reset_seconds(value: str, now: float) -> float | None:
    """Seconds until a reset given as a duration, delta-seconds, epoch seconds or an RFC 3339 timestamp."""
    secs = parse_duration(value)
    if secs is not None:
        return secs - now if secs > 1e9 else secs  # epoch seconds
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - now)


#: (remaining header, reset header) pairs of the rate-limit headers we honour.
RATE_LIMIT_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),  # OpenAI
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),  # Anthropic
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset"),
    ("ratelimit-remaining", "ratelimit-reset"),  # IETF draft-ietf-httpapi-ratelimit-headers
    ("x-ratelimit-remaining", "x-ratelimit-reset"),
)


def exhausted_for(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds until the provider's announced reset when its rate-limit headers say nothing is left (a remaining
    count of 0); None when they do not (or are absent). The longest of the exhausted windows wins."""
    if not headers:
        return None
    now = time.time() if now is None else now
    best: float | None = None
    for rem_name, reset_name in RATE_LIMIT_HEADERS:
        rem = headers.get(rem_name)
        if rem is None:
            continue
        try:
            if float(rem) > 0:
                continue
        except ValueError:
            continue
        reset = headers.get(reset_name)
        secs = _reset_seconds(reset, now) if reset else None
        if secs is not None and secs > 0:
            best = secs if best is None else max(best, secs)
    return best


class RateLimits:
    """Requests/min and tokens/min of one provider (0 = unlimited), as aiolimiter leaky buckets, plus a pause
    set from the provider's own rate-limit headers (:meth:`note_headers`)."""

    #: Longest pause taken from headers (s): a bogus reset must not stall a provider for hours.
    MAX_PAUSE = 120.0

    def __init__(self, name: str, *, rpm: float = 0, tpm: float = 0, label: str = "") -> None:
        self.name = name
        self.label = label or name
        self.rpm = rpm
        self.tpm = tpm
        self._requests = AsyncLimiter(rpm, 60) if rpm > 0 else None
        self._tokens = AsyncLimiter(tpm, 60) if tpm > 0 else None
        self.paused_until = 0.0  # time.monotonic()

    def note_headers(self, headers: Mapping[str, str] | None) -> None:
        """Honour rate-limit headers of any response: pause new calls until the announced reset when they say
        the window is used up."""
        secs = exhausted_for(headers)
        if secs is None:
            return
        until = time.monotonic() + min(secs, self.MAX_PAUSE)
        if until > self.paused_until:
            self.paused_until = until
            log.info("rate_limit_pause", provider=self.name, seconds=round(min(secs, self.MAX_PAUSE), 3))

    async def acquire(self, tokens: int = 0, deadline: Any | None = None) -> None:
        """Wait for the header pause, one request and ``tokens`` tokens. ``ResourceExhausted`` (with the wait as
        retry-after) when the pause outlasts the deadline; ``DeadlineExceeded`` when the buckets do."""
        pause = self.paused_until - time.monotonic()
        if pause > 0:
            if deadline is not None and pause >= deadline.remaining(0.0):
                raise ResourceExhausted(
                    f"{self.label} rate limit: no requests left for {pause:.1f} s (provider's rate-limit headers)",
                    retry_after=pause, provider=self.name, reason="PROVIDER_RATE_LIMITED",
                )
            await asyncio.sleep(pause)
        if self._requests is None and self._tokens is None:
            return
        try:
            with anyio.fail_after(deadline.remaining(0.0) if deadline is not None else None):
                if self._requests is not None:
                    await self._requests.acquire()
                if self._tokens is not None and tokens > 0:
                    await self._tokens.acquire(min(float(tokens), self.tpm))
        except TimeoutError:
            raise DeadlineExceeded(
                f"the deadline passed while waiting for the {self.label} rate limit "
                f"({self.rpm:g} requests/min, {self.tpm:g} tokens/min)", provider=self.name, reason="RATE_LIMIT_WAIT",
            ) from None


# --- retries ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` attempts in all (1 = no retry); back-off ``random(0, min(initial · 2ⁿ⁻¹, maximum))`` s
    before retry n (full jitter), at least the provider's retry-after; a retry-after above ``max_retry_after`` s
    is not waited for here (the error goes back to the caller with its RetryInfo)."""

    max_attempts: int = 4
    initial: float = 0.5
    maximum: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, retry: int, hint: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        cap = min(self.maximum, self.initial * 2 ** max(0, retry - 1))
        wait = (rng or random).uniform(0, max(0.0, cap))
        return max(wait, hint or 0.0)


# --- the guard -------------------------------------------------------------------------------------------------


class ProviderGuard:
    """Breaker + rate limits + adaptive concurrency + retries of one provider (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        limiter: AIMDLimiter,
        breaker: CircuitBreaker,
        rates: RateLimits,
        retry: RetryPolicy,
        label: str = "",
        fair: bool = True,
    ) -> None:
        self.name = name
        self.label = label or name
        self.limiter = limiter
        self.breaker = breaker
        self.rates = rates
        self.retry = retry
        self.fair = FairShare(name) if fair else None
        self.attempts = 0
        self.retries = 0
        #: Seconds a successful attempt takes, as an exponentially weighted moving average (0 until the first one):
        #: a retry is not started when the back-off plus this much would outlast the deadline.
        self.latency = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        name: str,
        *,
        concurrency: int,
        label: str = "",
        capacity: anyio.CapacityLimiter | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> ProviderGuard:
        """The guard of provider ``name`` from :class:`shared.config.Settings`: budget ``concurrency`` (the
        ``*_concurrency`` setting), ``<name>_rpm`` / ``<name>_tpm``, the circuit and retry settings."""
        label = label or name
        rpm = float(getattr(settings, f"{name}_rpm", 0) or 0) if rpm is None else rpm
        tpm = float(getattr(settings, f"{name}_tpm", 0) or 0) if tpm is None else tpm
        return cls(
            name,
            label=label,
            limiter=AIMDLimiter(
                name, max(1, concurrency), capacity=capacity,
                adaptive=bool(getattr(settings, "adaptive_concurrency", True)),
                backoff_ratio=float(getattr(settings, "aimd_backoff_ratio", 0.9)),
            ),
            breaker=CircuitBreaker(
                name, label=label,
                failure_threshold=int(getattr(settings, "circuit_failure_threshold", 10)),
                cooldown=float(getattr(settings, "circuit_cooldown_seconds", 10.0)),
            ),
            rates=RateLimits(name, rpm=rpm, tpm=tpm, label=label),
            retry=RetryPolicy(
                max_attempts=max(1, int(getattr(settings, "provider_max_attempts", 4))),
                initial=float(getattr(settings, "retry_initial_seconds", 0.5)),
                maximum=float(getattr(settings, "retry_max_seconds", 8.0)),
                max_retry_after=float(getattr(settings, "provider_retry_after_max_seconds", 60.0)),
            ),
            fair=bool(getattr(settings, "provider_fair_share", True)),
        )

    @property
    def limit(self) -> int:
        """Current adaptive concurrency limit."""
        return self.limiter.limit

    def status(self) -> dict[str, Any]:
        """Snapshot for RPCs and logs: current/max limit, in flight, waiting, circuit state, attempts, retries."""
        return {
            "current_limit": self.limiter.limit,
            "max_limit": self.limiter.max_limit,
            "in_flight": self.limiter.in_flight,
            "waiting": self.limiter.waiting,
            "circuit_state": self.breaker.state.name.lower(),
            "attempts": self.attempts,
            "retries": self.retries,
        }

    def note_headers(self, headers: Mapping[str, str] | None) -> None:
        self.rates.note_headers(headers)

    @contextlib.asynccontextmanager
    async def attempt(self, deadline: Any | None = None, *, tokens: int = 0) -> AsyncIterator[_Slot]:
        """One attempt: circuit check (fail fast), rate limits, a concurrency slot — all within ``deadline`` — then
        the block; its outcome (the exception leaving it, or the signal recorded on the yielded slot) feeds the
        breaker and the limiter. A provider timeout that ended with ``deadline`` spent feeds neither and leaves the
        block as ``DeadlineExceeded`` (reason ``DEADLINE``); so does a ``deadline`` already spent on entry (no call is
        made: it could not finish)."""
        if deadline_passed(deadline):
            raise DeadlineExceeded(
                f"the deadline passed before {self.label} could be called", provider=self.name, reason="DEADLINE"
            )
        probe = self.breaker.check()
        sig = Signal.IGNORE
        try:
            await self.rates.acquire(tokens, deadline)
            async with self._turn(deadline), self.limiter.slot(deadline, self.label) as s:
                self.attempts += 1
                started = time.monotonic()
                try:
                    yield s
                except BaseException as e:
                    if s.signal is None:
                        s.signal = Signal.IGNORE if isinstance(e, asyncio.CancelledError) else classify(e, deadline)
                    if is_timeout(e) and deadline_passed(deadline):
                        s.signal = Signal.IGNORE
                        raise DeadlineExceeded(
                            f"the deadline passed while {self.label} was answering", provider=self.name,
                            reason="DEADLINE",
                        ) from e
                    raise
                finally:
                    sig = s.signal or Signal.SUCCESS
                    if sig is Signal.SUCCESS:
                        self._note_latency(time.monotonic() - started)
        finally:
            self.breaker.record(sig, probe=probe)

    #: Weight of the newest sample in :attr:`latency` (an EWMA over roughly the last 1 / α = 5 successes).
    LATENCY_ALPHA = 0.2

    def _note_latency(self, seconds: float) -> None:
        self.latency = seconds if self.latency == 0.0 else self.latency + self.LATENCY_ALPHA * (seconds - self.latency)

    def _turn(self, deadline: Any | None) -> contextlib.AbstractAsyncContextManager[None]:
        """The caller's fair-share turn (:class:`FairShare`), or nothing when fairness is off."""
        if self.fair is None:
            return contextlib.nullcontext()
        return self.fair.turn(current_caller.get(), lambda: self.limiter.limit, deadline)

    async def run(self, fn: Callable[[int], Awaitable[T]], *, deadline: Any | None = None) -> T:
        """Call ``fn(attempt)`` (attempt = 1, 2, …; each call should use :meth:`attempt`) until it succeeds, fails
        with a non-retryable error, runs out of attempts (``retry.max_attempts`` in all), or the next retry could
        not finish before ``deadline`` — the caller's, e.g. the RPC's remaining time: its back-off plus the
        provider's usual answer time (:attr:`latency`, at least :data:`DEADLINE_SLACK`) would outlast it.

        Raises the last error, at once: a provider that keeps failing costs at most ``max_attempts`` calls and
        answers its own error (UNAVAILABLE, RESOURCE_EXHAUSTED + RetryInfo) before the deadline rather than
        DEADLINE_EXCEEDED after it. An attempt cut by the deadline itself raises ``DeadlineExceeded`` and feeds
        neither the breaker nor the limiter (:meth:`attempt`)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn(attempt)
            except RetryableError as e:
                sig = classify(e)
                if e.reason == CIRCUIT_OPEN or not is_retryable_signal(sig) or attempt >= self.retry.max_attempts:
                    raise
                hint = e.retry_after
                if hint is not None and hint > self.retry.max_retry_after:
                    raise
                wait = self.retry.backoff(attempt, hint)
                left = deadline.remaining(0.0) if deadline is not None else math.inf
                if wait + max(self.latency, DEADLINE_SLACK) >= left:
                    raise
                self.retries += 1
                RETRIES.labels(self.name, sig.value).inc()
                log.info("provider_retry", provider=self.name, attempt=attempt, cause=sig.value,
                         reason=e.reason, wait_s=round(wait, 3), retry_after=hint, limit=self.limit)
                await asyncio.sleep(wait)


__all__ = [
    "CIRCUIT_OPEN",
    "AIMDLimiter",
    "CircuitBreaker",
    "CircuitState",
    "FairShare",
    "ProviderGuard",
    "RateLimits",
    "RetryPolicy",
    "Signal",
    "aimd_next",
    "classify",
    "current_caller",
    "deadline_passed",
    "estimate_tokens",
    "exhausted_for",
    "is_timeout",
    "parse_duration",
    "parse_retry_after",
]
