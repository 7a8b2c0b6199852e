"""Entry point shared by ``python -m services.<name>`` and ``vantage serve <name>``."""

from __future__ import annotations

import argparse
import asyncio

from shared.config import get_settings
from shared.grpc_server import Builder, run_service
from shared.logging import configure_logging


def run(name: str, builder: Builder, *, host: str | None, port: int | None, ready_file: str | None) -> None:
    """Configure logging and run service ``name`` on the event loop (uvloop when installed) until SIGTERM."""
    settings = get_settings()
    configure_logging(name, settings.log_level, settings.log_format)
    coro = run_service(name, builder, settings, host=host, port=port, ready_file=ready_file)
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def main(name: str, builder: Builder) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"Run the {name} service.")
    parser.add_argument("--host", default=None, help="address to bind (default: settings host)")
    parser.add_argument("--port", type=int, default=None, help="port (0 = any free port; default: settings)")
    parser.add_argument("--ready-file", default=None, help="write {address, port, pid} here once SERVING")
    args = parser.parse_args()
    run(name, builder, host=args.host, port=args.port, ready_file=args.ready_file)
