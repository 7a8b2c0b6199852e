"""The synchronous client (``grpc`` channels), for scripts, notebooks and cron jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from vantage_client import _core
from vantage_client._core import Connection, Deadlines
from vantage_client._pb.vantage.extraction.v1 import extraction_pb2_grpc as xpb_grpc
from vantage_client._pb.vantage.inference.v1 import inference_pb2 as ipb
from vantage_client._pb.vantage.inference.v1 import inference_pb2_grpc as ipb_grpc
from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2 as opb
from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from vantage_client._pb.vantage.search.v1 import search_pb2_grpc as spb_grpc
from vantage_client.errors import DeadlineExceeded, Unavailable, from_rpc_error
from vantage_client.types import (
    Completion,
    Extraction,
    Report,
    Route,
    Run,
    RunDiff,
    RunEvent,
    RunItem,
    RunStatus,
    SearchResponse,
)

SERVICES = ("orchestrator", "search", "inference", "extraction")
_STUBS: dict[str, Any] = {
    "orchestrator": opb_grpc.OrchestratorServiceStub,
    "search": spb_grpc.SearchServiceStub,
    "inference": ipb_grpc.InferenceServiceStub,
    "extraction": xpb_grpc.ExtractionServiceStub,
}


def reconnect_delay(failures: int, retry_after: float | None) -> float:
    """Seconds before re-opening a watch stream after ``failures`` consecutive disconnects: the server's RetryInfo
    delay when it sent one, else 0.05 s doubling up to 2 s."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), 30.0)
    return min(0.05 * 2 ** (failures - 1), 2.0)


def status_value(status: RunStatus | str | None) -> int:
    if status is None:
        return 0
    try:
        return opb.Run.Status.Value(str(status).upper())
    except ValueError:
        raise ValueError(f"status: one of {', '.join(s.value for s in RunStatus)}, got {status!r:.40}") from None


class _Base:
    """Targets, security options and deadlines common to both clients (see :class:`VantageClient`)."""

    def __init__(
        self,
        target: str | Connection | None = None,
        *,
        search_target: str | Connection | None = None,
        inference_target: str | Connection | None = None,
        extraction_target: str | Connection | None = None,
        tls: bool = False,
        ca_cert: bytes | str | Path | None = None,
        client_cert: bytes | str | Path | None = None,
        client_key: bytes | str | Path | None = None,
        server_name: str | None = None,
        token: str | None = None,
        deadlines: Deadlines | None = None,
        max_attempts: int = 4,
        reconnect_attempts: int = 8,
        channels: Mapping[str, Any] | None = None,
    ) -> None:
        # Security options given here apply to every target given as a string; a Connection carries its own.
        opts: dict[str, Any] = {"tls": tls, "ca_cert": ca_cert, "client_cert": client_cert, "client_key": client_key,
                                "server_name": server_name, "token": token, "max_attempts": max_attempts}

        def conn(value: str | Connection | None) -> Connection | None:
            if value is None or isinstance(value, Connection):
                return value
            return Connection(value, **opts)

        self._conns: dict[str, Connection | None] = {
            "orchestrator": conn(target), "search": conn(search_target), "inference": conn(inference_target),
            "extraction": conn(extraction_target),
        }
        self._given = dict(channels or {})
        unknown = set(self._given) - set(SERVICES)
        if unknown:
            raise ValueError(f"channels: unknown service {sorted(unknown)}; known: {', '.join(SERVICES)}")
        self.deadlines = deadlines or Deadlines()
        self._reconnect_attempts = reconnect_attempts
        self._owned: dict[str, Any] = {}
        self._stubs: dict[str, Any] = {}
        self._closed = False

    def _metadata(self, service: str) -> tuple[tuple[str, str], ...] | None:
        c = self._conns.get(service)
        return (c.metadata() or None) if c is not None else None

    def _connection(self, service: str) -> Connection:
        c = self._conns[service]
        if c is None:
            raise ValueError(f"no {service} target: pass {service}_target= (or target= for the orchestrator)")
        return c

    def _stub(self, service: str) -> Any:
        if self._closed:
            raise ValueError("the client is closed")
        stub = self._stubs.get(service)
        if stub is None:
            ch = self._given.get(service)
            if ch is None:
                conn = self._connection(service)
                # One channel per distinct target: services behind one address share it.
                ch = next((self._owned[k] for k, c in self._conns.items()
                           if k in self._owned and c == conn), None) or self._open(conn)
                self._owned[service] = ch
            stub = self._stubs[service] = _STUBS[service](ch)
        return stub

    def _open(self, conn: Connection) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


