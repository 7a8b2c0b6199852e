"""The database + services session of a ``vantage`` command that executes or reads runs in this process, the
progress view on stderr, and the Ctrl-C handler of a run executing here (kept apart from
:mod:`services.orchestrator.cli.common` so that ``vantage --help`` does not import SQLAlchemy, rich and the stubs).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.cli.common import EXIT_UNAVAILABLE, CliError, first_line
from services.orchestrator.clients import Clients
from services.orchestrator.reports.tables import make_console
from services.orchestrator.store import ClaimedItem, Store, open_store
from services.orchestrator.store.db import display_url
from shared.config import Settings
from shared.grpc_client import Channels
from shared.text import printable

__all__ = ["ProgressView", "Session", "resolve_run", "session", "stop_on_signals"]


@dataclass
class Session:
    settings: Settings
    store: Store
    orch: Orchestrator


@contextlib.asynccontextmanager
async def session(settings: Settings) -> AsyncIterator[Session]:
    """Database (schema checked; an empty database is created) + channels to the services + an Orchestrator."""
    try:
        store = await open_store(settings.database_url)
    except (OperationalError, InterfaceError, DBAPIError, OSError) as e:
        raise CliError(
            f"database not reachable at {display_url(settings.database_url)}: {first_line(e)}", EXIT_UNAVAILABLE
        ) from None
    channels = Channels(settings)
    try:
        yield Session(settings, store, Orchestrator(store, Clients(channels, settings), settings))
    finally:
        await channels.close()
        await store.close()


async def resolve_run(store: Store, run_id: str) -> str:
    """A full run id from an id or its unique prefix; CliError (exit 2) otherwise."""
    ids = await store.find_run_ids(run_id)
    if not ids:
        raise CliError(f"run {run_id!r} not found")
    if len(ids) > 1:
        raise CliError(f"run id prefix {run_id!r} is ambiguous; give more characters")
    return ids[0]


# --- progress ---------------------------------------------------------------------------------------------------


class ProgressView:
    """Item-by-item progress on stderr: a rich progress bar on a terminal, one plain line per item otherwise,
    nothing with ``--quiet``."""

    def __init__(self, total: int, already: int, *, quiet: bool, label: str = "researching") -> None:
        self.total = total
        self.label = label
        self.count = already
        self.console = make_console(stderr=True)
        self.mode = "quiet" if quiet else ("bar" if sys.stdout.isatty() and self.console.is_terminal else "lines")
        self._bar: Progress | None = None
        self._task: object = None

    def __enter__(self) -> ProgressView:
        if self.mode == "bar":
            self._bar = Progress(
                TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.description}"), console=self.console, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=self.total, completed=self.count)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def item(self, item: ClaimedItem, ok: bool, message: str) -> None:
        self.count += 1
        if self.mode == "bar" and self._bar is not None:
            company = escape(printable(item.company))  # a company name is text, never rich markup
            label = f"{company}: {escape(printable(message))}" if ok else f"[red]{company}: failed[/red]"
            self._bar.update(self._task, advance=1, description=label)  # type: ignore[arg-type]
        elif self.mode == "lines":
            state = "done  " if ok else "FAILED"
            self.console.print(
                f"[{self.count}/{self.total}] {state} {item.company}: {message}", markup=False, highlight=False,
                soft_wrap=True,
            )


@contextlib.contextmanager
def on_signals(first: Callable[[], None]) -> Iterator[dict[str, bool]]:
    """The one Ctrl-C / SIGTERM handler of a command running an event loop: the first signal calls ``first`` (a
    cooperative stop: stop claiming, in-flight items back to pending, resumable); a second one cancels the main task
    at once. Yields ``{"stopped": bool}`` (whether a signal arrived)."""
    loop = asyncio.get_running_loop()
    state = {"stopped": False}
    main = asyncio.current_task()

    def handler() -> None:
        if state["stopped"] and main is not None:
            main.cancel()
            return
        state["stopped"] = True
        first()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield state
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def stop_on_signals(orch: Orchestrator, run_id: str) -> contextlib.AbstractContextManager[dict[str, bool]]:
    """:func:`on_signals` for a run executing here: the first Ctrl-C / SIGTERM stops it cooperatively (resumable),
    a second one interrupts at once."""

    def first() -> None:
        make_console(stderr=True).print("stopping… (again to force)", style="yellow")
        orch.stop(run_id)

    return on_signals(first)
