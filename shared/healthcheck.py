"""gRPC health probe: ``python -m shared.healthcheck [ADDR] [--service NAME] [--timeout S]``.

A small stand-in for ``grpc_health_probe`` (grpc-ecosystem/grpc-health-probe) that needs nothing beyond the image's
Python: it calls ``grpc.health.v1.Health/Check`` through :class:`shared.grpc_client.Channels`, so it speaks TLS /
mTLS and sends the bearer token exactly as the services' own clients do (settings from the environment). Used by
the Docker ``HEALTHCHECK`` and the compose health checks, and by ``vantage doctor`` (:func:`check`).

``ADDR`` is ``host:port``. Without it, every Vantage gRPC port of this host is tried on 127.0.0.1 and the probe
passes when one of them is SERVING (the image's default health check, whichever service the container runs).

Exit codes follow grpc_health_probe: 0 SERVING; 1 bad arguments or settings; 2 connection failure (including
deadline and TLS handshake failures); 3 the RPC failed (e.g. UNAUTHENTICATED); 4 not SERVING.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.config import ClientSettings

EXIT_SERVING, EXIT_USAGE, EXIT_CONNECTION, EXIT_RPC, EXIT_UNHEALTHY = 0, 1, 2, 3, 4
GRPC_SERVICES = ("orchestrator", "search", "inference", "extraction")


@dataclass(frozen=True)
class HealthResult:
    """Outcome of one probe: ``status`` is SERVING / NOT_SERVING / SERVICE_UNKNOWN / UNKNOWN or the gRPC code name
    of the failure (UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED, …); ``exit_code`` as the CLI's."""

    target: str
    status: str
    exit_code: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_SERVING


async def check(settings: ClientSettings, target: str, *, service: str = "", wait_seconds: float = 3.0) -> HealthResult:
    """Probe ``target`` (host:port) once, waiting at most ``wait_seconds`` (connection included)."""
    from shared.grpc_client import Channels

    # pick_first: a probe reports the server's own answer (NOT_SERVING → exit 1, UNAUTHENTICATED → exit 3);
    # round_robin's client-side health checking would turn both into UNAVAILABLE.
    channels = Channels(settings.model_copy(update={"grpc_lb_policy": "pick_first"}))
    try:
        stub = health_pb2_grpc.HealthStub(channels.get(target))
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=wait_seconds, wait_for_ready=False)
    except grpc.aio.AioRpcError as e:
        code = e.code()
        connection = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        # details() is gRPC's own text (connection refused, handshake failed, …) or the server's status message;
        # neither carries our token (the server's UNAUTHENTICATED message is fixed).
        return HealthResult(target, code.name, EXIT_CONNECTION if connection else EXIT_RPC, (e.details() or "")[:200])
    finally:
        await channels.close()
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return HealthResult(target, name, EXIT_SERVING if name == "SERVING" else EXIT_UNHEALTHY)


async def check_local(settings: ClientSettings, *, wait_seconds: float = 3.0) -> HealthResult:
    """Probe every Vantage gRPC port on 127.0.0.1 at once; the first SERVING one wins, else the last failure."""
    targets = [f"127.0.0.1:{getattr(settings, f'{name}_port')}" for name in GRPC_SERVICES]
    results = await asyncio.gather(*(check(settings, t, wait_seconds=wait_seconds) for t in targets))
    return next((r for r in results if r.ok), results[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.healthcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("addr", nargs="?", default="", help="host:port (default: every local Vantage port)")
    parser.add_argument("--service", default="", help="service name to check (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    try:
        settings = ClientSettings()  # the client keys only: TLS, token, ports
        if args.addr:
            result = asyncio.run(check(settings, args.addr, service=args.service, wait_seconds=args.timeout))
        else:
            result = asyncio.run(check_local(settings, wait_seconds=args.timeout))
    except ValueError as e:  # pydantic ValidationError and TLSConfigError are ValueErrors
        print(f"healthcheck: bad settings: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    line = f"{result.target}: {result.status}" + (f" ({result.detail})" if result.detail else "")
    print(line, file=sys.stdout if result.ok else sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
