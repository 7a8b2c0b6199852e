"""Property-based fuzz of EVERY RPC of the four services (issue 11, item 4 and acceptance): hypothesis draws
valid-but-odd messages from each RPC's proto descriptor and corrupt wire bytes (mutated serialisations, invalid
UTF-8 in string fields, random bytes), and sends them as raw bytes to the real services, started as separate
processes on loopback with a bearer token, every provider being the sandbox.

Property: no call ends with ``UNKNOWN`` or ``INTERNAL``; a call without the token is ``UNAUTHENTICATED``; every
service still answers its health check (SERVING) afterwards. The counts per status code are printed (``-s``).

Sizes: the default run (``make test``) draws a few dozen examples per RPC (fewer for the RPCs that start paid work).
``make chaos`` (``VANTAGE_CHAOS_FULL=1``) runs :func:`test_fuzz_every_rpc_large`: a thousand examples per non-paid RPC
(50 per paid one) with larger lists and strings of up to ~1 MB, from 4 client threads at once, after a warm-up of a
tenth of the same traffic, and checks that each service's RSS after the run is within 1.5× of its RSS after the
warm-up (issue 11, item 8). ``VANTAGE_FUZZ_EXAMPLES`` overrides the examples
per RPC of the large run; ``VANTAGE_FUZZ_RPCS`` (comma-separated ``Service/Method`` substrings) restricts the RPCs.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from fuzz_kit import (
    LARGE,
    LIVE_IDS,
    PAID_LARGE,
    PAID_SMALL,
    SMALL,
    Profile,
    RawCaller,
    Rpc,
    Tally,
    env_int,
    iter_rpcs,
    messages,
    preview,
    rss_bytes,
    wire_bytes,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.procs import Stack, start_stack
from vantage.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc

pytestmark = pytest.mark.integration

FORBIDDEN = frozenset({"UNKNOWN", "INTERNAL"})
TOKEN = "fuzz-" + secrets.token_hex(16)
GRPC_SERVICES = ("search", "inference", "extraction", "orchestrator")


def stack_env(db: Path) -> dict[str, str]:
    return {
        "VANTAGE_LOG_LEVEL": "WARNING",
        "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "VANTAGE_AUTH_TOKEN": TOKEN,
        # Fuzzed runs must not wait long for sandbox batches or retries.
        "VANTAGE_RETRY_INITIAL_SECONDS": "0.01",
        "VANTAGE_RETRY_MAX_SECONDS": "0.05",
        "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.05",
        "VANTAGE_BATCH_LINGER_SECONDS": "0.05",
        # Freed heap back to the OS every second (default 30 s), so RSS settles within the test's polling window.
        "VANTAGE_MEMORY_RELEASE_INTERVAL_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("fuzz") / "v.db"
    s = start_stack(env=stack_env(db))
    try:
        seed_live_ids(s)
        yield s
    finally:
        s.stop(grace=5)


def seed_live_ids(stack: Stack) -> None:
    """Two runs that exist (one queued, one executing), so fuzzed run ids sometimes name a real run."""
    md = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(stack.children["orchestrator"].address) as ch:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(ch)
        for detach in (True, False):
            run = stub.StartRun(orchestrator_pb2.StartRunRequest(
                kind=orchestrator_pb2.RESEARCH, input_csv="company,domain\nTogether AI,together.ai\n",
                name="fuzz-seed", detach=detach), timeout=30, metadata=md)
            LIVE_IDS.append(run.run_id)


def healthy(stack: Stack) -> dict[str, str]:
    """Health status of every gRPC service (health is open without the token)."""
    out = {}
    for name in GRPC_SERVICES:
        child = stack.children[name]
        if not child.alive():
            out[name] = f"exited {child.proc.returncode}"
            continue
        with grpc.insecure_channel(child.address) as ch:
            try:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
                out[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            except grpc.RpcError as e:
                out[name] = e.code().name
    return out


def settled_rss(stack: Stack, seconds: float, until: dict[str, float] | None = None) -> dict[str, int]:
    """Each service's lowest RSS (bytes) seen while polling for ``seconds`` (the services give freed heap back to
    the OS every second), stopping early once every one is at or below its ``until`` bound."""
    low = {n: rss_bytes(stack.children[n].proc.pid) for n in GRPC_SERVICES}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until is not None and all(low[n] <= until[n] for n in GRPC_SERVICES):
            break
        for n in GRPC_SERVICES:
            low[n] = min(low[n], rss_bytes(stack.children[n].proc.pid))
        time.sleep(0.1)  # a polling interval, not a wait for an event: RSS has no notification
    return low


def fuzz_rpc(caller: RawCaller, rpc: Rpc, tally: Tally, *, examples: int, profile: Profile, timeout: float,
             lock: threading.Lock | None = None) -> None:
    """``examples`` valid-but-odd messages and ``examples`` corrupt byte strings for ``rpc``; every status code is
    tallied and each forbidden one recorded with its example (all are reported at the end, none stops the run)."""
    lock = lock or threading.Lock()

    def check(requests: list[bytes]) -> None:
        code, details = caller.call(rpc, requests, timeout)
        with lock:
            tally.add(rpc.short, code)
            if code in FORBIDDEN and sum(1 for b in tally.bad if b[0] == rpc.short) < 5:
                tally.bad.append((rpc.short, code, details[:300], preview(requests)))

    valid = messages(rpc.input, profile).map(lambda m: m.SerializeToString())
    corrupt = wire_bytes(rpc.input, profile)
    if rpc.client_streaming:
        valid_calls = st.lists(valid, max_size=3)
        corrupt_calls = st.lists(st.one_of(valid, corrupt), min_size=1, max_size=3).filter(lambda _: True)
    else:
        valid_calls = valid.map(lambda b: [b])
        corrupt_calls = corrupt.map(lambda b: [b])
    conf = settings(
        max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    conf(given(valid_calls)(check))()
    conf(given(corrupt_calls)(check))()


def assert_clean(tally: Tally, stack: Stack) -> None:
    print("\nstatus codes per RPC (fuzz):\n" + tally.table())
    health = healthy(stack)
    print(f"health after the fuzz run: {health}")
    bad = "\n".join(f"  {rpc}: {code} {details!r}\n    request: {req}" for rpc, code, details, req in tally.bad)
    assert not tally.bad, f"calls ended with UNKNOWN / INTERNAL:\n{bad}"
    assert all(v == "SERVING" for v in health.values()), health


def test_fuzz_every_rpc_small(fuzz_stack: Stack) -> None:
    """Every RPC: ~20 odd messages + ~20 corrupt byte strings (4 + 8 for paid RPCs), 2 calls without a token."""
    tally = Tally()
    callers = {n: RawCaller(fuzz_stack.children[n].address, TOKEN) for n in GRPC_SERVICES}
    try:
        selected = list(iter_rpcs(os.environ.get("VANTAGE_FUZZ_RPCS")))
        assert len(selected) >= 22 or os.environ.get("VANTAGE_FUZZ_RPCS")
        for rpc in selected:
            caller = callers[rpc.service]
            for _ in range(2):
                code, details = caller.call(rpc, [b""], 5, auth=False)
                assert code == "UNAUTHENTICATED", (rpc.short, code, details)
                tally.add(rpc.short, code)
            fuzz_rpc(caller, rpc, tally, examples=6 if rpc.paid else 20,
                     profile=PAID_SMALL if rpc.paid else SMALL,
                     timeout=2 if rpc.server_streaming else 10 if rpc.paid else 5)
    finally:
        for c in callers.values():
            c.close()
    assert_clean(tally, fuzz_stack)
    assert tally.totals()["INVALID_ARGUMENT"] > 0


@pytest.mark.chaos
@pytest.mark.skipif(os.environ.get("VANTAGE_CHAOS_FULL") != "1", reason="large fuzz run: make chaos")
def test_fuzz_every_rpc_large(fuzz_stack: Stack) -> None:
    """Thousands of examples per RPC from 4 client threads; then RSS within 1.5× of the warm baseline."""
    examples = env_int("VANTAGE_FUZZ_EXAMPLES", 1000)
    selected = list(iter_rpcs(os.environ.get("VANTAGE_FUZZ_RPCS")))
    callers = {n: RawCaller(fuzz_stack.children[n].address, TOKEN) for n in GRPC_SERVICES}
    lock = threading.Lock()
    try:
        def run(tally: Tally, n: int) -> None:
            with ThreadPoolExecutor(4) as pool:
                futures = [
                    pool.submit(fuzz_rpc, callers[rpc.service], rpc, tally,
                                examples=max(4, n // 20) if rpc.paid else n,
                                profile=PAID_LARGE if rpc.paid else LARGE, timeout=15, lock=lock)
                    for rpc in selected
                ]
                for f in futures:
                    f.result()

        # Warm-up: the same traffic, a tenth of it — every code path imported, thread pools, allocator arenas and
        # caches at their working size. Growth past 1.5× of that is memory kept per request (a leak, an
        # unbounded cache), which is what the bound is about.
        warm = Tally()
        run(warm, max(20, examples // 10))
        baseline = settled_rss(fuzz_stack, 3.0)
        tally = Tally()
        run(tally, examples)
        after = settled_rss(fuzz_stack, 30.0, until={n: 1.5 * baseline[n] for n in GRPC_SERVICES})
        tally.bad.extend(warm.bad)
    finally:
        for c in callers.values():
            c.close()
    print("\nRSS (MB) warm baseline → after the fuzz run:")
    for n in GRPC_SERVICES:
        print(f"  {n:<13} {baseline[n] / 2**20:8.1f} → {after[n] / 2**20:8.1f}  ({after[n] / baseline[n]:.2f}×)")
    assert_clean(tally, fuzz_stack)
    grown = {n: round(after[n] / baseline[n], 2) for n in GRPC_SERVICES if after[n] > 1.5 * baseline[n]}
    assert not grown, f"RSS above 1.5× the warm baseline: {grown}"
