"""The ``vantage loadtest`` command (registered on the ``vantage`` app by :func:`register`; also
``python -m services.loadtest``).

Flags follow ghz (reference/performance.md §2): ``-d`` request JSON, ``-c`` concurrency, ``-n`` total, ``--rps``
constant rate, ``--duration`` (ghz ``-z``), ``-t``/``--timeout`` per call, ``-m``/``--metadata`` JSON, ``--connections``,
``--insecure`` (default) or ``--tls`` with ``--cacert``. Exit codes as the rest of the CLI: 0 the test ran (whatever
statuses the calls got), 2 usage (bad method, bad JSON, bad flags), 3 the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.exitcodes import EXIT_UNAVAILABLE, EXIT_USAGE

HELP = (
    "Load-test one unary gRPC method, ghz-style, resolving it by server reflection.\n\n"
    "Closed loop (-c with -n or --duration): keep C calls in flight until N are done. Open loop (--rps with "
    "--duration or -n): send at a fixed rate and measure each call's latency from its scheduled send time, so a "
    "stalled server shows in the percentiles (no coordinated omission).\n\n"
    "Prints count, duration, RPS, latency percentiles (ms), the status-code and the error distributions; --json "
    "prints one JSON object instead. Unary methods only (streaming methods are refused). Any server with gRPC "
    "reflection works, e.g. grpc.health.v1.Health/Check.\n\n"
    "Example: vantage loadtest 127.0.0.1:50051 vantage.search.v1.SearchService/SearchCompany "
    "-d '{\"company\": \"Anthropic\"}' -c 50 -n 5000\n\n"
    "Example: vantage loadtest 127.0.0.1:50051 grpc.health.v1.Health/Check --rps 1000 --duration 5 --json"
)


@dataclass
class LoadOptions:
    """Validated options of one load test (seconds, calls per second)."""

    address: str
    method: str
    data: str = "{}"
    concurrency: int | None = None
    count: int | None = None
    rps: float | None = None
    duration: float | None = None
    timeout: float = 20.0
    metadata: str = ""
    connections: int = 1
    tls: bool = False
    cacert: Path | None = None
    max_in_flight: int = 10_000
    connect_timeout: float = 5.0


class LoadtestError(Exception):
    """A one-line error and the exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse_metadata(text: str) -> list[tuple[str, str]]:
    """``'{"authorization": "Bearer x"}'`` → ``[("authorization", "Bearer x")]`` (keys lower-cased, as gRPC needs)."""
    if not text:
        return []
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LoadtestError(f"--metadata is not valid JSON: {e}", EXIT_USAGE) from None
    if not isinstance(obj, dict) or not all(isinstance(v, str | int | float) for v in obj.values()):
        raise LoadtestError('--metadata must be a JSON object of strings, e.g. {"x-run-id": "bench"}', EXIT_USAGE)
    return [(str(k).lower(), str(v)) for k, v in obj.items()]


def _check_mode(o: LoadOptions) -> None:
    if o.rps is not None:
        if o.concurrency is not None:
            raise LoadtestError("give -c (closed loop) or --rps (open loop), not both", EXIT_USAGE)
        if o.rps <= 0:
            raise LoadtestError("--rps must be > 0", EXIT_USAGE)
        if (o.count is None) == (o.duration is None):
            raise LoadtestError("--rps needs exactly one of --duration or -n", EXIT_USAGE)
    else:
        if o.count is not None and o.duration is not None:
            raise LoadtestError("give -n or --duration, not both", EXIT_USAGE)
        if o.count is None and o.duration is None:
            o.count = 200  # ghz's default
        if o.concurrency is None:
            o.concurrency = 50  # ghz's default
        if o.concurrency < 1:
            raise LoadtestError("-c must be ≥ 1", EXIT_USAGE)
    if o.count is not None and o.count < 1:
        raise LoadtestError("-n must be ≥ 1", EXIT_USAGE)
    if o.duration is not None and o.duration <= 0:
        raise LoadtestError("--duration must be > 0", EXIT_USAGE)
    if o.timeout <= 0:
        raise LoadtestError("--timeout must be > 0", EXIT_USAGE)
    if o.connections < 1:
        raise LoadtestError("--connections must be ≥ 1", EXIT_USAGE)


