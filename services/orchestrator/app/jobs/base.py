"""What a job is to the :class:`~services.orchestrator.app.runs.Orchestrator`: a plug-in per run kind.

The orchestrator owns everything that is the same for every kind — leases and their renewal, heartbeats, fencing
tokens, cancel requests, the streaming of claimed items under one bound, releasing items, completing the run — and
knows nothing of what an item *is*. A job kind (:data:`JobFactory`, registered by run kind in
:mod:`services.orchestrator.app.jobs.registry`) knows the rest:

- :meth:`Job.setup` — the per-run RPCs before any item (a model route, a schema); raises :class:`SetupError`, and
  the run is marked failed.
- :meth:`Job.process` — one claimed item, whole: its calls, its result and its ledger rows, written back through the
  store's unit of work (fenced by the item's attempt). Returns ``(done?, one-line summary or failure reason)``.
- :meth:`Job.finish` — once no item is left unfinished, before the run is completed (e.g. merging competitor names).
- :meth:`Job.cancel` — a CancelRun of the run: cancel what the provider still runs for it (e.g. snapshots).
- :meth:`Job.aclose` — always, at the end of an execution here (close a stream).

Jobs see the process's services through a :class:`JobContext` (the orchestrator is one), never the orchestrator
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import grpc

from services.orchestrator.app.pipeline import Budget, Budgets, Inflight
from services.orchestrator.clients import Clients
from services.orchestrator.store import ClaimedItem, RunRow, Store
from shared.config import OrchestratorSettings
from shared.errors import InvalidArgument, VantageError, from_rpc_error
from shared.grpc_client import call_under_deadline

__all__ = ["ItemFailed", "Job", "JobContext", "JobFactory", "SetupError", "atomic_input", "describe",
           "item_stage", "stage_call"]

T = TypeVar("T")


class JobContext(Protocol):
    """The services a job uses: the run store, the downstream clients, the settings and the process's long-lived
    budgets (one per downstream service, shared by every run of the process)."""

    @property
    def store(self) -> Store: ...
    @property
    def clients(self) -> Clients: ...
    @property
    def settings(self) -> OrchestratorSettings: ...
    @property
    def budgets(self) -> Budgets: ...


class Job(Protocol):
    """One run of one kind, as executed in this process (see the module docstring)."""

    #: Items in flight at once for this run (None: ``settings.max_items_in_flight`` or the budgets' sum).
    max_in_flight: int | None

    async def setup(self) -> None: ...
    async def process(self, item: ClaimedItem) -> tuple[bool, str]: ...
    async def finish(self) -> None: ...
    async def cancel(self) -> None: ...
    async def aclose(self) -> None: ...


#: Builds the job of a run: ``factory(context, run, inflight)`` — cheap, no I/O (that is :meth:`Job.setup`).
JobFactory = Callable[[JobContext, RunRow, Inflight], Job]


class ItemFailed(Exception):
    """An item cannot be researched; ``reason`` is the one line stored on the item and shown to the user, ``code``
    the gRPC status behind it (None for a local error)."""

    def __init__(self, reason: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SetupError(Exception):
    """A run cannot start: the per-run RPCs (classification schema, model route) failed. ``cause`` is the error,
    e.g. :class:`~shared.errors.Unavailable` when a service is down."""

    def __init__(self, message: str, cause: VantageError) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


def describe(stage: str, err: BaseException, attempts: int = 1) -> str:
    """One line for a failed stage: ``"inference: RESOURCE_EXHAUSTED after 3 attempts: rate limited
    [PROVIDER_RATE_LIMITED]"`` (the ErrorInfo reason, when there is one, in brackets at the end)."""
    if isinstance(err, VantageError):
        code = err.code.name
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        reason = f" [{err.reason}]" if err.reason and err.reason != code else ""
        return f"{stage}: {code}{tries}: {err.message}{reason}"
    return f"{stage}: internal error: {type(err).__name__}: {err}"


@contextlib.asynccontextmanager
async def atomic_input(store: Store, run_id: str) -> AsyncIterator[None]:
    """Around storing the input of a run created with ``input_complete=False``: on success mark it complete; on any
    failure — an input error, a database error, Ctrl-C (cancellation) — delete the run (shielded from a further
    cancellation) and re-raise. A process killed outright leaves the run marked incomplete, which
    :meth:`~services.orchestrator.app.runs.Orchestrator.begin`, resume, retry and workers refuse."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(store.discard_run(run_id))
        raise
    await store.mark_input_complete(run_id)


def stage_call(fn: Callable[[float], Awaitable[T]], settings: OrchestratorSettings, *, seconds: float | None = None) -> Awaitable[T]:
    """:func:`shared.grpc_client.call_under_deadline` with the settings' retry knobs: ONE deadline of ``seconds``
    (default ``settings.rpc_timeout_seconds``) for the whole stage, at most ``settings.retry_attempts`` attempts,
    transport failures only. ``fn(seconds_left)`` is one attempt."""
    return call_under_deadline(
        fn, seconds=settings.rpc_timeout_seconds if seconds is None else seconds, attempts=settings.retry_attempts,
        initial=settings.retry_initial_seconds, maximum=settings.retry_max_seconds,
    )


async def item_stage(
    settings: OrchestratorSettings, stage: str, budget: Budget, rpc: Callable[[float], Awaitable[T]], *,
    reraise_invalid: bool = False,
) -> T:
    """One item stage's RPC ``rpc(seconds_left)`` under :func:`stage_call` (one deadline, transport failures
    resent), each attempt holding a slot of ``budget`` only while it runs (not across the back-off). Every failure
    becomes :class:`ItemFailed` naming the stage and the attempts (``"extraction: UNAVAILABLE after 3 attempts: …"``),
    except INVALID_ARGUMENT with ``reraise_invalid`` (the caller has a fallback for it)."""
    tries = 0

    async def attempt(seconds_left: float) -> T:
        nonlocal tries
        tries += 1
        async with budget.slot():
            return await rpc(seconds_left)

    try:
        return await stage_call(attempt, settings)
    except InvalidArgument as e:
        if reraise_invalid:
            raise
        raise ItemFailed(describe(stage, e, tries), e.code) from None
    except VantageError as e:
        raise ItemFailed(describe(stage, e, tries), e.code) from None
    except grpc.aio.AioRpcError as e:  # raised outside call_under_deadline's translation (e.g. by the channel)
        err = from_rpc_error(e)
        raise ItemFailed(describe(stage, err, tries), err.code) from None
    except Exception as e:  # a bug or a malformed answer: the item fails, the run goes on
        raise ItemFailed(describe(stage, e, tries)) from None
