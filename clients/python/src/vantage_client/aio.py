"""The asynchronous client (``grpc.aio`` channels): the surface of :class:`~vantage_client.VantageClient`, with
coroutines and async iterators."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from vantage_client import _core
from vantage_client._core import Connection
from vantage_client._pb.vantage.inference.v1 import inference_pb2 as ipb
from vantage_client._pb.vantage.orchestrator.v1 import orchestrator_pb2 as opb
from vantage_client.client import _Base, reconnect_delay, status_value
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


class AsyncVantageClient(_Base):
    """The asyncio client: same constructor, options and errors as :class:`~vantage_client.VantageClient`; every
    call is a coroutine, :meth:`watch`, :meth:`list_runs`, :meth:`list_run_pages` and :meth:`list_items` are async
    iterators, and ``on_progress`` of :meth:`wait` may be a coroutine function. Channels are opened on first use
    (inside the running loop). Use ``async with``, or ``await client.close()``."""

    def _open(self, conn: Connection) -> grpc.aio.Channel:
        creds = conn.credentials()
        if creds is not None:
            return grpc.aio.secure_channel(conn.target, creds, options=conn.options())
        return grpc.aio.insecure_channel(conn.target, options=conn.options())

    async def __aenter__(self) -> AsyncVantageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channels this client opened (idempotent)."""
        self._closed = True
        for ch in {id(c): c for c in self._owned.values()}.values():
            await ch.close()
        self._owned.clear()
        self._stubs.clear()

    async def _call(self, service: str, method: str, request: Any, timeout: float | None) -> Any:
        fn = getattr(self._stub(service), method)
        try:
            return await fn(request, timeout=timeout, metadata=self._metadata(service))
        except grpc.RpcError as e:
            raise from_rpc_error(e, method) from None

    # --- runs ---------------------------------------------------------------------------------------------------

    async def _start(self, req: opb.StartRunRequest, upload: bytes | None, filename: str,
                     timeout: float | None) -> Run:
        if upload is not None:
            up = await self._call("orchestrator", "UploadInput", iter(_core.upload_chunks(upload, filename)),
                                  self.deadlines.upload)
            req.upload_id = up.upload_id
        return Run.from_pb(await self._call("orchestrator", "StartRun", req, timeout or self.deadlines.start))

    async def research(
        self, companies: Iterable[tuple[str, str]] | None = None, *, csv_text: str | None = None, name: str = "",
        model: str = "", search_depth: str = "", min_score: float | None = None, context_char_budget: int = 0,
        no_cache: bool = False, detach: bool = False, timeout: float | None = None,
    ) -> Run:
        """As :meth:`VantageClient.research`."""
        req, upload = _core.research_request(
            companies, csv_text, name=name, model=model, search_depth=search_depth, min_score=min_score,
            context_char_budget=context_char_budget, no_cache=no_cache, detach=detach)
        return await self._start(req, upload, name or "companies.csv", timeout)

    async def evaluate(
        self, org: str, questions: Sequence[str] | str, models: Sequence[str], locations: Sequence[str] = (), *,
        samples: int = 0, org_domain: str = "", known_competitors: Sequence[str] = (),
        name_variations: Sequence[str] = (), name: str = "", no_cache: bool = False, detach: bool = False,
        reuse_answers: str = "", timeout: float | None = None,
    ) -> Run:
        """As :meth:`VantageClient.evaluate` (``samples``: 0 = the server's default, 3; else 1-20)."""
        req, upload = _core.evaluate_request(
            org, questions, models, locations, samples=samples, org_domain=org_domain,
            known_competitors=known_competitors, name_variations=name_variations, name=name, no_cache=no_cache,
            detach=detach, reuse_answers=reuse_answers)
        return await self._start(req, upload, name or "questions.txt", timeout)

    async def get_run(self, run_id: str, *, timeout: float | None = None) -> Run:
        return Run.from_pb(await self._call("orchestrator", "GetRun", opb.GetRunRequest(run_id=run_id),
                                            timeout or self.deadlines.read))

    async def watch(self, run_id: str, *, after_sequence: int = 0,
                    timeout: float | None = None) -> AsyncIterator[RunEvent]:
        """As :meth:`VantageClient.watch`."""
        call = self._stub("orchestrator").WatchRun(
            opb.WatchRunRequest(run_id=run_id, after_sequence=after_sequence), timeout=timeout,
            metadata=self._metadata("orchestrator"))
        try:
            async for ev in call:
                yield RunEvent.from_pb(ev)
        except grpc.RpcError as e:
            raise from_rpc_error(e, "WatchRun") from None
        finally:
            call.cancel()

    async def wait(self, run_id: str, on_progress: Callable[[RunEvent], object] | None = None, *,
                   after_sequence: int = 0, timeout: float | None = None) -> Run:
        """As :meth:`VantageClient.wait`; ``on_progress`` may return an awaitable (it is awaited)."""
        end = None if timeout is None else time.monotonic() + timeout
        last, failures = after_sequence, 0
        while True:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"run {run_id} still running after {timeout} s", method="WatchRun")
            try:
                async for ev in self.watch(run_id, after_sequence=last, timeout=remaining):
                    last, failures = max(last, ev.sequence), 0
                    if on_progress is not None:
                        res = on_progress(ev)
                        if inspect.isawaitable(res):
                            await res
                    if ev.ends_run:
                        return ev.run if ev.run is not None and ev.run.finished else await self.get_run(run_id)
                run = await self.get_run(run_id)
                if run.finished:
                    return run
                failures += 1
                err: Unavailable = Unavailable(f"WatchRun of {run_id} ended before the run", method="WatchRun")
            except Unavailable as e:
                failures += 1
                err = e
            if failures > self._reconnect_attempts:
                raise err
            await asyncio.sleep(reconnect_delay(failures, err.retry_after))

    async def list_run_pages(self, *, status: RunStatus | str | None = None, page_size: int = 100,
                             timeout: float | None = None) -> AsyncIterator[list[Run]]:
        token = ""
        while True:
            resp = await self._call("orchestrator", "ListRuns", opb.ListRunsRequest(
                page_size=page_size, page_token=token, status=status_value(status)), timeout or self.deadlines.read)
            yield [Run.from_pb(r) for r in resp.runs]
            token = resp.next_page_token
            if not token:
                return

    async def list_runs(self, *, status: RunStatus | str | None = None, page_size: int = 100,
                        timeout: float | None = None) -> AsyncIterator[Run]:
        async for page in self.list_run_pages(status=status, page_size=page_size, timeout=timeout):
            for run in page:
                yield run

    async def list_items(self, run_id: str, *, page_size: int = 500,
                         timeout: float | None = None) -> AsyncIterator[RunItem]:
        token = ""
        while True:
            resp = await self._call("orchestrator", "ListRunItems", opb.ListRunItemsRequest(
                run_id=run_id, page_size=page_size, page_token=token), timeout or self.deadlines.read)
            for i in resp.items:
                yield RunItem.from_pb(i)
            token = resp.next_page_token
            if not token:
                return

    async def _items(self, run_id: str) -> list[RunItem]:
        return [i async for i in self.list_items(run_id)]

    async def export(self, run_id: str, format: str = "json", *, path: str | Path | None = None) -> str:
        """As :meth:`VantageClient.export`."""
        if format not in _core.EXPORT_FORMATS:
            raise ValueError(f"format: one of {', '.join(_core.EXPORT_FORMATS)}, got {format!r:.40}")
        text = _core.render_export(await self.get_run(run_id), await self._items(run_id), format)
        if path is not None:
            await asyncio.to_thread(Path(path).write_text, text, encoding="utf-8")
        return text

    async def report(self, run_id: str) -> Report:
        return _core.build_report(await self.get_run(run_id), await self._items(run_id))

    async def cancel(self, run_id: str, *, timeout: float | None = None) -> Run:
        return Run.from_pb(await self._call("orchestrator", "CancelRun", opb.CancelRunRequest(run_id=run_id),
                                            timeout or self.deadlines.read))

    async def resume(self, run_id: str, *, detach: bool = False, timeout: float | None = None) -> Run:
        return Run.from_pb(await self._call("orchestrator", "ResumeRun",
                                            opb.ResumeRunRequest(run_id=run_id, detach=detach),
                                            timeout or self.deadlines.start))

    async def retry_failed(self, run_id: str, *, detach: bool = False, timeout: float | None = None) -> Run:
        return Run.from_pb(await self._call("orchestrator", "RetryFailed",
                                            opb.RetryFailedRequest(run_id=run_id, detach=detach),
                                            timeout or self.deadlines.start))

    async def diff(self, run_a: str, run_b: str, *, seed: int = 0, resamples: int = 0,
                   timeout: float | None = None) -> RunDiff:
        """As :meth:`vantage_client.VantageClient.diff`."""
        req = opb.DiffRunsRequest(run_a=run_a, run_b=run_b, seed=seed, resamples=resamples)
        return RunDiff.from_pb(await self._call("orchestrator", "DiffRuns", req, timeout or self.deadlines.read))

    # --- thin per-service calls ---------------------------------------------------------------------------------

    async def search_company(self, company: str, domain: str = "", *, search_depth: str = "",
                             min_score: float | None = None, max_results: int | None = None,
                             context_char_budget: int = 0, no_cache: bool = False,
                             include_raw_content: bool | None = None, timeout: float | None = None) -> SearchResponse:
        req = _core.search_company_request(company, domain, search_depth=search_depth, min_score=min_score,
                                           max_results=max_results, context_char_budget=context_char_budget,
                                           no_cache=no_cache, include_raw_content=include_raw_content)
        return SearchResponse.from_pb(await self._call("search", "SearchCompany", req,
                                                       timeout or self.deadlines.search))

    async def route(self, model: str, *, timeout: float | None = None) -> Route:
        return Route.from_pb(await self._call("inference", "Route", ipb.RouteRequest(model=model),
                                              timeout or self.deadlines.read))

    async def complete(self, model: str, prompt: str | None = None, *,
                       messages: Sequence[tuple[str, str]] | None = None,
                       json_schema: str | Mapping[str, Any] | None = None, location: str = "",
                       web_search: bool = False, max_output_tokens: int = 0, schema_name: str = "",
                       no_cache: bool = False, idempotency_key: str = "", timeout: float | None = None) -> Completion:
        req = _core.complete_request(model, prompt, messages, json_schema=json_schema, location=location,
                                     web_search=web_search, max_output_tokens=max_output_tokens,
                                     schema_name=schema_name, no_cache=no_cache, idempotency_key=idempotency_key)
        return Completion.from_pb(await self._call("inference", "Complete", req, timeout or self.deadlines.complete))

    async def extract(self, answer_markdown: str, org: str, *, org_domain: str = "",
                      name_variations: Sequence[str] = (), known_products: Sequence[str] = (),
                      known_competitors: Sequence[str] = (), citations: Sequence[str | tuple[str, str]] = (),
                      timeout: float | None = None) -> Extraction:
        req = _core.extract_request(answer_markdown, org, org_domain=org_domain, name_variations=name_variations,
                                    known_products=known_products, known_competitors=known_competitors,
                                    citations=citations)
        return Extraction.from_pb(await self._call("extraction", "Extract", req, timeout or self.deadlines.extract))