class VantageClient(_Base):
    """A synchronous client of the Vantage services.

    ``target`` is the orchestrator's gRPC target (``dns:///host:port``, ``host:port``, ``ipv4:…``); ``search_target``,
    ``inference_target`` and ``extraction_target`` those of the services behind the thin per-service calls (a string
    gets the security options given here; a :class:`~vantage_client.Connection` sets its own). Security:
    ``tls`` / ``ca_cert`` / ``client_cert`` + ``client_key`` (mTLS) / ``server_name``, and ``token`` (sent as
    ``authorization: Bearer <token>``, what the services' ``VANTAGE_AUTH_TOKEN`` requires). Each call gets its
    default deadline from ``deadlines`` (:class:`~vantage_client.Deadlines`, seconds) unless given ``timeout=``.
    The channel retries the idempotent RPCs on UNAVAILABLE (its service config, :func:`vantage_client.service_config`)
    and balances ``round_robin`` over the addresses the target resolves to. ``channels`` injects ready channels per
    service (``{"orchestrator": ch}``; tests use ``grpc_testing``), which :meth:`close` leaves open.

    Every method raises :class:`~vantage_client.VantageError` subclasses for failed calls (never ``grpc.RpcError``)
    and ``ValueError`` / ``TypeError`` for arguments refused before calling.

    Use as a context manager, or call :meth:`close`::

        with VantageClient("localhost:50050") as client:
            run = client.wait(client.research(companies=[("Anthropic", "anthropic.com")]).run_id)
    """

    def _open(self, conn: Connection) -> grpc.Channel:
        creds = conn.credentials()
        if creds is not None:
            return grpc.secure_channel(conn.target, creds, options=conn.options())
        return grpc.insecure_channel(conn.target, options=conn.options())

    def __enter__(self) -> VantageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channels this client opened (idempotent)."""
        self._closed = True
        for ch in {id(c): c for c in self._owned.values()}.values():
            ch.close()
        self._owned.clear()
        self._stubs.clear()

    def _call(self, service: str, method: str, request: Any, timeout: float | None) -> Any:
        fn = getattr(self._stub(service), method)
        try:
            return fn(request, timeout=timeout, metadata=self._metadata(service))
        except grpc.RpcError as e:
            raise from_rpc_error(e, method) from None

    # --- runs ---------------------------------------------------------------------------------------------------

    def _start(self, req: opb.StartRunRequest, upload: bytes | None, filename: str, timeout: float | None) -> Run:
        if upload is not None:
            up = self._call("orchestrator", "UploadInput", iter(_core.upload_chunks(upload, filename)),
                            self.deadlines.upload)
            req.upload_id = up.upload_id
        return Run.from_pb(self._call("orchestrator", "StartRun", req, timeout or self.deadlines.start))

    def research(
        self,
        companies: Iterable[tuple[str, str]] | None = None,
        *,
        csv_text: str | None = None,
        name: str = "",
        model: str = "",
        search_depth: str = "",
        min_score: float | None = None,
        context_char_budget: int = 0,
        no_cache: bool = False,
        detach: bool = False,
        timeout: float | None = None,
    ) -> Run:
        """Start a territory-research run of ``companies`` — ``(name, domain)`` pairs, the domain may be "" — or of
        ``csv_text`` (a CSV with a ``company`` column and optionally ``domain``; above 1 MiB it is streamed with
        ``UploadInput`` first). Options as ``vantage.orchestrator.v1.ResearchOptions`` (``model`` "" = the server's
        default, ``search_depth`` "" / basic / advanced / fast / ultra-fast, ``min_score`` 0..1). The run executes in
        the orchestrator process, or on its workers with ``detach``. Returns the run as created (RUNNING or PENDING);
        follow it with :meth:`wait`. Raises :class:`~vantage_client.InvalidArgument` naming the field of bad input."""
        req, upload = _core.research_request(
            companies, csv_text, name=name, model=model, search_depth=search_depth, min_score=min_score,
            context_char_budget=context_char_budget, no_cache=no_cache, detach=detach)
        return self._start(req, upload, name or "companies.csv", timeout)

    def evaluate(
        self,
        org: str,
        questions: Sequence[str] | str,
        models: Sequence[str],
        locations: Sequence[str] = (),
        *,
        samples: int = 0,
        org_domain: str = "",
        known_competitors: Sequence[str] = (),
        name_variations: Sequence[str] = (),
        name: str = "",
        no_cache: bool = False,
        detach: bool = False,
        reuse_answers: str = "",
        timeout: float | None = None,
    ) -> Run:
        """Start an AI-visibility evaluation of ``org`` (a sweep): every question × model × location (ISO 3166-1
        alpha-2 codes; none = no location), each asked ``samples`` times. ``questions`` is a list, or a questions
        file's text (one per line, ``#`` starts a comment; above 1 MiB streamed with ``UploadInput``). Bounds as
        ``OrgEvalInput`` in the proto.

        ``samples`` (answers per question × model × location, each its own question run): 0 = the server's
        default (3), else 1-20 (``ValueError`` before calling otherwise). ``reuse_answers``: the run id of an earlier
        evaluation whose answers (same question, model, location and sample) are copied in and only read again
        (:class:`~vantage_client.NotFound` / :class:`~vantage_client.InvalidArgument` naming ``reuse_answers`` when
        it is not one). Returns the run as created; follow it with :meth:`wait`."""
        req, upload = _core.evaluate_request(
            org, questions, models, locations, samples=samples, org_domain=org_domain,
            known_competitors=known_competitors, name_variations=name_variations, name=name, no_cache=no_cache,
            detach=detach, reuse_answers=reuse_answers)
        return self._start(req, upload, name or "questions.txt", timeout)

    def get_run(self, run_id: str, *, timeout: float | None = None) -> Run:
        """The run now. :class:`~vantage_client.NotFound` for an unknown id."""
        return Run.from_pb(self._call("orchestrator", "GetRun", opb.GetRunRequest(run_id=run_id),
                                      timeout or self.deadlines.read))

    def watch(self, run_id: str, *, after_sequence: int = 0, timeout: float | None = None) -> Iterator[RunEvent]:
        """The run's events after ``after_sequence`` until it ends (one ``WatchRun`` stream, not resumed; see
        :meth:`wait`)."""
        stream = self._stub("orchestrator").WatchRun(
            opb.WatchRunRequest(run_id=run_id, after_sequence=after_sequence), timeout=timeout,
            metadata=self._metadata("orchestrator"))
        try:
            for ev in stream:
                yield RunEvent.from_pb(ev)
        except grpc.RpcError as e:
            raise from_rpc_error(e, "WatchRun") from None
        finally:
            stream.cancel()

    def wait(self, run_id: str, on_progress: Callable[[RunEvent], object] | None = None, *,
             after_sequence: int = 0, timeout: float | None = None) -> Run:
        """Follow the run over ``WatchRun`` until it ends and return it (COMPLETED, CANCELLED or FAILED), calling
        ``on_progress(event)`` for each event. A dropped stream (UNAVAILABLE, or a stream that ends before the run
        does) is re-opened from the last sequence seen, so no event is delivered twice; after
        ``reconnect_attempts`` consecutive failures without an event the last error is raised. ``timeout``
        (seconds, None = no limit) bounds the whole wait: :class:`~vantage_client.DeadlineExceeded` after it."""
        end = None if timeout is None else time.monotonic() + timeout
        last, failures = after_sequence, 0
        while True:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"run {run_id} still running after {timeout} s", method="WatchRun")
            try:
                for ev in self.watch(run_id, after_sequence=last, timeout=remaining):
                    last, failures = max(last, ev.sequence), 0
                    if on_progress is not None:
                        on_progress(ev)
                    if ev.ends_run:
                        return ev.run if ev.run is not None and ev.run.finished else self.get_run(run_id)
                run = self.get_run(run_id)
                if run.finished:
                    return run
                failures += 1
                err: Unavailable = Unavailable(f"WatchRun of {run_id} ended before the run", method="WatchRun")
            except Unavailable as e:
                failures += 1
                err = e
            if failures > self._reconnect_attempts:
                raise err
            time.sleep(reconnect_delay(failures, err.retry_after))

    def list_run_pages(self, *, status: RunStatus | str | None = None, page_size: int = 100,
                       timeout: float | None = None) -> Iterator[list[Run]]:
        """``ListRuns`` page by page (newest first), each page fetched when the previous one is consumed."""
        token = ""
        while True:
            resp = self._call("orchestrator", "ListRuns", opb.ListRunsRequest(
                page_size=page_size, page_token=token, status=status_value(status)), timeout or self.deadlines.read)
            yield [Run.from_pb(r) for r in resp.runs]
            token = resp.next_page_token
            if not token:
                return

    def list_runs(self, *, status: RunStatus | str | None = None, page_size: int = 100,
                  timeout: float | None = None) -> Iterator[Run]:
        """Every run (optionally of one ``status``), fetched lazily page by page (:meth:`list_run_pages`)."""
        for page in self.list_run_pages(status=status, page_size=page_size, timeout=timeout):
            yield from page

    def list_items(self, run_id: str, *, page_size: int = 500, timeout: float | None = None) -> Iterator[RunItem]:
        """The run's items with their results, fetched lazily page by page (``ListRunItems``)."""
        token = ""
        while True:
            resp = self._call("orchestrator", "ListRunItems", opb.ListRunItemsRequest(
                run_id=run_id, page_size=page_size, page_token=token), timeout or self.deadlines.read)
            yield from (RunItem.from_pb(i) for i in resp.items)
            token = resp.next_page_token
            if not token:
                return

    def export(self, run_id: str, format: str = "json", *, path: str | Path | None = None) -> str:
        """The run's items as ``json`` (``{"run": …, "items": […]}``), ``jsonl`` or ``csv`` (cells that a
        spreadsheet would read as a formula are escaped), built from ``GetRun`` + ``ListRunItems``; also written
        to ``path`` when given. Returns the text."""
        if format not in _core.EXPORT_FORMATS:
            raise ValueError(f"format: one of {', '.join(_core.EXPORT_FORMATS)}, got {format!r:.40}")
        text = _core.render_export(self.get_run(run_id), self.list_items(run_id), format)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def report(self, run_id: str) -> Report:
        """The run's :class:`~vantage_client.Report` (tiers of a research run; visibility of an evaluation)."""
        return _core.build_report(self.get_run(run_id), self.list_items(run_id))

    def cancel(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Cancel a run; :class:`~vantage_client.FailedPrecondition` when it has already ended."""
        return Run.from_pb(self._call("orchestrator", "CancelRun", opb.CancelRunRequest(run_id=run_id),
                                      timeout or self.deadlines.read))

    def resume(self, run_id: str, *, detach: bool = False, timeout: float | None = None) -> Run:
        """Process the items of a run that are not done (a completed run: a no-op)."""
        return Run.from_pb(self._call("orchestrator", "ResumeRun", opb.ResumeRunRequest(run_id=run_id, detach=detach),
                                      timeout or self.deadlines.start))

    def retry_failed(self, run_id: str, *, detach: bool = False, timeout: float | None = None) -> Run:
        """Process the failed items of a run again."""
        return Run.from_pb(self._call("orchestrator", "RetryFailed", opb.RetryFailedRequest(run_id=run_id,
                                      detach=detach), timeout or self.deadlines.start))

    def diff(self, run_a: str, run_b: str, *, seed: int = 0, resamples: int = 0,
             timeout: float | None = None) -> RunDiff:
        """``OrchestratorService/DiffRuns``: run B against run A (two sweeps: per figure and cell, A, B, delta
        with its interval and a verdict; two research runs: per company tier / score change and new evidence
        URLs). ``seed``: 0..2³²−1; ``resamples``: 0..10,000 (0 = the server's default, 2,000).
        :class:`~vantage_client.NotFound` for an unknown run, :class:`~vantage_client.FailedPrecondition` for runs
        of different kinds, :class:`~vantage_client.InvalidArgument` for a bad id or bound."""
        req = opb.DiffRunsRequest(run_a=run_a, run_b=run_b, seed=seed, resamples=resamples)
        return RunDiff.from_pb(self._call("orchestrator", "DiffRuns", req, timeout or self.deadlines.read))

    # --- thin per-service calls ---------------------------------------------------------------------------------

    def search_company(self, company: str, domain: str = "", *, search_depth: str = "",
                       min_score: float | None = None, max_results: int | None = None, context_char_budget: int = 0,
                       no_cache: bool = False, include_raw_content: bool | None = None,
                       timeout: float | None = None) -> SearchResponse:
        """``SearchService/SearchCompany`` at ``search_target``: Tavily results about the company and an LLM
        context built from them (bounds as ``SearchCompanyRequest``)."""
        req = _core.search_company_request(company, domain, search_depth=search_depth, min_score=min_score,
                                           max_results=max_results, context_char_budget=context_char_budget,
                                           no_cache=no_cache, include_raw_content=include_raw_content)
        return SearchResponse.from_pb(self._call("search", "SearchCompany", req, timeout or self.deadlines.search))

    def route(self, model: str, *, timeout: float | None = None) -> Route:
        """``InferenceService/Route`` at ``inference_target``: the provider that serves ``model``."""
        return Route.from_pb(self._call("inference", "Route", ipb.RouteRequest(model=model),
                                        timeout or self.deadlines.read))

    def complete(self, model: str, prompt: str | None = None, *, messages: Sequence[tuple[str, str]] | None = None,
                 json_schema: str | Mapping[str, Any] | None = None, location: str = "", web_search: bool = False,
                 max_output_tokens: int = 0, schema_name: str = "", no_cache: bool = False,
                 idempotency_key: str = "", timeout: float | None = None) -> Completion:
        """``InferenceService/Complete`` at ``inference_target``: one completion of ``prompt`` (a user message) or
        ``messages`` (``(role, content)`` pairs), optionally constrained by ``json_schema`` (a JSON Schema, as text
        or a mapping). A paid call, so never retried by the channel; give ``idempotency_key`` to let providers
        that accept one de-duplicate your own retries."""
        req = _core.complete_request(model, prompt, messages, json_schema=json_schema, location=location,
                                     web_search=web_search, max_output_tokens=max_output_tokens,
                                     schema_name=schema_name, no_cache=no_cache, idempotency_key=idempotency_key)
        return Completion.from_pb(self._call("inference", "Complete", req, timeout or self.deadlines.complete))

    def extract(self, answer_markdown: str, org: str, *, org_domain: str = "", name_variations: Sequence[str] = (),
                known_products: Sequence[str] = (), known_competitors: Sequence[str] = (),
                citations: Sequence[str | tuple[str, str]] = (), timeout: float | None = None) -> Extraction:
        """``ExtractionService/Extract`` at ``extraction_target``: what ``answer_markdown`` says about ``org``."""
        req = _core.extract_request(answer_markdown, org, org_domain=org_domain, name_variations=name_variations,
                                    known_products=known_products, known_competitors=known_competitors,
                                    citations=citations)
        return Extraction.from_pb(self._call("extraction", "Extract", req, timeout or self.deadlines.extract))