def _credentials(o: LoadOptions) -> Any:
    import grpc

    if not o.tls:
        return None
    root = None
    if o.cacert is not None:
        try:
            root = o.cacert.read_bytes()
        except OSError as e:
            raise LoadtestError(f"--cacert {o.cacert}: {e.strerror}", EXIT_USAGE) from None
    return grpc.ssl_channel_credentials(root_certificates=root)


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on uvloop when installed (as the services do), else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_loadtest(o: LoadOptions) -> Any:
    """Resolve the method, build the request and drive the load; returns a :class:`~services.loadtest.report.Result`.
    Raises :class:`LoadtestError` (exit 2 or 3)."""
    import grpc

    from services.loadtest import reflect, runner

    _check_mode(o)
    metadata = parse_metadata(o.metadata)
    creds = _credentials(o)
    sync_ch = grpc.secure_channel(o.address, creds) if creds is not None else grpc.insecure_channel(o.address)
    try:
        spec = reflect.resolve(sync_ch, o.method, address=o.address, connect_timeout=o.connect_timeout)
        request = spec.request_from_json(o.data)
    except reflect.UsageError as e:
        raise LoadtestError(str(e), EXIT_USAGE) from None
    except reflect.Unreachable as e:
        raise LoadtestError(str(e), EXIT_UNAVAILABLE) from None
    finally:
        sync_ch.close()
    target = runner.Target(
        address=o.address, path=spec.path, payload=request.SerializeToString(), metadata=metadata,
        timeout=o.timeout, connections=o.connections, credentials=creds,
    )
    try:
        if o.rps is not None:
            return _run_loop(runner.open_loop(
                target, rate=o.rps, count=o.count, duration=o.duration, max_in_flight=o.max_in_flight,
                connect_timeout=o.connect_timeout,
            ))
        return _run_loop(runner.closed_loop(
            target, concurrency=o.concurrency or 50, count=o.count, duration=o.duration,
            connect_timeout=o.connect_timeout,
        ))
    except TimeoutError:
        raise LoadtestError(f"cannot connect to {o.address} within {o.connect_timeout:g} s", EXIT_UNAVAILABLE) from None


def loadtest(
    address: Annotated[str, typer.Argument(help="host:port of the server.")],
    method: Annotated[str, typer.Argument(help="pkg.Service/Method (or pkg.Service.Method); unary only.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Request as JSON (proto3 JSON mapping).")] = "{}",
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c",
                                                    help="Closed loop: calls kept in flight (default 50).")] = None,
    count: Annotated[int | None, typer.Option("--total", "-n",
                                              help="Calls to make (closed loop default 200).")] = None,
    rps: Annotated[float | None, typer.Option("--rps", help="Open loop: calls per second, sent on schedule.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", "-z", help="Seconds to run (instead of -n).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (latencies in ms).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Deadline of each call (s).")] = 20.0,
    metadata: Annotated[str, typer.Option("--metadata", "-m", help='Call metadata as JSON, e.g. {"x-run-id":"b"}.')] = "",
    connections: Annotated[int, typer.Option("--connections", help="TCP connections (calls spread round-robin).")] = 1,
    insecure: Annotated[bool, typer.Option("--insecure/--tls", help="Plaintext (default) or TLS.")] = True,
    cacert: Annotated[Path | None, typer.Option("--cacert", help="CA bundle (PEM) to verify the server with --tls.")] = None,
    max_in_flight: Annotated[int, typer.Option("--max-in-flight",
                                               help="Open loop: outstanding calls before sends are dropped.")] = 10_000,
) -> None:
    opts = LoadOptions(
        address=address, method=method, data=data, concurrency=concurrency, count=count, rps=rps, duration=duration,
        timeout=timeout, metadata=metadata, connections=connections, tls=not insecure, cacert=cacert,
        max_in_flight=max_in_flight,
    )
    try:
        result = run_loadtest(opts)
    except LoadtestError as e:
        typer.secho(f"error: {e.message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(e.code) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        sys.stdout.write(result.to_text())


loadtest.__doc__ = HELP


def register(app: typer.Typer) -> None:
    """Add ``loadtest`` to a Typer app (the ``vantage`` CLI)."""
    app.command("loadtest", help=HELP, no_args_is_help=True)(loadtest)


def main() -> None:
    """``python -m services.loadtest``."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(help=HELP, no_args_is_help=True)(loadtest)
    app()
