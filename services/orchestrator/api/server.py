"""gRPC face of the orchestrator (``vantage.orchestrator.v1.OrchestratorService``) and its builder.

:func:`build` owns the database engine, the channels to the other services, one :class:`Orchestrator` (shared
budgets) and a ``TaskGroup`` in which started runs execute in the background. On shutdown every run is stopped
cooperatively: in-flight items go back to pending and the run stays resumable (ResumeRun, or ``vantage resume``).

Runs started with ``detach`` (StartRun, ResumeRun, RetryFailed) are queued for ``vantage worker`` processes instead
of executing here; WatchRun follows a run wherever it executes (it polls ``run_events``), and ends when the run
ends — or when it has been interrupted (no process renewed its heartbeat for two leases) and nobody took it over.
CancelRun reaches a run executing in another process through ``runs.cancel_requested``. The server also runs the
lease reaper (:meth:`Store.reap`) every third of the lease.

Handlers validate, delegate to :class:`~services.orchestrator.app.runs.Orchestrator` / the store, and translate rows
to protobuf. Errors: NOT_FOUND for unknown run ids, FAILED_PRECONDITION for invalid transitions (cancel a finished
run, resume a run that is running here, or one whose input load was interrupted), INVALID_ARGUMENT with a
BadRequest field for bad input — every field has a bound (the proto comments, README "Request limits"), every enum
is checked —, PERMISSION_DENIED for an ``input_path`` the server may not read. ORG_EVAL runs (AI visibility) are
created by :func:`services.orchestrator.app.jobs.evaluation.start_request` and execute like research runs.

Inputs come from the request itself (``input_csv``, ``research``, ``org_eval``, ``questions_text``) or from an
``UploadInput`` client stream (held in memory, bounded, until the StartRun that names its ``upload_id``); a path is
read only under the operator's ``VANTAGE_INPUT_DIR`` (:func:`services.orchestrator.app.inputs.server_input_path`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import structlog
from google.protobuf import timestamp_pb2

from services.orchestrator.app.inputs import (
    CompanyCsv,
    at_most,
    clip,
    content_text,
    read_server_input,
    rows_from_pairs,
)
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.reaper import reap_forever
from services.orchestrator.app.runs import Orchestrator, RunSummary
from services.orchestrator.clients import Clients
from services.orchestrator.domain import InputRow
from services.orchestrator.store import ItemView, RunRow, open_store
from services.orchestrator.store.models import RUN_STATUSES, TERMINAL_RUN_STATUSES
from shared.config import OrchestratorSettings
from shared.errors import InvalidArgument, ResourceExhausted
from shared.grpc_client import Channels, forward_timeout
from shared.grpc_server import Mount, decoded_requests
from vantage.common.v1 import common_pb2
from vantage.inference.v1 import inference_pb2
from vantage.orchestrator.v1 import orchestrator_pb2 as pb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
log = structlog.get_logger("vantage.orchestrator")

DEFAULT_PAGE, MAX_PAGE = 50, 1000
#: Fixed bounds of request fields (the settable ones are VANTAGE_MAX_* settings): a page token this service issues
#: is ~12 characters; a model name (the inference service's bound); Tavily context budget; an upload's file name.
MAX_TOKEN_CHARS = 64
MAX_MODEL_CHARS = 200
MAX_CONTEXT_CHARS = 1_000_000
MAX_FILENAME_CHARS = 255
MAX_UPLOAD_ID_CHARS = 64
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
        input_incomplete=not r.input_complete,
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
    if not 0 <= size <= MAX_PAGE:
        raise InvalidArgument(f"page_size must be within 0..{MAX_PAGE} (0 = {DEFAULT_PAGE}), got {size}",
                              field="page_size")
    return size or DEFAULT_PAGE


def check_run_id(run_id: str, field: str = "run_id") -> str:
    """``run_id`` if it is a run id (a UUID, 36 characters); INVALID_ARGUMENT naming ``field`` otherwise."""
    ok = len(run_id) == 36
    if ok:
        try:
            uuid.UUID(run_id)
        except ValueError:
            ok = False
    if not ok:
        raise InvalidArgument(f"{field} must be a run id (a UUID of 36 characters), got {clip(run_id, 40)!r}",
                              field=field)
    return run_id


def _check_token(token: str, field: str = "page_token") -> str:
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument(f"{field} is at most {MAX_TOKEN_CHARS} characters (a next_page_token of this RPC)",
                              field=field)
    return token


@dataclass
class _Upload:
    data: bytes
    filename: str
    expires: float  # time.monotonic()


class Uploads:
    """UploadInput payloads waiting for the StartRun that consumes them: in memory, ``ttl`` seconds each, at most
    ``capacity`` bytes in all (RESOURCE_EXHAUSTED beyond). Ids are random (``secrets.token_urlsafe``): an upload
    can only be used by whoever received its id."""

    def __init__(self, *, ttl: float, capacity: int) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._items: dict[str, _Upload] = {}

    def _purge(self) -> None:
        now = time.monotonic()
        for k in [k for k, u in self._items.items() if u.expires <= now]:
            del self._items[k]

    def held(self) -> int:
        self._purge()
        return sum(len(u.data) for u in self._items.values())

    def put(self, data: bytes, filename: str) -> tuple[str, float]:
        if self.held() + len(data) > self.capacity:
            raise ResourceExhausted(f"uploads waiting for StartRun already hold {self.capacity} bytes; start the "
                                    "runs of earlier uploads, or retry later", retry_after=self.ttl)
        upload_id = "up_" + secrets.token_urlsafe(18)
        self._items[upload_id] = _Upload(data, filename, time.monotonic() + self.ttl)
        return upload_id, self.ttl

    def take(self, upload_id: str, field: str = "upload_id") -> _Upload:
        self._purge()
        if not upload_id or len(upload_id) > MAX_UPLOAD_ID_CHARS:
            raise InvalidArgument(f"{field} must be an id UploadInput answered (≤ {MAX_UPLOAD_ID_CHARS} characters)",
                                  field=field)
        up = self._items.pop(upload_id, None)
        if up is None:
            raise InvalidArgument(f"{field}: no such upload on this server (expired after the upload TTL, used "
                                  "already, or uploaded to another orchestrator process)", field=field)
        return up


# --- servicer ---------------------------------------------------------------------------------------------------


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    """Thin servicer over an :class:`Orchestrator`; background runs are tasks of ``tg``."""

    def __init__(self, orch: Orchestrator, settings: OrchestratorSettings, tg: asyncio.TaskGroup) -> None:
        self._orch = orch
        self._settings = settings
        self._tg = tg
        self._store = orch.store
        # Twice the largest input: one upload may wait while another streams in.
        self._uploads = Uploads(ttl=settings.upload_ttl_seconds, capacity=2 * settings.max_input_bytes)

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
        s = self._settings
        if len(request.name) > s.max_name_chars:
            raise InvalidArgument(f"name: at most {s.max_name_chars} characters (VANTAGE_MAX_NAME_CHARS), got "
                                  f"{len(request.name)}", field="name")
        if request.kind == pb.ORG_EVAL:
            return await self._start_org_eval(request, context)
        if request.kind != pb.RESEARCH:
            raise InvalidArgument(f"kind must be RESEARCH or ORG_EVAL, got {request.kind}", field="kind")
        which = request.WhichOneof("input")
        if which == "research" and len(request.research.companies) > s.max_run_items:
            raise InvalidArgument(f"research.companies: at most {s.max_run_items} companies per run "
                                  f"(VANTAGE_MAX_RUN_ITEMS), got {len(request.research.companies)}",
                                  field="research.companies")
        opts = await self._options(request, context)
        name = request.name.strip()
        # Only under VANTAGE_INPUT_DIR (PERMISSION_DENIED otherwise); an error never quotes the file. Read in a
        # worker thread: the event loop does not wait for the filesystem.
        server_file = (await read_server_input(request.input_path, s.input_dir, max_bytes=s.max_input_bytes)
                       if which == "input_path" else None)
        with self._rows(request, which, server_file) as (rows, input_path, label):
            run, _report = await create_research_run(self._orch,
                at_most(rows, s.max_run_items), name=name or label, options=opts,
                input_path=input_path,
            )
        if request.detach:
            await self._store.enqueue_run(run.id)
        else:
            await self._spawn(run.id)
        return await self._run(run.id)

    async def _start_org_eval(self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        """StartRun of kind ORG_EVAL: inline ``org_eval``, or ``input_path`` + ``org_eval_options``
        (:func:`services.orchestrator.app.jobs.evaluation.start_request`); executed here unless ``detach``."""
        from services.orchestrator.app.jobs.evaluation import start_request

        upload_text = None
        if request.WhichOneof("input") == "upload_id":
            up = self._uploads.take(request.upload_id)
            upload_text = content_text(up.data, max_bytes=self._settings.max_input_bytes, field="upload_id")
        run = await start_request(self._orch, request, rpc_timeout=forward_timeout(context, 5.0),
                                  upload_text=upload_text)
        if request.detach:
            await self._store.enqueue_run(run.id)
        else:
            await self._spawn(run.id)
        return await self._run(run.id)

    @contextlib.contextmanager
    def _rows(self, request: pb.StartRunRequest, which: str | None, server_file: tuple[Path, str] | None
              ) -> Iterator[tuple[Iterator[InputRow], str | None, str]]:
        """(rows, input_path to record, default run name) of a RESEARCH StartRun; ``server_file`` is the
        ``input_path`` file as :func:`~services.orchestrator.app.inputs.read_server_input` read it."""
        s = self._settings
        limit = s.max_name_chars
        if which == "input_path":
            assert server_file is not None
            path, text = server_file
            csv_in = CompanyCsv.from_text(text, "input_path", echo=False, field="input_path", max_name_chars=limit)
            yield csv_in.rows(), str(path), path.name
        elif which == "input_csv":
            text = content_text(request.input_csv, max_bytes=s.max_input_bytes, field="input_csv")
            yield CompanyCsv.from_text(text, "input_csv", max_name_chars=limit).rows(), None, "inline"
        elif which == "upload_id":
            up = self._uploads.take(request.upload_id)
            text = content_text(up.data, max_bytes=s.max_input_bytes, field="upload_id")
            csv_in = CompanyCsv.from_text(text, up.filename or "upload", field="upload_id", max_name_chars=limit)
            yield csv_in.rows(), None, up.filename or "upload"
        elif which == "research":
            if not request.research.companies:
                raise InvalidArgument("research.companies is empty", field="research.companies")
            yield rows_from_pairs(((c.company, c.domain) for c in request.research.companies),
                                  max_name_chars=limit), None, "inline"
        elif which in ("org_eval", "questions_text"):
            raise InvalidArgument(f"{which} input needs kind ORG_EVAL", field=which)
        else:
            raise InvalidArgument("give the companies: input_csv, research, upload_id (UploadInput), or input_path "
                                  "(a file under VANTAGE_INPUT_DIR)", field="input")

    async def UploadInput(self, request_iterator: AsyncIterator[pb.UploadInputRequest],
                          context: grpc.aio.ServicerContext) -> pb.UploadInputResponse:
        """Receive a run input in chunks (≤ ``max_input_bytes`` in all) and hold it for one StartRun."""
        limit = self._settings.max_input_bytes
        chunks: list[bytes] = []
        size = 0
        filename = ""
        first = True
        async for chunk in decoded_requests(request_iterator):
            if first:
                if len(chunk.filename) > MAX_FILENAME_CHARS:
                    raise InvalidArgument(f"filename: at most {MAX_FILENAME_CHARS} characters", field="filename")
                filename = Path(chunk.filename).name if chunk.filename else ""
                first = False
            size += len(chunk.data)
            if size > limit:
                raise InvalidArgument(f"data: an upload is at most {limit} bytes (VANTAGE_MAX_INPUT_BYTES)",
                                      field="data")
            chunks.append(chunk.data)
        data = b"".join(chunks)
        upload_id, ttl = self._uploads.put(data, filename)
        out = pb.UploadInputResponse(upload_id=upload_id, size_bytes=len(data),
                                     sha256=hashlib.sha256(data).hexdigest())
        out.expires_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=ttl))
        return out

    async def _options(self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext) -> ResearchOptions:
        o = request.research_options
        violations: list[tuple[str, str]] = []
        if o.HasField("min_score") and not 0.0 <= o.min_score <= 1.0:
            violations.append(("research_options.min_score", "must be within 0..1"))
        if not 0 <= o.context_char_budget <= MAX_CONTEXT_CHARS:
            violations.append(("research_options.context_char_budget",
                               f"must be within 0..{MAX_CONTEXT_CHARS} (0 = default)"))
        if o.search_depth and o.search_depth not in ("basic", "advanced", "fast", "ultra-fast"):
            violations.append(("research_options.search_depth", "basic, advanced, fast or ultra-fast"))
        if len(o.model) > MAX_MODEL_CHARS:
            violations.append(("research_options.model", f"at most {MAX_MODEL_CHARS} characters"))
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
        return await self._run(check_run_id(request.run_id))

    async def WatchRun(self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunEvent]:
        run_id = check_run_id(request.run_id)
        if request.after_sequence < 0:
            raise InvalidArgument(f"after_sequence must be ≥ 0, got {request.after_sequence}", field="after_sequence")
        await self._orch.get(run_id)  # NOT_FOUND before the stream starts
        after = request.after_sequence
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
        await self._orch.cancel(check_run_id(request.run_id))
        return await self._run(request.run_id)

    async def ResumeRun(self, request: pb.ResumeRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        run, todo = await self._orch.prepare_resume(check_run_id(request.run_id))
        return await self._continue(run.id, todo, detach=request.detach)

    async def RetryFailed(self, request: pb.RetryFailedRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        run, todo = await self._orch.prepare_retry(check_run_id(request.run_id))
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
        offset = _untoken(_check_token(request.page_token))
        status = None
        if request.status != pb.Run.STATUS_UNSPECIFIED:
            # An open enum: any int32 decodes; only the declared values mean something.
            names = {v: n.lower() for n, v in pb.Run.Status.items() if n.lower() in RUN_STATUSES}
            status = names.get(request.status)
            if status is None:
                raise InvalidArgument(f"status must be one of {', '.join(n.upper() for n in names.values())} (or "
                                      f"STATUS_UNSPECIFIED = any), got {request.status}", field="status")
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
        run = await self._orch.get(check_run_id(request.run_id))
        size = _page_size(request.page_size)
        after = _untoken(_check_token(request.page_token))
        items = await self._store.page_items(request.run_id, after_seq=after, limit=size + 1)
        out = pb.ListRunItemsResponse(items=[item_to_proto(it) for it in items[:size]])
        if run.kind == "org_eval":  # each item's question run and its evaluation
            from services.orchestrator.reports.visibility import attach_question_runs

            await attach_question_runs(self._store, request.run_id, after, out.items)
        if len(items) > size:
            out.next_page_token = _token(items[size - 1].seq)
        return out

    async def DiffRuns(self, request: pb.DiffRunsRequest, context: grpc.aio.ServicerContext) -> pb.DiffRunsResponse:
        """Validate, :func:`services.orchestrator.app.diff.diff_runs`, translate (see the proto for the bounds)."""
        from services.orchestrator.app.diff import diff_runs, proto_fields
        from services.orchestrator.app.measurement import DEFAULT_RESAMPLES

        run_a, run_b = check_run_id(request.run_a, "run_a"), check_run_id(request.run_b, "run_b")
        if request.resamples < 0:
            raise InvalidArgument(f"resamples must be in 0..10,000, got {request.resamples}", field="resamples")
        d = await diff_runs(self._store, run_a, run_b, seed=request.seed,
                            resamples=request.resamples or DEFAULT_RESAMPLES)
        return pb.DiffRunsResponse(**proto_fields(d))


@contextlib.asynccontextmanager
async def build(settings: OrchestratorSettings) -> AsyncIterator[list[Mount]]:
    """Open the database (schema checked; an empty one is created), the channels, the Orchestrator and the
    TaskGroup of background runs and the reaper (:func:`~services.orchestrator.app.reaper.reap_forever`); yield the
    servicer; on exit stop every run (resumable) and close everything. Whatever was opened before a failure part-way
    is closed (an ``AsyncExitStack``); the caller sees its own exception, never an ExceptionGroup wrapping it."""
    error: BaseException | None = None
    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(settings.database_url)
        stack.push_async_callback(store.close)
        channels = Channels(settings)
        stack.push_async_callback(channels.close)
        orch = Orchestrator(store, Clients(channels, settings), settings)
        async with asyncio.TaskGroup() as tg:
            reaper = tg.create_task(reap_forever(store, settings.lease_seconds), name="orchestrator-reaper")
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
    if error is not None:
        raise error


__all__ = ["SERVICE_NAME", "OrchestratorServicer", "build", "item_to_proto", "run_to_proto"]
