"""structlog set-up shared by every process: JSON lines unless stderr is a terminal, contextvars merged first,
secrets redacted and sizes bounded before rendering.

:func:`redact` is THE redaction function of the code base (re-exported as ``shared.security.redact``): log lines,
unary and streaming error messages (:func:`shared.errors.public_message`) and CLI output all go through it. Log lines
are bounded too: a string value is cut to :data:`MAX_FIELD_CHARS` characters (tracebacks to
:data:`MAX_EXCEPTION_CHARS`) and a rendered line to :data:`MAX_LINE_CHARS` (a 10 MB field echoed from a request
must not become a 10 MB log line).

Per-RPC context (method, request_id, run_id, item_id) is bound by the server interceptor in
:mod:`shared.grpc_server` with ``structlog.contextvars`` (structlog docs, "Context Variables").
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

_SECRET_KEYS = re.compile(r"(authorization|api[_-]?key|token|secret|password|cookie)", re.I)
_SECRET_VALUES = re.compile(
    r"(Bearer\s+[A-Za-z0-9._~+/=-]+|sk-[A-Za-z0-9_-]{8,}|tvly-[A-Za-z0-9_-]{8,}|pplx-[A-Za-z0-9_-]{8,}"
    r"|sk-ant-[A-Za-z0-9_-]{8,})"
)
#: ``api_key=…`` / ``token=…`` in a query string or a form body: the value goes, the name stays.
_SECRET_PARAMS = re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|token|secret|password)=)[^&\s\"']+")
_extra_secrets: set[str] = set()

#: Characters kept of one string value of a log line (client input echoed into a log is cut here).
MAX_FIELD_CHARS = 2_000
#: Characters kept of a formatted traceback (the ``exception`` field).
MAX_EXCEPTION_CHARS = 8_000
#: Characters of a whole rendered log line; a longer line is rendered again with every value cut to 200.
MAX_LINE_CHARS = 16_384
#: Characters of an untrusted text scanned for secrets before it is cut: longer than any key or token, so a secret
#: that straddles the cut is still recognised whole.
_SCAN_SLACK = 512


def register_secret(value: str | None) -> None:
    """Add a literal value (an API key, a token) that must never appear in a log line."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def register_url_password(url: str) -> None:
    """Register the password of a database URL (``postgresql://user:password@host/db``, percent-decoded) with
    :func:`register_secret`; a URL without one, or one that does not parse, registers nothing."""
    try:
        password = urlsplit(url or "").password
    except ValueError:
        return
    register_secret(unquote(password) if password else None)


def first_line(e: BaseException, limit: int = 300) -> str:
    """``"<ExceptionType>: <first line of its message>"``, at most ``limit`` characters, for a log field; a
    SQLAlchemy error is described by the driver error it wraps (``.orig``)."""
    text = str(getattr(e, "orig", None) or e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:limit]


def redact(text: str) -> str:
    """``text`` with registered secret values (:func:`register_secret`), secret-looking tokens (``Bearer …``,
    ``sk-…``, ``sk-ant-…``, ``tvly-…``, ``pplx-…``) and ``api_key=`` / ``token=`` parameter values replaced by
    ``[REDACTED]``. The one redaction function for logs, unary and streaming errors (see the module docstring)."""
    for s in _extra_secrets:
        if s in text:
            text = text.replace(s, "[REDACTED]")
    return _SECRET_PARAMS.sub(r"\1[REDACTED]", _SECRET_VALUES.sub("[REDACTED]", text))


#: The historical name of :func:`redact` (same function).
redact_text = redact


def bounded(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, with ``…[+N chars]`` saying how much went (unchanged when short).
    Use it for client input echoed into an error or a log line: the 200-character default keeps a message readable
    and a hostile 10 MB field out of logs and statuses. Does not redact (see :func:`shared.errors.public_message`)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


def redact_bounded(text: str, limit: int) -> str:
    """:func:`redact` then :func:`bounded` — in that order, so a secret cut in half is still masked — scanning only
    the first ``limit`` + 512 characters of a huge text (the rest is dropped anyway)."""
    if len(text) > limit + _SCAN_SLACK:
        head = redact(text[: limit + _SCAN_SLACK])
        return f"{head[:limit]}…[+{len(text) - limit} chars]"
    return bounded(redact(text), limit)


def _redact(value: Any, limit: int = MAX_FIELD_CHARS, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_bounded(value, limit)
    if isinstance(value, bytes | bytearray):
        return redact_bounded(bytes(value[: limit + _SCAN_SLACK]).decode("utf-8", "replace"), limit)
    if depth > 8:  # a pathological nesting is not worth walking: its repr, bounded
        return redact_bounded(repr(value), limit)
    if isinstance(value, dict):
        return {
            k: ("[REDACTED]" if _SECRET_KEYS.search(str(k)) and v else _redact(v, limit, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        out = [_redact(v, limit, depth + 1) for v in items[:100]]
        if len(items) > 100:
            out.append(f"…[+{len(items) - 100} items]")
        return out if not isinstance(value, tuple) else tuple(out)
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: masks values under secret-looking keys and secret-looking strings anywhere, and cuts
    string values to :data:`MAX_FIELD_CHARS` (the ``exception`` traceback to :data:`MAX_EXCEPTION_CHARS`) and lists
    to 100 items."""
    out = {}
    for k, v in event_dict.items():
        if _SECRET_KEYS.search(str(k)) and v:
            out[k] = "[REDACTED]"
        else:
            out[k] = _redact(v, MAX_EXCEPTION_CHARS if k == "exception" else MAX_FIELD_CHARS)
    return out


class BoundedRenderer:
    """Wraps a structlog renderer so that no rendered line exceeds ``max_chars`` characters: an over-long line is
    rendered again with every value cut to 200 characters (``"truncated": true``), and if even that is too long,
    with only the event name, level, timestamp and the correlation ids. The output stays valid JSON."""

    KEEP = ("event", "level", "timestamp", "service", "rpc", "request_id", "run_id", "item_id", "code")

    def __init__(self, renderer: Any, max_chars: int = MAX_LINE_CHARS) -> None:
        self._renderer = renderer
        self._max = max_chars

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        line = self._renderer(logger, method, dict(event_dict))
        if len(line) <= self._max:
            return line
        short = {k: _redact(v, 200) for k, v in event_dict.items()}
        short["truncated"] = True
        line = self._renderer(logger, method, short)
        if len(line) <= self._max:
            return line
        minimal: dict[str, Any] = {k: bounded(str(event_dict[k]), 200) for k in self.KEEP if k in event_dict}
        minimal["truncated"] = True
        return self._renderer(logger, method, minimal)


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
            BoundedRenderer(renderer),
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
