"""The load loops. Both send pre-serialized request bytes and keep the response as bytes (no protobuf work in the
generator's hot path: the server is what is being measured), over ``connections`` channels that each get their own
TCP connection (``grpc.use_local_subchannel_pool``; channels with identical args would otherwise share one).

- :func:`closed_loop` — ``concurrency`` workers, each with one call in flight, until ``count`` calls have been
  *started* (so exactly ``count`` complete) or ``duration`` seconds have passed. Latency = send → answer. Closed
  loop measures capacity (QPS at a given concurrency) but hides stalls: while the server stalls, no new call is
  sent, so the stall is counted once per worker instead of once per call that should have been sent.
- :func:`open_loop` — send ``i`` is scheduled at ``t0 + i/rate`` whatever happened to earlier calls, and its
  latency is measured from that scheduled time (no coordinated omission: reference/performance.md §2, the §1.2
  harness). A generous in-flight cap protects the generator: a send due while ``max_in_flight`` calls are
  outstanding is dropped and counted. Sends that start more than ``late_threshold`` seconds after their scheduled
  time are counted as late (the generator itself fell behind: its CPU is saturated, or the event loop's ~1 ms timer
  granularity); their lag is inside the reported latency anyway.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from services.loadtest.report import Result

#: Max message size of the generator's channels (bytes): large answers (a search LLM context) must fit.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Longest error text kept as a key of the error distribution (characters).
MAX_ERROR_TEXT = 200


@dataclass
class Target:
    """Where and what to call. ``payload`` is the serialized request; ``timeout`` is per call (seconds)."""

    address: str
    path: str  # "/pkg.Service/Method"
    payload: bytes
    metadata: Sequence[tuple[str, str]] = ()
    timeout: float = 20.0
    connections: int = 1
    credentials: grpc.ChannelCredentials | None = None
    options: Sequence[tuple[str, object]] = field(default_factory=tuple)

    def channels(self) -> list[grpc.aio.Channel]:
        """``connections`` aio channels, each on its own subchannel pool (= its own TCP connection)."""
        opts = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.use_local_subchannel_pool", 1),
            *self.options,
        ]
        out = []
        for _ in range(max(1, self.connections)):
            if self.credentials is not None:
                out.append(grpc.aio.secure_channel(self.address, self.credentials, options=opts))
            else:
                out.append(grpc.aio.insecure_channel(self.address, options=opts))
        return out


def _error_key(e: grpc.aio.AioRpcError) -> str:
    details = (e.details() or "").replace("\n", " ")
    if len(details) > MAX_ERROR_TEXT:
        details = details[: MAX_ERROR_TEXT - 1] + "…"
    return f"{e.code().name}: {details}"


class _Calls:
    """The channels and one multicallable per channel; records outcomes into a :class:`Result`."""

    def __init__(self, target: Target, result: Result) -> None:
        self.target = target
        self.result = result
        self.channels = target.channels()
        self.stubs = [
            ch.unary_unary(target.path, request_serializer=None, response_deserializer=None) for ch in self.channels
        ]
        self.metadata = tuple(target.metadata) or None

    async def ready(self, seconds: float) -> None:
        """Wait until every channel is connected (so connection set-up is not in the measured time)."""
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in self.channels)), seconds)

    async def call(self, k: int, started: float) -> None:
        """One call on channel ``k``; latency measured from ``started`` (a perf_counter value, seconds)."""
        r = self.result
        try:
            resp = await self.stubs[k % len(self.stubs)](
                self.target.payload, timeout=self.target.timeout, metadata=self.metadata
            )
            r.latencies_s.append(time.perf_counter() - started)
            r.statuses["OK"] += 1
            r.response_bytes += len(resp)
        except grpc.aio.AioRpcError as e:
            r.latencies_s.append(time.perf_counter() - started)
            r.statuses[e.code().name] += 1
            r.errors[_error_key(e)] += 1

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()


async def closed_loop(
    target: Target,
    *,
    concurrency: int,
    count: int | None = None,
    duration: float | None = None,
    connect_timeout: float = 10.0,
) -> Result:
    """Keep ``concurrency`` calls in flight until ``count`` calls are done (exactly), or for ``duration`` seconds
    (calls in flight at the end still complete and count). Returns the :class:`Result` (latencies in seconds)."""
    if (count is None) == (duration is None):
        raise ValueError("give exactly one of count or duration")
    if concurrency < 1:
        raise ValueError("concurrency must be ≥ 1")
    result = Result(mode="closed", method=target.path, concurrency=concurrency)
    calls = _Calls(target, result)
    try:
        await calls.ready(connect_timeout)
        started = 0
        limit = count if count is not None else 1 << 62
        perf = time.perf_counter
        t0 = perf()
        end = t0 + duration if duration is not None else float("inf")

        async def worker(w: int) -> None:
            nonlocal started
            while started < limit and perf() < end:
                started += 1
                await calls.call(w, perf())

        async with asyncio.TaskGroup() as tg:
            for w in range(min(concurrency, limit)):
                tg.create_task(worker(w))
        result.duration_s = perf() - t0
    finally:
        await calls.close()
    return result


async def open_loop(
    target: Target,
    *,
    rate: float,
    count: int | None = None,
    duration: float | None = None,
    max_in_flight: int = 10_000,
    late_threshold: float = 0.002,
    connect_timeout: float = 10.0,
) -> Result:
    """Offer ``rate`` calls per second: ``count`` calls, or ``rate × duration`` of them; call ``i`` is due at
    ``t0 + i/rate`` and its latency runs from then. Returns the :class:`Result` (latencies in seconds)."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if (count is None) == (duration is None):
        raise ValueError("give exactly one of count or duration")
    total = count if count is not None else max(1, round(rate * duration))  # type: ignore[operator]
    result = Result(mode="open", method=target.path, rate=rate, late_threshold_s=late_threshold)
    calls = _Calls(target, result)
    in_flight = 0
    lags: array = result.start_lags_s

    async def one(i: int, due: float) -> None:
        nonlocal in_flight
        lag = time.perf_counter() - due
        lags.append(lag)
        if lag > late_threshold:
            result.late_starts += 1
        try:
            await calls.call(i, due)
        finally:
            in_flight -= 1

    try:
        await calls.ready(connect_timeout)
        perf = time.perf_counter
        interval = 1.0 / rate
        t0 = perf() + 0.001
        i = 0
        async with asyncio.TaskGroup() as tg:
            while i < total:
                now = perf()
                due = t0 + i * interval
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                # Everything due by now goes out in this turn of the loop (the timer wakes us up to ~1 ms late).
                while i < total and t0 + i * interval <= now:
                    if in_flight >= max_in_flight:
                        result.dropped += 1
                    else:
                        in_flight += 1
                        result.max_in_flight_seen = max(result.max_in_flight_seen, in_flight)
                        tg.create_task(one(i, t0 + i * interval))
                    i += 1
        result.duration_s = perf() - t0
    finally:
        await calls.close()
    return result
