"""Interceptor overhead benchmark (not a test): QPS of a trivial unary RPC through three servers.

``python tests/ops/bench_ops_interceptors.py [--seconds 5] [--in-flight 50]``

- ``bare``: ``grpc.aio.server`` with no interceptor at all;
- ``serving``: :func:`shared.grpc_server.serving` — ContextInterceptor (ids, log line, RPC metrics);
- ``serving+token``: the same plus the bearer-token interceptor (client sends the token as metadata).

Each server runs in its own process pinned to CPU 0 (``os.sched_setaffinity`` when available) and the closed-loop
client in this process on CPU 1, as in reference/performance.md §1.2. Logging is configured at WARNING so that the
per-RPC debug line is filtered, as in production at INFO.

Reported per mode: QPS of each round, and the server's CPU time per RPC (user + system from ``/proc/<pid>/stat``,
µs) — the CPU figure is the steadier one on a shared machine, where QPS moves with other load.

``--micro`` instead times the ContextInterceptor's own Python work in-process (intercept + wrapped handler around a
no-op method, with a minimal stand-in for the servicer context): the part of the overhead that is ours, free of
network and scheduler noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

TOKEN = "bench-token-0123456789abcdef"


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _serve(mode: str, port_q: mp.Queue) -> None:  # type: ignore[type-arg]
    _pin(0)
    import grpc
    import structlog
    from ops_testkit import echo_builder
    from pydantic import SecretStr

    from shared.config import Settings
    from shared.grpc_server import serving
    from vantage.search.v1 import search_pb2_grpc

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    async def main() -> None:
        if mode == "bare":
            from ops_testkit import Echo

            server = grpc.aio.server()
            search_pb2_grpc.add_SearchServiceServicer_to_server(Echo(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            port_q.put(port)
            await server.wait_for_termination()
            return
        settings = Settings(auth_token=SecretStr(TOKEN) if mode == "serving+token" else None)
        async with serving("search", echo_builder(), settings) as srv:
            port_q.put(srv.port)
            await asyncio.Event().wait()

    asyncio.run(main())


def _cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (s), from /proc; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(address: str, seconds: float, in_flight: int, token: bool, pid: int = 0) -> tuple[float, float]:
    """(QPS, server CPU µs per RPC) of a closed loop with ``in_flight`` concurrent callers for ``seconds``."""
    import grpc

    from vantage.search.v1 import search_pb2, search_pb2_grpc

    md = (("authorization", f"Bearer {TOKEN}"),) if token else None
    async with grpc.aio.insecure_channel(address) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        req = search_pb2.SearchRequest(query="q")
        for _ in range(200):  # warm-up
            await stub.Search(req, metadata=md, timeout=5)
        done = 0
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await stub.Search(req, metadata=md, timeout=5)
                done += 1

        t0, cpu0 = time.perf_counter(), _cpu_seconds(pid)
        async with asyncio.TaskGroup() as tg:
            for _ in range(in_flight):
                tg.create_task(worker())
        return done / (time.perf_counter() - t0), (_cpu_seconds(pid) - cpu0) / max(done, 1) * 1e6


def micro(n: int = 50_000) -> None:
    """Print the per-call cost (µs) of ContextInterceptor around a no-op unary handler, best of 5 runs."""
    import grpc
    import structlog

    from shared.grpc_server import ContextInterceptor

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(20))  # INFO, as in production

    class Context:  # the two ServicerContext methods the wrapper calls on a successful call
        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("user-agent", "grpc-python-asyncio/1.85.1"), ("x-run-id", "run-1"), ("x-item-id", "item-1"))

        def code(self) -> None:
            return None

    class Details:
        method = "/vantage.search.v1.SearchService/Search"
        invocation_metadata = ()

    async def noop(request: object, _context: object) -> object:
        return request

    handler = grpc.unary_unary_rpc_method_handler(noop)

    async def continuation(_details: object) -> grpc.RpcMethodHandler:
        return handler

    async def run() -> None:
        interceptor, ctx, details = ContextInterceptor("search"), Context(), Details()
        results = {}
        for label, wrapped in (("no interceptor", False), ("ContextInterceptor", True)):
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(n):
                    h = await (interceptor.intercept_service(continuation, details) if wrapped else continuation(details))
                    await h.unary_unary(None, ctx)
                best = min(best, (time.perf_counter() - t0) / n)
            results[label] = best * 1e6
        for label, us in results.items():
            print(f"{label:<20} {us:6.2f} µs per call")
        print(f"{'overhead':<20} {results['ContextInterceptor'] - results['no interceptor']:6.2f} µs per call")

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--micro", action="store_true", help="time the interceptor's own work in-process")
    args = parser.parse_args()
    if args.micro:
        micro()
        return
    _pin(1)
    ctx = mp.get_context("spawn")
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for mode in ("bare", "serving", "serving+token"):
            q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            proc = ctx.Process(target=_serve, args=(mode, q), daemon=True)
            proc.start()
            try:
                port = q.get(timeout=30)
                token = mode.endswith("token")
                r = asyncio.run(_load(f"127.0.0.1:{port}", args.seconds, args.in_flight, token, proc.pid or 0))
                results.setdefault(mode, []).append(r)
            finally:
                proc.terminate()
                proc.join(10)
    base_qps = max(q for q, _ in results["bare"])
    base_cpu = min(c for _, c in results["bare"])
    for mode, runs in results.items():
        best_qps, best_cpu = max(q for q, _ in runs), min(c for _, c in runs)
        print(
            f"{mode:<14} QPS {' / '.join(f'{q:,.0f}' for q, _ in runs):<30} best {best_qps / base_qps - 1:+6.1%}  "
            f"server CPU/RPC {' / '.join(f'{c:.0f}' for _, c in runs)} µs, best {best_cpu - base_cpu:+.0f} µs"
        )


if __name__ == "__main__":
    main()
