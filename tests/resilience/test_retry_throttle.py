"""gRFC A6 retry throttling (https://github.com/grpc/proposal/blob/master/A6-client-retries.md, "Throttling Retry
Attempts and Hedged RPCs"): the bucket's arithmetic, and ``with_retries`` against a real ``grpc.aio`` server whose
handler fails — once the target's tokens fall to half, failed calls are no longer retried; successes bring the
retries back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from res_testkit import bare_server

from shared.config import Settings
from shared.errors import InvalidArgument, Unavailable
from shared.grpc_client import Channels, RetryThrottle, with_retries

# --- the bucket ------------------------------------------------------------------------------------------------


def test_defaults_start_full_and_follow_a6_steps():
    th = RetryThrottle()
    assert (th.max_tokens, th.token_ratio, th.tokens) == (10.0, 0.1, 10.0)
    assert th.retries_allowed
    # 4 failures: 6 tokens > 5 → retries still allowed; the 5th: 5 tokens, not > 5 → off.
    assert [th.record_failure() for _ in range(5)] == [True, True, True, True, False]
    assert th.tokens == 5.0 and not th.retries_allowed
    th.record_success()  # 5.1 > 5
    assert th.tokens == pytest.approx(5.1) and th.retries_allowed


def test_count_is_clamped_to_zero_and_max():
    th = RetryThrottle(max_tokens=3, token_ratio=0.5)
    th.record_success()
    assert th.tokens == 3.0
    for _ in range(10):
        th.record_failure()
    assert th.tokens == 0.0
    # from 0, 4 successes (2.0) are needed to pass max/2 = 1.5
    for _ in range(3):
        th.record_success()
    assert th.tokens == 1.5 and not th.retries_allowed
    th.record_success()
    assert th.retries_allowed


def test_token_ratio_keeps_three_decimal_places():
    assert RetryThrottle(token_ratio=0.1).token_ratio == 0.1
    assert RetryThrottle(token_ratio=0.3456).token_ratio == 0.345
    th = RetryThrottle(max_tokens=10, token_ratio=0.1)
    for _ in range(10):
        th.record_failure()
    for _ in range(1_000):  # exact: no float drift (0.1 × 1000 summed as floats is not 100.0)
        th.record_success()
    assert th.tokens == 10.0


@pytest.mark.parametrize(("max_tokens", "ratio"), [(0, 0.1), (-1, 0.1), (1001, 0.1), (10, 0), (10, -0.5), (10, 0.0004)])
def test_a6_limits_are_enforced(max_tokens: float, ratio: float):
    with pytest.raises(ValueError):
        RetryThrottle(max_tokens, ratio)


@given(
    max_tokens=st.integers(1, 1000),
    ratio_milli=st.integers(1, 5000),
    events=st.lists(st.booleans(), max_size=300),
)
def test_property_count_in_range_and_retries_iff_above_half(max_tokens: int, ratio_milli: int, events: list[bool]):
    th = RetryThrottle(max_tokens, ratio_milli / 1000)
    model = max_tokens * 1000  # an independent model in milli-tokens
    for ok in events:
        if ok:
            th.record_success()
            model = min(max_tokens * 1000, model + ratio_milli)
        else:
            allowed = th.record_failure()
            model = max(0, model - 1000)
            assert allowed == (model > max_tokens * 1000 / 2)
        assert 0 <= th.tokens <= max_tokens
        assert th.tokens == model / 1000
        assert th.retries_allowed == (th.tokens > max_tokens / 2)


def test_channels_hand_out_one_throttle_per_target():
    settings = Settings(retry_throttle_max_tokens=20, retry_throttle_token_ratio=0.25)
    channels = Channels(settings)
    a = channels.throttle("127.0.0.1:1")
    assert channels.throttle("127.0.0.1:1") is a
    assert channels.throttle("127.0.0.1:2") is not a
    assert channels.throttle_for_service("search") is channels.throttle(settings.addr("search"))
    assert (a.max_tokens, a.token_ratio, a.target) == (20.0, 0.25, "127.0.0.1:1")


# --- with_retries against a real server -------------------------------------------------------------------------

METHOD = "/vantage.test.Flaky/Call"


@dataclass
class Flaky:
    """What the handler answers next, and how many times it was invoked."""

    code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
    calls: int = 0
    seen: list[int] = field(default_factory=list)

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self.code is not None:
            await context.abort(self.code, "injected")
        return b"ok"


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    state = Flaky()
    async with bare_server({"vantage.test.Flaky": {"Call": state.handle}}) as address:
        yield state, address


async def _invocations(state: Flaky, channels: Channels, target: str, throttle: RetryThrottle | None) -> int:
    """One call through ``with_retries`` (3 attempts, no back-off); the handler invocations it caused."""
    call = channels.get(target).unary_unary(METHOD)
    before = state.calls

    async def fn() -> bytes:
        return await call(b"x", timeout=5)

    try:
        await with_retries(fn, attempts=3, initial=0.0, maximum=0.0, throttle=throttle)
    except (Unavailable, InvalidArgument):
        pass
    return state.calls - before


async def test_failing_target_stops_being_retried_then_recovers(flaky: tuple[Flaky, str]):
    state, target = flaky
    channels = Channels(Settings())
    th = channels.throttle(target)  # defaults: 10 tokens, ratio 0.1
    try:
        # 10 → 9, 8, 7 (3 invocations); 7 → 6, 5 (the 2nd failure leaves 5, not > 5: no 3rd); then 1 per call.
        per_call = [await _invocations(state, channels, target, th) for _ in range(8)]
        assert per_call == [3, 2, 1, 1, 1, 1, 1, 1]
        assert th.tokens == 0.0

        # Without the throttle the same failing target gets every attempt.
        assert await _invocations(state, channels, target, None) == 3

        # Successes refill it: 0 → 5.1 takes 51 of them; polled with a deadline, no sleeps.
        state.code = None
        deadline = time.monotonic() + 30
        successes = 0
        while not th.retries_allowed:
            assert time.monotonic() < deadline, f"throttle never reopened: {th!r}"
            assert await _invocations(state, channels, target, th) == 1
            successes += 1
        assert successes == 51
        state.code = grpc.StatusCode.UNAVAILABLE
        # 5.1 → 4.1 after one failure: that failure is not retried; a fuller bucket retries again.
        assert await _invocations(state, channels, target, th) == 1
        state.code = None
        for _ in range(100):
            await _invocations(state, channels, target, th)
        assert th.tokens == 10.0
        state.code = grpc.StatusCode.UNAVAILABLE
        assert await _invocations(state, channels, target, th) == 3
    finally:
        await channels.close()


async def test_non_retryable_failures_do_not_count(flaky: tuple[Flaky, str]):
    state, target = flaky
    state.code = grpc.StatusCode.INVALID_ARGUMENT
    channels = Channels(Settings())
    th = channels.throttle(target)
    try:
        for _ in range(20):
            assert await _invocations(state, channels, target, th) == 1  # never retried, never counted
        assert th.tokens == 10.0 and th.retries_allowed
    finally:
        await channels.close()


async def test_throttle_is_shared_by_concurrent_callers_of_one_target(flaky: tuple[Flaky, str]):
    state, target = flaky
    channels = Channels(Settings())
    th = channels.throttle_for_service("search")  # any target: the bucket is per throttle, shared by the callers
    try:
        await asyncio.gather(*(_invocations(state, channels, target, th) for _ in range(20)))
        # Only the first 4 failures (10 → 6) allow a retry, whoever made them: at most 20 + 4 invocations, not 60.
        assert 20 <= state.calls <= 24
        assert th.tokens == 0.0
    finally:
        await channels.close()
