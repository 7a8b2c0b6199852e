"""Prometheus metrics: RPC families through a real server, provider/cost/budget helpers, the /metrics endpoint of a
real service process, and the cost the metrics add to each RPC."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
import structlog
from ops_testkit import SERVICE_NAME, echo_builder
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from shared import metrics
from shared.config import Settings
from shared.errors import ResourceExhausted
from shared.grpc_server import serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

HERE = Path(__file__).parent


def sample(name: str, **labels: str) -> float:
    """Current value of one sample of the default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse an exposition page into {(sample name, sorted labels): value}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_rpcs_are_counted_by_method_and_code_and_served_on_metrics_page():
    labels = {"grpc_type": "unary", "grpc_service": SERVICE_NAME, "grpc_method": "Search"}
    before = {code: sample("grpc_server_handled_total", **labels, grpc_code=code) for code in
              ("OK", "INVALID_ARGUMENT", "UNAUTHENTICATED")}
    before_count = sample("grpc_server_handling_seconds_count", **labels)
    settings = Settings(auth_token=SecretStr("metrics-test-token"))
    async with serving("search", echo_builder(), settings) as srv:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            md = (("authorization", "Bearer metrics-test-token"),)
            for _ in range(3):
                await stub.Search(search_pb2.SearchRequest(query="ok"), metadata=md, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Search(search_pb2.SearchRequest(query="invalid"), metadata=md, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Search(search_pb2.SearchRequest(query="ok"), timeout=5)
    server = metrics.serve_metrics(0)
    try:
        async with httpx.AsyncClient() as http:
            page = (await http.get(server.url, timeout=5)).text
    finally:
        server.close()
    got = scrape(page)

    def on_page(code: str) -> float:
        return got[("grpc_server_handled_total", tuple(sorted({**labels, "grpc_code": code}.items())))]

    assert on_page("OK") - before["OK"] == 3
    assert on_page("INVALID_ARGUMENT") - before["INVALID_ARGUMENT"] == 1
    assert on_page("UNAUTHENTICATED") - before["UNAUTHENTICATED"] == 1
    assert sample("grpc_server_handling_seconds_count", **labels) - before_count == 5
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Search"' in page


async def test_provider_call_records_outcome_latency_cost_and_binds_provider_to_logs():
    ok0 = sample("provider_calls_total", provider="tavily-test", outcome="ok")
    ex0 = sample("provider_calls_total", provider="tavily-test", outcome="resource_exhausted")
    cost0 = sample("cost_usd_total", provider="tavily-test")
    n0 = sample("provider_call_seconds_count", provider="tavily-test")
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        async with metrics.provider_call("tavily-test") as call:
            structlog.get_logger().info("calling")
            await asyncio.sleep(0.01)
            call.cost_usd = 0.016
        with pytest.raises(ResourceExhausted):
            async with metrics.provider_call("tavily-test"):
                raise ResourceExhausted("429 from provider", retry_after=1)
    assert logs[0]["provider"] == "tavily-test"
    assert sample("provider_calls_total", provider="tavily-test", outcome="ok") - ok0 == 1
    assert sample("provider_calls_total", provider="tavily-test", outcome="resource_exhausted") - ex0 == 1
    assert sample("cost_usd_total", provider="tavily-test") - cost0 == pytest.approx(0.016)
    assert sample("provider_call_seconds_count", provider="tavily-test") - n0 == 2
    assert sample("provider_call_seconds_sum", provider="tavily-test") > 0.009
    metrics.observe_provider_call("tavily-test", 0.5, "cancelled", cost_usd=0.0)
    assert sample("provider_calls_total", provider="tavily-test", outcome="cancelled") >= 1


def test_budget_gauges_follow_the_limiter():
    state = {"in_use": 3, "waiting": 7}
    metrics.track_budget("search-test", lambda: state["in_use"], lambda: state["waiting"])
    assert sample("budget_in_use", budget="search-test") == 3
    assert sample("budget_waiting", budget="search-test") == 7
    state["in_use"] = 10
    assert sample("budget_in_use", budget="search-test") == 10
    metrics.set_budget("inference-test", 2, 0)
    with metrics.budget_slot("inference-test"):
        assert sample("budget_in_use", budget="inference-test") == 3
    assert sample("budget_in_use", budget="inference-test") == 2


def test_metrics_port_is_off_by_default_and_offset_per_process():
    assert metrics.start_metrics_server(Settings(), "search") is None
    s = Settings(metrics_port=9100)
    assert [metrics.metrics_port(s, p) for p in ("orchestrator", "search", "inference", "extraction", "worker")] == [
        9100, 9101, 9102, 9103, 9104,
    ]


def test_metrics_bind_failure_does_not_stop_the_service():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert metrics.start_metrics_server(Settings(metrics_port=port), "orchestrator", host="127.0.0.1") is None


def test_a_service_process_serves_metrics_on_its_port(tmp_path: Path):
    """``run_service`` (through the same entry point as ``python -m services.<svc>``) starts /metrics at
    base + offset, reports the port in its ready file, and counts the RPCs it serves."""
    base = free_port() - 1  # the echo service runs as "search": offset +1
    ready = tmp_path / "ready.json"
    env = {**os.environ, "VANTAGE_METRICS_PORT": str(base), "VANTAGE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ops_echo_service.py"), "--ready-file", str(ready)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "service not ready"
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["metrics_port"] == base + 1

        async def call() -> None:
            async with grpc.aio.insecure_channel(info["address"]) as ch:
                await search_pb2_grpc.SearchServiceStub(ch).Search(search_pb2.SearchRequest(query="m"), timeout=5)

        asyncio.run(call())
        page = httpx.get(f"http://127.0.0.1:{base + 1}/metrics", timeout=5).text
        assert (
            'grpc_server_handled_total{grpc_code="OK",grpc_method="Search",grpc_service="vantage.search.v1.SearchService",'
            'grpc_type="unary"} 1.0' in page
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_rpc_metrics_cost_a_few_microseconds_per_call():
    """The metrics part of the interceptor (started + handled + histogram, children cached per method) must stay
    far below the ~140-165 µs of server CPU a trivial grpc.aio RPC costs (reference/performance.md §1.2).
    Measured here: typically 2-4 µs per RPC; the bound is loose so a loaded CI box does not flake."""
    obs = metrics.rpc_observer("unary", "/vantage.bench.v1.Bench/Call")
    n = 20_000
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            o = metrics.rpc_observer("unary", "/vantage.bench.v1.Bench/Call")
            o.started.inc()
            o.done("OK", 0.0012)
        best = min(best, (time.perf_counter() - t0) / n)
    assert obs is metrics.rpc_observer("unary", "/vantage.bench.v1.Bench/Call")
    assert best < 25e-6, f"{best * 1e6:.1f} µs per RPC"
