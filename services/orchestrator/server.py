"""gRPC face of the orchestrator (``vantage.orchestrator.v1.OrchestratorService``) and its builder.

:func:`build` owns the database engine, the channels to the other services, one :class:`Orchestrator` (shared
budgets) and a ``TaskGroup`` in which started runs execute in the background. On shutdown every run is stopped
cooperatively: in-flight items go back to pending and the run stays resumable (ResumeRun, or ``vantage resume``).

Runs started with ``detach`` (StartRun, ResumeRun, RetryFailed) are queued for ``vantage worker`` processes instead
of executing here; WatchRun follows a run wherever it executes (it polls ``run_events``), and ends when the run
ends — or when it has been interrupted (no process renewed its heartbeat for two leases) and nobody took it over.
CancelRun reaches a run executing in another process through ``runs.cancel_requested``. The server also runs the
lease reaper (:meth:`Store.reap`) every third of the lease.

Handlers validate, delegate to :class:`~services.orchestrator.runs.Orchestrator` / the store, and translate rows
to protobuf. Errors: NOT_FOUND for unknown run ids, FAILED_PRECONDITION for invalid transitions (cancel a finished
run, resume a run that is running here), INVALID_ARGUMENT with a BadRequest field for bad input. ORG_EVAL runs
(AI visibility) are created by :func:`services.orchestrator.evaluation.start_request` and execute like research
runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import grpc
import structlog
from google.protobuf import timestamp_pb2

from services.orchestrator.inputs import CompanyCsv, CsvFile, InputRow, rows_from_pairs
from services.orchestrator.research import Clients, ResearchOptions
from services.orchestrator.runs import Orchestrator, RunSummary
from services.orchestrator.store import ItemView, RunRow, Store, open_store
from services.orchestrator.store.models import RUN_STATUSES, TERMINAL_RUN_STATUSES
from shared.config import Settings
from shared.errors import InvalidArgument
from shared.grpc_client import Channels, forward_timeout
from shared.grpc_server import Mount
from vantage.common.v1 import common_pb2
from vantage.inference.v1 import inference_pb2
from vantage.orchestrator.v1 import orchestrator_pb2 as pb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
log = structlog.get_logger("vantage.orchestrator")

DEFAULT_PAGE, MAX_PAGE = 50, 1000
#: Events read per poll of run_events by WatchRun.
WATCH_BATCH = 500
_EVENT_TYPES = {name: value for name, value in pb.RunEvent.Type.items()}
_WITH_RUN = frozenset({"RUN_STARTED", "RUN_FINISHED", "RUN_CANCELLED"})


# --- proto conversions ------------------------------------------------------------------------------------------


def ts(dt: datetime | None) -> timestamp_pb2.Timestamp | None:
    if dt is None:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


def run_to_proto(s: RunSummary) -> pb.Run:
    r, t = s.run, s.totals
    c = t.counts
    msg = pb.Run(
        run_id=r.id,
        kind=pb.RESEARCH if r.kind == "research" else pb.ORG_EVAL,
        status=pb.Run.Status.Value(r.status.upper()),
        name=r.name,
        counts=pb.RunCounts(
            total=t.total, pending=c["pending"], running=c["running"], done=c["done"], failed=c["failed"],
            skipped=c["skipped"],
        ),
        cost_usd=t.cost_usd,
        credits=t.credits,
        usage=common_pb2.Usage(input_tokens=t.input_tokens, output_tokens=t.output_tokens),
        error=r.error or "",
    )
    for field, value in (("created_at", r.created_at), ("started_at", r.started_at), ("finished_at", r.finished_at)):
        stamp = ts(value)
        if stamp is not None:
            getattr(msg, field).CopyFrom(stamp)
    return msg


def item_to_proto(it: ItemView) -> pb.RunItem:
    msg = pb.RunItem(
        item_id=it.id, key=it.company, domain=it.domain, status=pb.RunItem.Status.Value(it.status.upper()),
        attempts=it.attempts, error=it.error or "",
    )
    if it.tier:
        msg.research.CopyFrom(
            pb.ResearchResult(
                tier=common_pb2.Tier.Value(it.tier), score=it.score or 0, category=it.category or "",
                rationale=it.rationale or "", evidence_urls=it.evidence_urls, results_kept=it.kept_count or 0,
                results_returned=it.returned_count or 0, tokens=it.tokens, cost_usd=it.cost_usd,
            )
        )
    return msg


def _token(value: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode()


def _untoken(token: str) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        n = int(value)
        if kind != "v1" or n < 0:
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not one this service issued", field="page_token") from None
    return n


def _page_size(size: int) -> int:
    if size < 0:
        raise InvalidArgument("page_size must be ≥ 0", field="page_size")
    return min(size or DEFAULT_PAGE, MAX_PAGE)


# --- servicer ---------------------------------------------------------------------------------------------------


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    """Thin servicer over an :class:`Orchestrator`; background runs are tasks of ``tg``."""

    def __init__(self, orch: Orchestrator, settings: Settings, tg: asyncio.TaskGroup) -> None:
        self._orch = orch
        self._settings = settings
        self._tg = tg
        self._store = orch.store

    async def _run(self, run_id: str) -> pb.Run:
        return run_to_proto(await self._orch.summary(run_id))

    async def _spawn(self, run_id: str) -> None:
        """Mark the run running now, execute it in the background."""
        await self._orch.begin(run_id)
        self._tg.create_task(self._background(run_id), name=f"run-{run_id}")

    async def _background(self, run_id: str) -> None:
        # A child of the server's TaskGroup must never raise: that would cancel the server itself.
        try:
            await self._orch.execute(run_id)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # recorded on the run; the server goes on
            message = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            log.warning("run_failed", run_id=run_id, error=message)
            with contextlib.suppress(Exception):
                await self._store.set_run_status(
                    run_id, "failed", only_from=("running",), finished=True, error=message,
                    event=("RUN_FINISHED", f"failed: {message}"),
                )

    # --- RPCs ---------------------------------------------------------------------------------------------------

    async def StartRun(self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        if request.kind == pb.ORG_EVAL:
            return await self._start_org_eval(request, context)
        if request.kind != pb.RESEARCH:
            raise InvalidArgument("kind must be RESEARCH (or ORG_EVAL)", field="kind")
        opts = await self._options(request, context)
        name = request.name.strip()
        which = request.WhichOneof("input")
        with self._rows(request, which) as (rows, input_path):
            run, _report = await self._orch.create_research_run(
                rows, name=name or (Path(input_path).name if input_path else "inline"), options=opts,
                input_path=input_path,
            )
        if request.detach:
            await self._store.enqueue_run(run.id)
        else:
            await self._spawn(run.id)
        return await self._run(run.id)

    async def _start_org_eval(self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        """StartRun of kind ORG_EVAL: inline ``org_eval``, or ``input_path`` + ``org_eval_options``
        (:func:`services.orchestrator.evaluation.start_request`); executed here unless ``detach``."""
        from services.orchestrator.evaluation import start_request

        run = await start_request(self._orch, request, rpc_timeout=forward_timeout(context, 5.0))
        if request.detach:
            await self._store.enqueue_run(run.id)
        else:
            await self._spawn(run.id)
        return await self._run(run.id)

    @contextlib.contextmanager
    def _rows(self, request: pb.StartRunRequest, which: str | None) -> Iterator[tuple[Iterator[InputRow], str | None]]:
        if which == "input_path":
            if not request.input_path.strip():
                raise InvalidArgument("input_path is empty", field="input_path")
            with CsvFile(request.input_path) as f:
                yield f.rows(), request.input_path
        elif which == "input_csv":
            yield CompanyCsv.from_text(request.input_csv, "input_csv").rows(), None
        elif which == "research":
            if not request.research.companies:
                raise InvalidArgument("research.companies is empty", field="research.companies")
            yield rows_from_pairs((c.company, c.domain) for c in request.research.companies), None
        elif which == "org_eval":
            raise InvalidArgument("org_eval input needs kind ORG_EVAL", field="org_eval")
        else:
            raise InvalidArgument("give the companies: input_path, input_csv or research", field="input")

    async def _options(self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext) -> ResearchOptions:
        o = request.research_options
        violations: list[tuple[str, str]] = []
        if o.HasField("min_score") and not 0.0 <= o.min_score <= 1.0:
            violations.append(("research_options.min_score", "must be within 0..1"))
        if o.context_char_budget < 0:
            violations.append(("research_options.context_char_budget", "must be ≥ 0 (0 = default)"))
        if o.search_depth and o.search_depth not in ("basic", "advanced", "fast", "ultra-fast"):
            violations.append(("research_options.search_depth", "basic, advanced, fast or ultra-fast"))
        if violations:
            raise InvalidArgument("invalid research options: " + "; ".join(f"{f} {d}" for f, d in violations),
                                  violations=violations)
        model = o.model.strip() or self._settings.research_model
        if o.model.strip():
            # An unknown model is the caller's mistake: say so now rather than fail the run later.
            try:
                await self._orch.clients.inference.Route(
                    inference_pb2.RouteRequest(model=model), timeout=forward_timeout(context, 5.0)
                )
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgument(e.details() or "unknown model", field="research_options.model") from None
                # Inference unreachable now: the run will report it when it starts.
        return ResearchOptions(
            model=model,
            search_depth=o.search_depth,
            min_score=o.min_score if o.HasField("min_score") else None,
            context_char_budget=o.context_char_budget,
            no_cache=request.no_cache,
        )

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        return await self._run(request.run_id)

    async def WatchRun(self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        run_id = request.run_id
        await self._orch.get(run_id)  # NOT_FOUND before the stream starts
        after = max(0, request.after_sequence)
        stalled_since: float | None = None
        while True:
            events = await self._store.events_after(run_id, after, WATCH_BATCH)
            snapshot: pb.Run | None = None
            for n, ev in enumerate(events):
                msg = pb.RunEvent(
                    sequence=ev.seq, type=_EVENT_TYPES.get(ev.type, pb.RunEvent.TYPE_UNSPECIFIED), run_id=run_id,
                    item_id=ev.item_id or "", item_key=ev.item_key or "", message=ev.message,
                )
                msg.time.CopyFrom(ts(ev.created_at))
                # The run (counts, cost so far) rides on run-level events and on the last event of each batch.
                if ev.type in _WITH_RUN or n == len(events) - 1:
                    snapshot = snapshot or await self._run(run_id)
                    msg.run.CopyFrom(snapshot)
                yield msg
                after = ev.seq
            if len(events) == WATCH_BATCH:
                continue
            run = await self._orch.get(run_id)
            if run.status in TERMINAL_RUN_STATUSES and not self._orch.is_active(run_id):
                if not await self._store.events_after(run_id, after, 1):
                    return
                continue
            if self._stalled(run):
                # Nobody executes it (a crashed CLI or worker, no worker to take it over): the reaper's "interrupted"
                # event has been sent; end rather than wait forever. Resume, or watch again from `after`.
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since >= self._stall_grace() and not await self._store.events_after(
                    run_id, after, 1
                ):
                    return
            else:
                stalled_since = None
            await self._orch.wait_for_change(self._settings.watch_poll_seconds)

    def _stalled(self, run: RunRow) -> bool:
        """Running (or pending, not queued for workers) but nobody renewed its heartbeat for two leases."""
        if self._orch.is_active(run.id) or run.status not in ("running", "pending") or run.detached:
            return False
        age = run.heartbeat_age()
        return age is None or age > 2 * self._settings.lease_seconds

    def _stall_grace(self) -> float:
        """How long a run must stay stalled before WatchRun ends: a worker polling for work takes it over within
        a couple of its polls."""
        return max(2.0, 3 * self._settings.worker_poll_seconds)

    async def CancelRun(self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        await self._orch.cancel(request.run_id)
        return await self._run(request.run_id)

    async def ResumeRun(self, request: pb.ResumeRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        run, todo = await self._orch.prepare_resume(request.run_id)
        return await self._continue(run.id, todo, detach=request.detach)

    async def RetryFailed(self, request: pb.RetryFailedRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        run, todo = await self._orch.prepare_retry(request.run_id)
        return await self._continue(run.id, todo, detach=request.detach)

    async def _continue(self, run_id: str, todo: int, *, detach: bool) -> pb.Run:
        if todo == 0:
            await self._orch.finalize(run_id)  # nothing to do: a no-op for a completed run
        elif detach:
            await self._store.enqueue_run(run_id)
        else:
            await self._spawn(run_id)
        return await self._run(run_id)

    async def ListRuns(self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext) -> pb.ListRunsResponse:
        size = _page_size(request.page_size)
        offset = _untoken(request.page_token)
        status = None
        if request.status != pb.Run.STATUS_UNSPECIFIED:
            status = pb.Run.Status.Name(request.status).lower()
            if status not in RUN_STATUSES:
                raise InvalidArgument(f"unknown status {request.status}", field="status")
        runs = await self._store.list_runs(limit=size + 1, offset=offset, status=status)
        out = pb.ListRunsResponse()
        for r in runs[:size]:
            out.runs.append(run_to_proto(RunSummary(r, await self._store.run_totals(r.id))))
        if len(runs) > size:
            out.next_page_token = _token(offset + size)
        return out

    async def ListRunItems(
        self, request: pb.ListRunItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunItemsResponse:
        run = await self._orch.get(request.run_id)
        size = _page_size(request.page_size)
        after = _untoken(request.page_token)
        items = await self._store.page_items(request.run_id, after_seq=after, limit=size + 1)
        out = pb.ListRunItemsResponse(items=[item_to_proto(it) for it in items[:size]])
        if run.kind == "org_eval":  # each item's question run and its evaluation
            from services.orchestrator.visibility_report import attach_question_runs

            await attach_question_runs(self._store, request.run_id, after, out.items)
        if len(items) > size:
            out.next_page_token = _token(items[size - 1].seq)
        return out


@contextlib.asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[list[Mount]]:
    """Open the database (schema checked; an empty one is created), the channels, the Orchestrator and the
    TaskGroup of background runs; yield the servicer; on exit stop every run (resumable) and close everything."""
    store = await open_store(settings.database_url)
    channels = Channels(settings)
    orch = Orchestrator(store, Clients(channels, settings), settings)
    error: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            reaper = tg.create_task(_reaper(store, settings), name="orchestrator-reaper")
            try:
                yield [Mount(OrchestratorServicer(orch, settings, tg), pb_grpc.add_OrchestratorServiceServicer_to_server,
                             SERVICE_NAME)]
            except BaseException as e:
                # Re-raised below, outside the TaskGroup, so that the caller sees its own exception and not an
                # ExceptionGroup wrapping it.
                error = e
            finally:
                reaper.cancel()
                await orch.stop_all()
    finally:
        await channels.close()
        await store.close()
    if error is not None:
        raise error


async def _reaper(store: Store, settings: Settings) -> None:
    """Every third of the lease: expired item leases back to pending, abandoned runs flagged (:meth:`Store.reap`).
    Never raises (a child of the server's TaskGroup)."""
    while True:
        await asyncio.sleep(max(0.05, settings.lease_seconds / 3))
        try:
            rep = await store.reap(stale_seconds=settings.lease_seconds)
        except Exception as e:
            log.warning("reap_failed", error=f"{type(e).__name__}: {e}"[:300])
            continue
        if rep.expired or rep.interrupted:
            log.info("reaped", expired=rep.expired, abandoned_calls=rep.abandoned_calls, interrupted=rep.interrupted)


__all__ = ["SERVICE_NAME", "OrchestratorServicer", "build", "item_to_proto", "run_to_proto"]
