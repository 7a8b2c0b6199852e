"""Entry point shared by ``python -m services.<name>`` and ``vantage serve <name>``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, overload

from shared.config import BaseServiceSettings, Settings, settings_of
from shared.grpc_server import Mount, run_service
from shared.logging import configure_logging

S = TypeVar("S", bound=BaseServiceSettings)
_Build = Callable[[S], AbstractAsyncContextManager[list[Mount]]]


@overload
def run(
    name: str, builder: _Build[S], settings_type: type[S], *, host: str | None, port: int | None, ready_file: str | None
) -> None: ...
@overload
def run(name: str, builder: _Build[Settings], *, host: str | None, port: int | None, ready_file: str | None) -> None: ...
def run(
    name: str,
    builder: _Build[Any],
    settings_type: type[BaseServiceSettings] = Settings,
    *,
    host: str | None,
    port: int | None,
    ready_file: str | None,
) -> None:
    """Read ``settings_type`` from the environment (a service's own model, :data:`shared.config.SERVICE_SETTINGS`,
    which holds no other service's keys; the whole :class:`~shared.config.Settings` for a test or bench harness that
    names none), configure logging and run service ``name`` on the event loop (uvloop when installed) until
    SIGTERM."""
    settings = settings_of(settings_type)
    configure_logging(name, settings.log_level, settings.log_format)
    coro = run_service(name, builder, settings, host=host, port=port, ready_file=ready_file)
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def main(name: str, builder: _Build[S], settings_type: type[S]) -> None:
    """``python -m services.<name>``: parse ``--host/--port/--ready-file`` and :func:`run` the service with its own
    settings model ``settings_type``."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"Run the {name} service.")
    parser.add_argument("--host", default=None, help="address to bind (default: settings host)")
    parser.add_argument("--port", type=int, default=None, help="port (0 = any free port; default: settings)")
    parser.add_argument("--ready-file", default=None, help="write {address, port, pid} here once SERVING")
    args = parser.parse_args()
    run(name, builder, settings_type, host=args.host, port=args.port, ready_file=args.ready_file)
