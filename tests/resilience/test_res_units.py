"""Unit tests of :mod:`shared.resilience`: the AIMD rule (Netflix concurrency-limits), the adaptive limiter, the
circuit breaker, rate-limit headers, the full-jitter back-off and the retry loop (deadline, attempts, Retry-After)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.config import Settings
from shared.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from shared.grpc_client import Deadline
from shared.resilience import (
    CIRCUIT_OPEN,
    CONCURRENCY_LIMIT,
    AIMDLimiter,
    CircuitBreaker,
    CircuitState,
    ProviderGuard,
    RateLimits,
    RetryPolicy,
    Signal,
    aimd_next,
    classify,
    estimate_tokens,
    exhausted_for,
    parse_duration,
    parse_retry_after,
)

# --- AIMD --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "inflight", "dropped", "expected"),
    [
        (10, 10, True, 9),  # min(10-1, ⌊10·0.9⌋=9) = 9
        (50, 50, True, 45),  # ⌊50·0.9⌋ = 45 < 49
        (5, 5, True, 4),  # ⌊5·0.9⌋ = 4
        (1, 1, True, 1),  # never below min_limit
        (10, 5, False, 11),  # inflight·2 ≥ limit → +1
        (10, 4, False, 10),  # app-limited: no growth
        (50, 50, False, 50),  # capped at max_limit (the configured budget)
    ],
)
def test_aimd_rule_is_netflix_aimdlimit(limit: int, inflight: int, dropped: bool, expected: int) -> None:
    assert aimd_next(limit, inflight, dropped, max_limit=50) == expected


async def test_aimd_limiter_shrinks_on_overload_and_grows_back_within_the_budget() -> None:
    lim = AIMDLimiter("unit-aimd", 20)
    assert lim.limit == 20 and CONCURRENCY_LIMIT.labels("unit-aimd")._value.get() == 20
    for _ in range(3):
        with pytest.raises(ResourceExhausted):
            async with lim.slot():
                raise ResourceExhausted("429")
    assert lim.limit == 14  # 20 → 18 → 16 → 14
    assert CONCURRENCY_LIMIT.labels("unit-aimd")._value.get() == 14
    # Other errors say nothing about overload.
    for exc in (Unavailable("500"), InvalidArgument("400"), DeadlineExceeded("ours")):
        with pytest.raises(type(exc)):
            async with lim.slot():
                raise exc
    assert lim.limit == 14
    # A timeout is a drop too (rtt > timeout in Netflix's terms).
    with pytest.raises(Unavailable):
        async with lim.slot():
            raise Unavailable("slow", reason="PROVIDER_TIMEOUT")
    assert lim.limit == 12

    # Saturated successes grow it by one each, never past the budget.
    async def hold(n: int) -> None:
        async with lim.slot():
            await asyncio.sleep(0.01)

    for _ in range(30):
        await asyncio.gather(*(hold(i) for i in range(lim.limit)))
    assert lim.limit == 20


async def test_aimd_limiter_bounds_concurrency_to_the_current_limit() -> None:
    lim = AIMDLimiter("unit-bound", 8, initial=3)
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with lim.slot():
            peak = max(peak, lim.in_flight)
            await asyncio.sleep(0.005)

    await asyncio.gather(*(one() for _ in range(3)))
    assert peak <= 3


async def test_aimd_limiter_wait_counts_against_the_deadline() -> None:
    lim = AIMDLimiter("unit-wait", 1)
    async with lim.slot():
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            async with lim.slot(Deadline(0.05)):
                pass
        assert time.monotonic() - t0 < 1.0


def test_fixed_limiter_does_not_adapt() -> None:
    lim = AIMDLimiter("unit-fixed", 10, adaptive=False)
    lim.on_sample(10, Signal.OVERLOAD)
    assert lim.limit == 10


# --- outcome classification --------------------------------------------------------------------------------------


def test_classify() -> None:
    assert classify(None) is Signal.SUCCESS
    assert classify(ResourceExhausted("429")) is Signal.OVERLOAD
    assert classify(Unavailable("t", reason="PROVIDER_TIMEOUT")) is Signal.TIMEOUT
    assert classify(Unavailable("t", reason="TIMEOUT")) is Signal.TIMEOUT
    assert classify(Unavailable("5xx", reason="PROVIDER_UNAVAILABLE")) is Signal.FAILURE
    assert classify(Unavailable("x", reason="malformed_response")) is Signal.FAILURE
    assert classify(Unavailable("open", reason=CIRCUIT_OPEN)) is Signal.IGNORE
    assert classify(DeadlineExceeded("ours")) is Signal.IGNORE
    assert classify(InvalidArgument("400")) is Signal.CLIENT_ERROR
    assert classify(FailedPrecondition("401")) is Signal.CLIENT_ERROR
    assert classify(KeyError("bug")) is Signal.IGNORE


# --- circuit breaker ------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_circuit_opens_after_n_consecutive_failures_then_half_opens_one_probe() -> None:
    clock = Clock()
    cb = CircuitBreaker("unit-cb", failure_threshold=3, cooldown=10.0, label="Unit", clock=clock)
    for _ in range(2):
        assert cb.check() is False
        cb.record(Signal.FAILURE, probe=False)
    cb.record(Signal.SUCCESS, probe=False)  # a success resets the count: failures must be consecutive
    for _ in range(2):
        cb.record(Signal.FAILURE, probe=False)
    cb.record(Signal.OVERLOAD, probe=False)  # 429s neither open nor reset it
    assert cb.state is CircuitState.CLOSED
    cb.record(Signal.TIMEOUT, probe=False)
    assert cb.state is CircuitState.OPEN

    clock.t += 4.0
    with pytest.raises(Unavailable) as ei:
        cb.check()
    err = ei.value
    assert err.reason == CIRCUIT_OPEN and err.provider == "unit-cb"
    assert err.retry_after == pytest.approx(6.0)  # the remaining cool-down
    assert "circuit open" in err.message

    clock.t += 6.0
    assert cb.check() is True  # the probe
    assert cb.state is CircuitState.HALF_OPEN
    with pytest.raises(Unavailable):  # only one probe at a time
        cb.check()
    cb.record(Signal.FAILURE, probe=True)
    assert cb.state is CircuitState.OPEN and cb.opens == 2
    clock.t += 10.0
    assert cb.check() is True
    cb.record(Signal.SUCCESS, probe=True)
    assert cb.state is CircuitState.CLOSED and cb.failures == 0
    assert cb.check() is False


def test_circuit_probe_without_verdict_lets_another_probe_through() -> None:
    clock = Clock()
    cb = CircuitBreaker("unit-cb2", failure_threshold=1, cooldown=1.0, clock=clock)
    cb.record(Signal.FAILURE, probe=False)
    clock.t += 1.0
    assert cb.check() is True
    cb.record(Signal.IGNORE, probe=True)  # e.g. the probe was cancelled
    assert cb.state is CircuitState.HALF_OPEN
    assert cb.check() is True


def test_disabled_circuit_never_opens() -> None:
    cb = CircuitBreaker("unit-off", failure_threshold=0, cooldown=1.0)
    for _ in range(100):
        cb.record(Signal.FAILURE, probe=False)
    assert cb.check() is False


# --- rate limits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("2.5", 2.5), ("soon", None), ("", None)],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_exhausted_for_reads_openai_anthropic_and_ietf_headers() -> None:
    now = time.time()
    assert exhausted_for({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"}) is None
    assert exhausted_for({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}) == 1.5
    both = {
        "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
    }
    assert exhausted_for(both) == 360.0  # the longest exhausted window
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    got = exhausted_for({"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset},
                        now=now)
    assert got == pytest.approx(30, abs=1.5)
    assert exhausted_for({"ratelimit-remaining": "0", "ratelimit-reset": "7"}) == 7.0
    assert exhausted_for({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 20)}, now=now) == \
        pytest.approx(20, abs=1)
    assert exhausted_for(None) is None


async def test_rate_limits_pause_until_the_announced_reset() -> None:
    rl = RateLimits("unit-rl")
    rl.note_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "150ms"})
    t0 = time.monotonic()
    await rl.acquire(0, Deadline(5))
    assert time.monotonic() - t0 >= 0.12
    # A pause longer than the time left is refused at once with the wait as retry-after.
    rl.note_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"})
    with pytest.raises(ResourceExhausted) as ei:
        await rl.acquire(0, Deadline(1))
    assert ei.value.retry_after == pytest.approx(30, abs=1)


async def test_requests_per_minute_bucket_is_enforced() -> None:
    rl = RateLimits("unit-rpm", rpm=600)  # 10/s, burst 600: the first 600 are free, then ~0.1 s each
    for _ in range(600):
        await rl.acquire(0, Deadline(5))
    t0 = time.monotonic()
    await rl.acquire(0, Deadline(5))
    await rl.acquire(0, Deadline(5))
    assert time.monotonic() - t0 >= 0.1
    with pytest.raises(DeadlineExceeded):
        for _ in range(50):
            await rl.acquire(0, Deadline(0.05))


async def test_tokens_per_minute_bucket_counts_tokens() -> None:
    rl = RateLimits("unit-tpm", tpm=6000)  # 100 tokens/s
    await rl.acquire(6000, Deadline(5))  # the whole bucket
    t0 = time.monotonic()
    await rl.acquire(20, Deadline(5))  # ~0.2 s to refill 20 tokens
    assert time.monotonic() - t0 >= 0.15


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 4000) == 1000


# --- back-off and retries ------------------------------------------------------------------------------------------


def test_full_jitter_backoff_bounds() -> None:
    rp = RetryPolicy(initial=0.5, maximum=8.0)
    rng = random.Random(7)
    for retry, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0)):
        waits = [rp.backoff(retry, rng=rng) for _ in range(2000)]
        assert 0 <= min(waits) < cap * 0.05 and cap * 0.95 < max(waits) <= cap  # uniform over [0, cap]
        assert sum(waits) / len(waits) == pytest.approx(cap / 2, rel=0.1)
    assert rp.backoff(1, hint=3.0, rng=rng) >= 3.0  # at least the provider's Retry-After


def guard(**kw: object) -> ProviderGuard:
    s = Settings(retry_initial_seconds=0.01, retry_max_seconds=0.02, **kw)  # type: ignore[arg-type]
    return ProviderGuard.from_settings(s, f"unit-g{random.random()}", concurrency=4, label="Unit")


async def test_run_retries_retryable_errors_until_success() -> None:
    g = guard()
    errors = [ResourceExhausted("429"), Unavailable("500"), Unavailable("slow", reason="PROVIDER_TIMEOUT")]
    seen: list[int] = []

    async def fn(n: int) -> str:
        seen.append(n)
        async with g.attempt(Deadline(5)):
            if errors:
                raise errors.pop(0)
            return "ok"

    assert await g.run(fn, deadline=Deadline(5)) == "ok"
    assert seen == [1, 2, 3, 4] and g.retries == 3


@pytest.mark.parametrize("exc", [InvalidArgument("400"), FailedPrecondition("401"), DeadlineExceeded("ours")])
async def test_run_does_not_retry_non_retryable(exc: Exception) -> None:
    g = guard()
    calls = 0

    async def fn(n: int) -> None:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(type(exc)):
        await g.run(fn, deadline=Deadline(5))
    assert calls == 1


async def test_run_stops_at_max_attempts() -> None:
    g = guard(provider_max_attempts=3)
    calls = 0

    async def fn(n: int) -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("500")

    with pytest.raises(Unavailable):
        await g.run(fn, deadline=Deadline(5))
    assert calls == 3


async def test_run_honours_retry_after_and_the_deadline() -> None:
    g = guard()
    calls: list[float] = []

    async def fn(n: int) -> str:
        calls.append(time.monotonic())
        if n == 1:
            raise ResourceExhausted("429", retry_after=0.2)
        return "ok"

    assert await g.run(fn, deadline=Deadline(5)) == "ok"
    assert calls[1] - calls[0] >= 0.2

    # A Retry-After that does not fit in the time left ends the call at once, with its RetryInfo.
    t0 = time.monotonic()

    async def limited(n: int) -> None:
        raise ResourceExhausted("429", retry_after=2.0)

    with pytest.raises(ResourceExhausted) as ei:
        await g.run(limited, deadline=Deadline(0.5))
    assert ei.value.retry_after == 2.0 and time.monotonic() - t0 < 0.2

    # So does one above provider_retry_after_max_seconds.
    g2 = guard(provider_retry_after_max_seconds=1.0)
    with pytest.raises(ResourceExhausted):
        await g2.run(limited, deadline=Deadline(60))


async def test_open_circuit_fails_fast_and_is_not_retried() -> None:
    g = guard(circuit_failure_threshold=2, circuit_cooldown_seconds=30, provider_max_attempts=5)
    calls = 0

    async def fn(n: int) -> None:
        nonlocal calls
        async with g.attempt(Deadline(5)):
            calls += 1
            raise Unavailable("500", reason="PROVIDER_UNAVAILABLE")

    with pytest.raises(Unavailable) as ei:
        await g.run(fn, deadline=Deadline(5))
    assert calls == 2  # the third attempt met the open circuit
    assert ei.value.reason == CIRCUIT_OPEN and ei.value.retry_after == pytest.approx(30, abs=1)
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as ei:
        await g.run(fn, deadline=Deadline(5))
    assert calls == 2 and time.monotonic() - t0 < 0.05 and ei.value.reason == CIRCUIT_OPEN
    assert g.status()["circuit_state"] == "open"


async def test_an_attempt_with_the_deadline_spent_is_not_made_and_counts_for_nothing() -> None:
    g = guard(circuit_failure_threshold=1)
    spent = Deadline(0.0)
    with pytest.raises(DeadlineExceeded) as ei:
        async with g.attempt(spent):
            raise AssertionError("no call may start once the deadline has passed")
    assert ei.value.reason == "DEADLINE"
    assert g.attempts == 0 and g.breaker.failures == 0 and g.status()["circuit_state"] == "closed"
    assert g.limit == 4


async def test_a_retry_that_could_not_finish_before_the_deadline_is_not_started() -> None:
    g = guard(provider_max_attempts=5)
    async with g.attempt(Deadline(5)):
        pass  # one success: the guard now knows how long its provider takes
    assert g.latency > 0
    calls = 0

    async def failing(n: int) -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("500")

    g.latency = 1.0  # the provider answers in about a second; 0.5 s left cannot hold back-off + an answer
    with pytest.raises(Unavailable):
        await g.run(failing, deadline=Deadline(0.5))
    assert calls == 1 and g.retries == 0
    g.latency = 0.001  # a fast provider: the same deadline holds every retry
    calls = 0
    with pytest.raises(Unavailable):
        await g.run(failing, deadline=Deadline(5))
    assert calls == 5


# --- Retry-After (one parser for the search and inference services) ---------------------------------------------


def test_retry_after_delay_seconds_and_milliseconds() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5  # OpenAI's -ms form first
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0  # an unusable -ms falls back


def test_retry_after_http_date() -> None:
    now = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after({"retry-after": "Wed, 02 Dec 2026 10:00:30 GMT"}, now=now) == 30.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=now) == 0.0  # past: go now


def test_retry_after_case_insensitive_headers() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0


@pytest.mark.parametrize("value", ["soon", "-3", "inf", "nan", ""])
def test_retry_after_unusable_is_none(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": value}) is None


def test_retry_after_absent_is_none() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
