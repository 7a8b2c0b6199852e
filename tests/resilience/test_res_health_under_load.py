"""Issue 11 item 3: CPU-heavy extraction requests run off the event loop, so the extraction service's health check
keeps answering while large requests are being read.

Before the offload (``services/extraction/offload.py``), one request with 100,000 known competitors blocked the
service's event loop for 13–17 s and health checks failed meanwhile. Here the extraction service runs as its own
process (``python -m services.extraction``), four client threads keep it busy with requests at the documented
limits (a 200,000-character answer, 500 known competitors, 100 name variations), and a health check is sent every
20 ms. Every check must answer SERVING within its deadline; the latencies are printed (``-s``) for the issue note:
the figure to read is the maximum, against the issue's 100 ms. The test does not assert that figure (timings are
benchmark material, not test material); it asserts the liveness the old code failed.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.procs import Child, start_child, stop_child
from vantage.extraction.v1 import extraction_pb2 as pb
from vantage.extraction.v1 import extraction_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

#: Deadline of one health check (seconds). Far above the 100 ms goal so a loaded CI machine does not flake, far
#: below the 13–17 s the blocked loop took.
HEALTH_DEADLINE_SECONDS = 2.0
LOAD_SECONDS = 6.0
CLIENT_THREADS = 4

PARAGRAPH = (
    "1. **Acme Analytics** – a reliable pick for teams that want dashboards fast ([acme.io](https://acme.io/)).\n"
    "2. **Globex Cloud** – cheaper than most, though support can be slow; see https://globex.example/pricing.\n"
    "Many readers also compare Initech Data, Umbrella Metrics and Hooli Insights before they buy.\n\n"
)


def large_request() -> pb.ExtractRequest:
    answer = (PARAGRAPH * (200_000 // len(PARAGRAPH)))[:200_000]
    return pb.ExtractRequest(
        answer_markdown=answer,
        org=pb.Org(name="Globex Cloud", domain="globex.example",
                   name_variations=[f"Globex Variant {i}" for i in range(100)]),
        known_competitors=[f"Competitor Brand {i}" for i in range(500)],
    )


@pytest.fixture
def extraction(tmp_path: object) -> Iterator[Child]:
    child = start_child("extraction", env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_AUTH_TOKEN": ""})
    try:
        yield child
    finally:
        stop_child(child, grace=5)


def test_health_answers_while_large_extraction_requests_run(extraction: Child) -> None:
    request = large_request()
    stop = threading.Event()
    done: list[int] = []
    errors: list[str] = []

    def load() -> None:
        with grpc.insecure_channel(extraction.address) as ch:
            stub = pb_grpc.ExtractionServiceStub(ch)
            while not stop.is_set():
                try:
                    stub.Extract(request, timeout=60)
                    done.append(1)
                except grpc.RpcError as e:
                    errors.append(f"{e.code().name}: {e.details()}")
                    return

    latencies: list[float] = []
    statuses: list[str] = []
    with grpc.insecure_channel(extraction.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        health.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected and warm
        threads = [threading.Thread(target=load, daemon=True) for _ in range(CLIENT_THREADS)]
        for t in threads:
            t.start()
        end = time.monotonic() + LOAD_SECONDS
        try:
            while time.monotonic() < end or not done:
                t0 = time.perf_counter()
                try:
                    r = health.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_DEADLINE_SECONDS)
                    statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
                except grpc.RpcError as e:
                    statuses.append(e.code().name)
                latencies.append(time.perf_counter() - t0)
                if time.monotonic() > end + 120:
                    break
                stop.wait(0.02)  # the probe's period, not a wait for an event
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=90)

    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(f"\nextraction health under load: {len(ms)} checks while {len(done)} large Extract calls ran "
          f"({CLIENT_THREADS} threads, {LOAD_SECONDS:.0f} s): median {statistics.median(ms):.1f} ms, "
          f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (goal ≤ 100 ms)")
    assert not errors, errors[:3]
    assert done, "no large request finished"
    assert set(statuses) == {"SERVING"}, {s: statuses.count(s) for s in set(statuses)}
