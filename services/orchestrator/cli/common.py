"""What every ``vantage`` command shares: the exit codes, the one-line error boundary (:func:`run_command`), the
option checks and output helpers. Light on purpose: ``vantage --help`` imports it (the database session, progress
and signal handling are in :mod:`services.orchestrator.cli.session`).

Exit codes (:mod:`shared.exitcodes`): 0 ok; 1 the run finished with failed items; 2 usage or input error; 3
infrastructure unavailable (services or database unreachable, schema out of date); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

import typer

from shared.config import get_settings
from shared.exitcodes import EXIT_FAILED_ITEMS, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from shared.text import printable

__all__ = [
    "EXIT_FAILED_ITEMS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "CliError",
    "check_output", "cli_log_level", "describe_error", "fail", "first_line", "open_out", "print_json", "run_command",
    "setup_cli",
]



class CliError(Exception):
    """A one-line error for the user, with the process exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def run_command(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` on a fresh event loop; map every failure to one line on stderr and an exit code."""
    from services.orchestrator.reports.tables import make_console  # rich: start-up cost of `vantage --help`

    err = make_console(stderr=True)
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        err.print("interrupted", style="yellow")
        return EXIT_INTERRUPTED
    except BaseException as e:  # the user gets one line, never a traceback
        leaf = leaf_error(e)
        if isinstance(leaf, SystemExit):
            raise
        if isinstance(leaf, KeyboardInterrupt | asyncio.CancelledError):  # a signal, seen inside the loop
            err.print("interrupted", style="yellow")
            return EXIT_INTERRUPTED
        if isinstance(leaf, BrokenPipeError):
            # `vantage export … | head`: the reader left; stop quietly (and keep Python from complaining at exit).
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        message, code = describe_error(leaf)
        err.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
        return code


def describe_error(e: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception that ended a command."""
    # Imported here, not at the top: they pull in SQLAlchemy and the stubs (start-up cost of `vantage --help`).
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from services.orchestrator.app.inputs import InputError
    from services.orchestrator.app.jobs.base import SetupError
    from services.orchestrator.store import SchemaOutOfDate
    from shared.errors import FailedPrecondition, InvalidArgument, NotFound, RetryableError, VantageError

    if isinstance(e, CliError):
        return e.message, e.code
    if isinstance(e, SchemaOutOfDate):
        return e.message, EXIT_UNAVAILABLE
    if isinstance(e, SetupError):
        code = EXIT_UNAVAILABLE if isinstance(e.cause, RetryableError) else EXIT_USAGE
        return e.message, code
    if isinstance(e, InputError | InvalidArgument | NotFound | FailedPrecondition):
        return e.message, EXIT_USAGE
    if isinstance(e, RetryableError):
        return e.message, EXIT_UNAVAILABLE
    if isinstance(e, OperationalError | InterfaceError | DBAPIError):
        return f"database error: {first_line(e)}", EXIT_UNAVAILABLE
    if isinstance(e, VantageError):
        return e.message, EXIT_FAILED_ITEMS
    return f"internal error: {type(e).__name__}: {first_line(e)}", EXIT_FAILED_ITEMS


def leaf_error(e: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from task groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@contextlib.contextmanager
def open_out(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        fh = open(path, "w", encoding="utf-8", newline="")
    except OSError as e:
        raise CliError(f"{path}: cannot write: {e.strerror}") from None
    with fh:
        yield fh


def cli_log_level() -> str:
    """The CLI logs warnings and errors only, unless VANTAGE_LOG_LEVEL asks for more (stdout is for results)."""
    return os.environ.get("VANTAGE_LOG_LEVEL", "WARNING")


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print a one-line error to stderr (control characters and escape sequences removed) and return the Exit to
    raise."""
    typer.secho(f"error: {printable(message)}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def setup_cli() -> None:
    """Logging for the CLI process: warnings only on stderr unless VANTAGE_LOG_LEVEL says otherwise."""
    from shared.logging import configure_logging

    configure_logging("cli", cli_log_level(), get_settings().log_format)


def check_output(output: str, allowed: tuple[str, ...] = ("table", "json", "csv")) -> str:
    """``output`` lower-cased when it is one of ``allowed``; else a usage error (exit 2)."""
    out = output.lower()
    if out not in allowed:
        raise fail(f"--output must be one of {', '.join(allowed)} (got {output!r})")
    return out
