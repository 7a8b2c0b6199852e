"""Helpers of the resilience tests (imported by name, like the other suites' testkits)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import httpx
import pytest

from shared.errors import VantageError, from_rpc_error


async def poll_until(check: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.005) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``within`` seconds (no blind sleeps)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)


async def stats(admin: httpx.AsyncClient) -> dict[str, Any]:
    r = await admin.get("/_sandbox/stats")
    r.raise_for_status()
    return r.json()


async def endpoint(admin: httpx.AsyncClient, name: str) -> dict[str, Any]:
    return (await stats(admin))["endpoints"].get(name, {"calls": 0, "in_flight": 0, "cancelled": 0, "faults": {}})


async def fails(call: Awaitable[Any]) -> tuple[grpc.StatusCode, VantageError, grpc.aio.AioRpcError]:
    """Await a gRPC call that must fail; its status code, the error as :mod:`shared.errors` (details decoded) and
    the raw error."""
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code(), from_rpc_error(ei.value), ei.value


async def cancel_lag(
    admin: httpx.AsyncClient, name: str, call: Any, *, within: float = 10.0
) -> float:
    """Wait until ``call`` (a started grpc.aio call) hangs at the sandbox endpoint ``name``, cancel it, and return
    the seconds between the cancel and the sandbox seeing the client go away (its ``cancellations`` entry)."""

    async def hanging() -> bool:
        return (await endpoint(admin, name)).get("in_flight", 0) > 0

    await poll_until(hanging, within=within)
    before = len((await stats(admin))["cancellations"])
    t_cancel = time.time()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    async def seen() -> dict[str, Any] | None:
        entries = (await stats(admin))["cancellations"][before:]
        return next((e for e in entries if e["endpoint"] == name), None)

    entry = await poll_until(seen, within=within)
    return float(entry["at"]) - t_cancel


@contextlib.asynccontextmanager
async def bare_server(handlers: Mapping[str, Mapping[str, Callable[..., Awaitable[bytes]]]]) -> AsyncIterator[str]:
    """A plain ``grpc.aio`` server on a free loopback port whose unary methods (``{service: {method: handler}}``)
    take and answer raw bytes; yields its address. For what gRPC itself does with a status (retries, throttling)."""
    server = grpc.aio.server()
    for service, methods in handlers.items():
        rpcs = {m: grpc.unary_unary_rpc_method_handler(h) for m, h in methods.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, rpcs),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
