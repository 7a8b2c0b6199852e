"""The load generator against a real ``grpc.aio`` server on port 0 (started by ``shared.grpc_server.serving``, so
with health, reflection and our interceptor): exact closed-loop counts, status and error distributions with
non-OK codes, open-loop latency measured from the scheduled send time, reflection resolution of a service the
generator was not built with, and one-line errors with the CLI's exit codes.

The reflection client is synchronous, so it runs in a worker thread here: the server shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from services.loadtest import reflect, runner
from services.loadtest.cli import EXIT_UNAVAILABLE, EXIT_USAGE, LoadOptions, LoadtestError, run_loadtest
from services.loadtest.report import percentile
from shared.config import Settings
from shared.errors import Unavailable
from shared.grpc_server import Mount, serving
from vantage.search.v1 import search_pb2, search_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
SEARCH = "vantage.search.v1.SearchService"


class Scripted(search_pb2_grpc.SearchServiceServicer):
    """``Search`` echoes its query. ``fail_every`` = k makes every k-th call UNAVAILABLE; ``stall`` = (after, for)
    makes every call that arrives between ``after`` and ``after + for`` seconds after the first call wait until
    that window ends (a server that freezes for a while)."""

    def __init__(self, *, fail_every: int = 0, stall: tuple[float, float] | None = None) -> None:
        self.fail_every = fail_every
        self.stall = stall
        self.calls = 0
        self.first: float | None = None

    async def Search(self, request, context):
        self.calls += 1
        now = time.monotonic()
        if self.first is None:
            self.first = now
        if self.stall is not None:
            start, end = self.first + self.stall[0], self.first + self.stall[0] + self.stall[1]
            if start <= now < end:
                await asyncio.sleep(end - now)
        if self.fail_every and self.calls % self.fail_every == 0:
            raise Unavailable("scripted outage", retry_after=0.01, provider="test")
        return search_pb2.SearchResponse(query=request.query)


@contextlib.asynccontextmanager
async def server(servicer: Scripted) -> AsyncIterator[str]:
    @contextlib.asynccontextmanager
    async def build(_settings: Settings):
        yield [Mount(servicer, search_pb2_grpc.add_SearchServiceServicer_to_server, SEARCH)]

    async with serving("loadtest-test", build, Settings(grace_seconds=0.2)) as srv:
        yield srv.address


def target(address: str, query: str = "hello") -> runner.Target:
    payload = search_pb2.SearchRequest(query=query).SerializeToString()
    return runner.Target(address=address, path=f"/{SEARCH}/Search", payload=payload, timeout=5.0)


async def resolve(address: str, method: str) -> reflect.MethodSpec:
    def run() -> reflect.MethodSpec:
        with grpc.insecure_channel(address) as ch:
            return reflect.resolve(ch, method, address=address, connect_timeout=3.0)

    return await asyncio.to_thread(run)


async def test_closed_loop_makes_exactly_n_calls() -> None:
    svc = Scripted()
    async with server(svc) as addr:
        r = await runner.closed_loop(target(addr), concurrency=8, count=137)
    assert r.count == 137
    assert svc.calls == 137
    assert r.statuses == {"OK": 137}
    assert r.response_bytes == 137 * len(search_pb2.SearchResponse(query="hello").SerializeToString())
    d = r.to_dict()
    assert d["count"] == 137 and d["ok"] == 137 and d["rps"] > 0
    assert d["p50_ms"] <= d["p90_ms"] <= d["p99_ms"] <= d["max_ms"]


async def test_status_and_error_distribution_count_non_ok_codes() -> None:
    async with server(Scripted(fail_every=3)) as addr:
        r = await runner.closed_loop(target(addr), concurrency=4, count=90)
    assert r.statuses == {"OK": 60, "UNAVAILABLE": 30}
    assert list(r.errors.values()) == [30]
    (err,) = r.errors
    assert err.startswith("UNAVAILABLE: ") and "scripted outage" in err
    text = r.to_text()
    assert "[OK]" in text and "60 responses" in text
    assert "[UNAVAILABLE]" in text and "30 responses" in text
    assert "Error distribution:" in text and "[30]" in text


async def test_several_connections_spread_the_calls() -> None:
    async with server(Scripted()) as addr:
        t = target(addr)
        t.connections = 3
        r = await runner.closed_loop(t, concurrency=6, count=60)
    assert r.statuses == {"OK": 60}


async def test_open_loop_measures_from_the_scheduled_time_so_a_stall_shows() -> None:
    """The server freezes for 0.5 s. Closed loop with one call in flight sees that as one slow call among
    hundreds (p99 small); open loop keeps scheduling sends during the freeze and charges each of them the time it
    waited since it was due, so its p99 approaches the freeze length."""
    stall = (0.3, 0.5)
    async with server(Scripted(stall=stall)) as addr:
        closed = await runner.closed_loop(target(addr), concurrency=1, duration=1.2)
    async with server(Scripted(stall=stall)) as addr:
        opened = await runner.open_loop(target(addr), rate=200, duration=1.2)
    closed_p99 = percentile(sorted(closed.latencies_s), 99)
    open_p99 = percentile(sorted(opened.latencies_s), 99)
    assert max(closed.latencies_s) >= 0.4  # the one call that hit the freeze
    assert closed_p99 < 0.1, closed.to_text()
    assert open_p99 > 0.3, opened.to_text()
    assert opened.count == 240 and opened.statuses == {"OK": 240}
    assert opened.dropped == 0
    slow = sum(1 for x in opened.latencies_s if x > 0.05)
    assert slow >= 60  # ~100 sends were due during the freeze
    d = opened.to_dict()
    assert d["mode"] == "open" and d["rate"] == 200 and d["max_in_flight"] >= 50


async def test_open_loop_drops_sends_beyond_the_in_flight_cap() -> None:
    async with server(Scripted(stall=(0.0, 0.4))) as addr:
        r = await runner.open_loop(target(addr), rate=100, count=30, max_in_flight=5)
    assert r.dropped > 0
    assert r.count + r.dropped == 30
    assert r.max_in_flight_seen <= 5


async def test_reflection_resolves_the_health_service() -> None:
    async with server(Scripted()) as addr:
        spec = await resolve(addr, "grpc.health.v1.Health/Check")
        dotted = await resolve(addr, "grpc.health.v1.Health.Check")
        assert spec.path == dotted.path == "/grpc.health.v1.Health/Check"
        assert spec.request_class.DESCRIPTOR.full_name == "grpc.health.v1.HealthCheckRequest"
        req = spec.request_from_json('{"service": ""}')
        t = runner.Target(address=addr, path=spec.path, payload=req.SerializeToString())
        r = await runner.closed_loop(t, concurrency=5, count=25)
        assert r.statuses == {"OK": 25}
        serving_answer = spec.response_class(status=1)  # SERVING, built with the reflected response class
        assert r.response_bytes == 25 * len(serving_answer.SerializeToString())
        search = await resolve(addr, f"{SEARCH}/Search")
        assert search.request_from_json('{"query": "x", "maxResults": 3}').max_results == 3


@pytest.mark.parametrize(
    ("method", "data", "needle"),
    [
        ("grpc.health.v1.Health/Nope", "{}", "has no method 'Nope'; its methods: Check, List, Watch"),
        ("no.such.Service/Call", "{}", "unknown service 'no.such.Service'"),
        ("grpc.health.v1.Health/Watch", "{}", "streaming method"),
        ("Check", "{}", "pkg.Service/Method"),
        ("grpc.health.v1.Health/Check", '{"nope": 1}', "does not match grpc.health.v1.HealthCheckRequest"),
        ("grpc.health.v1.Health/Check", "{bad json", "not valid JSON"),
    ],
)
async def test_bad_method_or_request_is_a_usage_error(method: str, data: str, needle: str) -> None:
    async with server(Scripted()) as addr:
        with pytest.raises(LoadtestError) as ei:
            await asyncio.to_thread(run_loadtest, LoadOptions(address=addr, method=method, data=data, count=1))
    assert ei.value.code == EXIT_USAGE
    assert needle in ei.value.message
    assert "\n" not in ei.value.message


async def test_unreachable_server_exits_3() -> None:
    with pytest.raises(LoadtestError) as ei:
        await asyncio.to_thread(
            run_loadtest, LoadOptions(address="127.0.0.1:1", method="grpc.health.v1.Health/Check", count=1)
        )
    assert ei.value.code == EXIT_UNAVAILABLE
    assert "127.0.0.1:1" in ei.value.message


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["-c", "5", "--rps", "10", "--duration", "1"], "not both"),
        (["--rps", "10"], "exactly one of --duration or -n"),
        (["-n", "5", "--duration", "1"], "-n or --duration"),
        (["-m", "[1]"], "--metadata must be a JSON object"),
    ],
)
def test_flag_combinations_are_checked_before_connecting(flags: list[str], needle: str) -> None:
    proc = _cli(["127.0.0.1:1", "grpc.health.v1.Health/Check", *flags])
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert needle in proc.stderr


async def test_cli_end_to_end_json_and_bad_method() -> None:
    """The real command line, as a process: --json is one parseable object; a bad method is one line, exit 2."""
    async with server(Scripted(fail_every=2)) as addr:
        ok = await asyncio.to_thread(
            _cli, [addr, f"{SEARCH}/Search", "-d", '{"query": "q"}', "-c", "4", "-n", "40", "--json"]
        )
        bad = await asyncio.to_thread(_cli, [addr, f"{SEARCH}/Nope"])
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["count"] == 40 and out["statuses"] == {"OK": 20, "UNAVAILABLE": 20}
    assert out["p99_ms"] >= out["p50_ms"] > 0
    assert bad.returncode == EXIT_USAGE
    assert bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no method 'Nope'" in lines[0] and "Search, SearchCompany" in lines[0]


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VANTAGE_LOG_LEVEL": "WARNING", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "services.loadtest", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )
