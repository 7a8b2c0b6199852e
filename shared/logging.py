"""structlog set-up shared by every process: JSON lines unless stderr is a terminal, contextvars merged first,
secrets redacted before rendering.

Per-RPC context (method, request_id, run_id, item_id) is bound by the server interceptor in
:mod:`shared.grpc_server` with ``structlog.contextvars`` (structlog docs, "Context Variables").
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(authorization|api[_-]?key|token|secret|password|cookie)", re.I)
_SECRET_VALUES = re.compile(
    r"(Bearer\s+[A-Za-z0-9._~+/=-]+|sk-[A-Za-z0-9_-]{8,}|tvly-[A-Za-z0-9_-]{8,}|pplx-[A-Za-z0-9_-]{8,}"
    r"|sk-ant-[A-Za-z0-9_-]{8,})"
)
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Add a literal value (an API key, a token) that must never appear in a log line."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def redact_text(text: str) -> str:
    """``text`` with known secret values and secret-looking tokens replaced by ``[REDACTED]``."""
    for s in _extra_secrets:
        if s in text:
            text = text.replace(s, "[REDACTED]")
    return _SECRET_VALUES.sub("[REDACTED]", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: ("[REDACTED]" if _SECRET_KEYS.search(str(k)) and v else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: masks values under secret-looking keys and secret-looking strings anywhere."""
    return _redact(event_dict)


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog (and stdlib logging) for one process.

    ``fmt``: ``json`` | ``console`` | ``auto`` (console when stderr is a TTY). Logs go to stderr so that stdout
    stays free for command output.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(lvl, int):
        lvl = logging.INFO
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Cached loggers keep their processors forever, which defeats structlog.testing.capture_logs() in any test
        # that runs after this call in the same process (structlog docs, "Testing"): cache only outside pytest.
        cache_logger_on_first_use="pytest" not in sys.modules,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore", "openai", "anthropic", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
