"""``python -m services.sandbox --host 127.0.0.1 --port 8080 [--ready-file PATH]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import structlog

from .config import SandboxSettings
from .server import serve


def _configure_logging(level: str) -> None:
    """Use the project's logging setup (structlog, JSON off a TTY, secret redaction) when present."""
    if structlog.is_configured():
        return
    try:
        from shared.logging import configure_logging
    except ImportError:  # the sandbox also runs on its own, without shared/
        pass
    else:
        configure_logging("sandbox", level)
        return
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.sandbox", description=__doc__)
    parser.add_argument(
        "--host", default=None, help="bind address (default VANTAGE_SANDBOX_HOST or 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=None, help="port, 0 = any free port (default 8080)")
    parser.add_argument("--ready-file", default=None, help='write {"port", "pid"} here once serving')
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    settings = SandboxSettings()
    if args.log_level:
        settings.log_level = args.log_level
    elif "VANTAGE_SANDBOX_LOG_LEVEL" not in os.environ and os.environ.get("VANTAGE_LOG_LEVEL"):
        # The stack's common level variable, used by shared/procs.py for every child.
        settings.log_level = os.environ["VANTAGE_LOG_LEVEL"]
    _configure_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - optional speed-up
        pass
    asyncio.run(serve(settings, args.host, args.port, ready_file=args.ready_file))


if __name__ == "__main__":
    main()
