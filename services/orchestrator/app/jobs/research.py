"""Territory research of one company: search → inference → extraction, with retries, the context-too-long
fallback, and a cost-ledger row for every billed call.

Per item (all RPCs with a timeout and the run/item ids in metadata):

1. ``SearchService/SearchCompany(company, domain)`` → kept results + ``llm_context`` (+ credits, USD).
2. ``InferenceService/Complete(model, [system, user], json_schema)`` → the classification as JSON (+ tokens, USD).
   Before the call the context is trimmed to fit the model's window (``settings.llm_max_input_tokens``, prompt tokens
   estimated at 4 characters each). ``INVALID_ARGUMENT`` with reason ``CONTEXT_TOO_LONG`` (a provider 400 "context
   length" / "too large" / "request not supported") → search again with the context halved (the search cache makes
   that free), mark the item truncated, and try again — at most twice (:data:`MAX_CONTEXT_HALVINGS`).
3. ``ExtractionService/ParseClassification(json, kept URLs)`` → tier/score/category/rationale/evidence. An invalid
   classification (``INVALID_ARGUMENT``) earns one more LLM call (cache bypassed), then the item fails.

One retry layer: the services retry their providers (the guard); here, under ONE deadline per stage
(``settings.rpc_timeout_seconds``, each attempt getting what the earlier ones left), only transport failures — an
UNAVAILABLE that gRPC itself produced: a service restarting or gone mid-call — are resent
(:func:`shared.grpc_client.call_under_deadline`, at most ``settings.retry_attempts`` attempts, exponential back-off
with full jitter); each attempt holds the service's budget only while it runs. Any other failure ends the item with
a reason such as ``"inference: RESOURCE_EXHAUSTED: rate limited [PROVIDER_RATE_LIMITED]"``; the run goes on. Database errors are not caught here: they stop the run (it stays resumable).

This module knows gRPC stubs but nothing of runs or the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from services.orchestrator.app.jobs.base import (
    ItemFailed,
    JobContext,
    SetupError,
    atomic_input,
    describe,
    item_stage,
    stage_call,
)
from services.orchestrator.app.pipeline import Budget, Budgets, Inflight
from services.orchestrator.clients import Clients
from services.orchestrator.domain import InputRow
from services.orchestrator.store import (
    ClaimedItem,
    ClassificationRecord,
    IngestReport,
    RunRow,
    SearchRecord,
    Store,
)
from services.orchestrator.store.repo import LedgerSettlement, ledger_call
from shared.config import TAVILY_CREDITS_BY_DEPTH, OrchestratorSettings
from shared.errors import FailedPrecondition, InvalidArgument, VantageError
from shared.grpc_client import call_metadata
from shared.resilience import CHARS_PER_TOKEN, estimate_tokens
from vantage.common.v1 import common_pb2
from vantage.extraction.v1 import extraction_pb2
from vantage.inference.v1 import inference_pb2
from vantage.search.v1 import search_pb2

T = TypeVar("T")

CONTEXT_TOO_LONG = "CONTEXT_TOO_LONG"
#: Ledger provider of search calls (the search service bills Tavily credits).
SEARCH_PROVIDER = "tavily"
#: Seconds an item's write-back waits for others (at most ``claim_batch_size`` of them) so that they share one
#: transaction and one set of statements (issue 16 item 2: ≤ 4 statements and ≤ 1 commit per item, amortised). The
#: item is already finished: the wait is inside its critical section and costs ≤ this much latency per item.
WRITE_BACK_LINGER_S = 0.05
#: Codes after which a paid call's outcome is unknown (it may have been billed): its pending ledger row is kept.
_UNKNOWN_OUTCOME = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
#: Smallest context worth sending after halving (characters).
MIN_CONTEXT_CHARS = 2_000
#: Times the context is halved after a provider's "too long" 400 before the item fails.
MAX_CONTEXT_HALVINGS = 2


@dataclass(frozen=True)
class ResearchOptions:
    """Options of a research run (the proto's ResearchOptions, defaults resolved from settings)."""

    model: str
    search_depth: str = ""
    min_score: float | None = None
    context_char_budget: int = 0  # characters; 0 = the search service's default (settings.context_char_budget)
    no_cache: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any], settings: OrchestratorSettings) -> ResearchOptions:
        return cls(
            model=d.get("model") or settings.research_model,
            search_depth=d.get("search_depth") or "",
            min_score=d.get("min_score"),
            context_char_budget=int(d.get("context_char_budget") or 0),
            no_cache=bool(d.get("no_cache")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "search_depth": self.search_depth, "min_score": self.min_score,
            "context_char_budget": self.context_char_budget, "no_cache": self.no_cache,
        }


@dataclass(frozen=True)
class RunSetup:
    """What a run fetches once before its items: the classification contract and the model's provider."""

    json_schema: str
    system_prompt: str
    provider: str  # e.g. "openai": the ledger's provider of LLM calls


async def fetch_setup(clients: Clients, opts: ResearchOptions, *, run_id: str, rpc_timeout: float) -> RunSetup:
    """Once per run: the classification schema + system prompt, and the provider that serves ``opts.model``.
    Raises :class:`SetupError` (an unknown model is INVALID_ARGUMENT from Route; a service down is UNAVAILABLE)."""
    md = call_metadata(run_id=run_id)
    s = clients.settings

    async def schema(seconds_left: float) -> extraction_pb2.GetClassificationSchemaResponse:
        return await clients.extraction.GetClassificationSchema(
            extraction_pb2.GetClassificationSchemaRequest(), timeout=seconds_left, metadata=md
        )

    async def route(seconds_left: float) -> inference_pb2.RouteResponse:
        return await clients.inference.Route(inference_pb2.RouteRequest(model=opts.model), timeout=seconds_left, metadata=md)

    def retried(fn: Callable[[float], Awaitable[T]]) -> Awaitable[T]:
        return stage_call(fn, s, seconds=rpc_timeout)

    try:
        sch = await retried(schema)
    except VantageError as e:
        raise SetupError(describe("extraction", e), e) from None
    try:
        rt = await retried(route)
    except VantageError as e:
        raise SetupError(describe("inference", e), e) from None
    return RunSetup(json_schema=sch.json_schema, system_prompt=sch.system_prompt, provider=rt.provider)


def user_prompt(company: str, domain: str, context: str) -> str:
    """The user message of the classification call. ``Company:`` comes first, on its own line: models (and the
    sandbox's analyst) read the subject from there."""
    return (
        f"Company: {company}\n"
        f"Domain: {domain or 'unknown'}\n\n"
        "Classify this company's GPU compute demand from the search results below. Answer with JSON that matches "
        "the schema; evidence_urls must be URLs of these results.\n\n"
        f"Search results:\n{context or '(no results)'}\n"
    )


@dataclass
class _Attempt:
    """Bookkeeping of one item attempt: billed-call counters (for idempotency keys) and sums."""

    search_calls: int = 0
    llm_calls: int = 0
    credits: int = 0
    search_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    llm_usd: float = 0.0
    truncated: bool = False
    model: str = ""
    notes: list[str] = field(default_factory=list)
    #: Ledger rows committed before the attempt's calls (keys), those whose call was made, and how each call ended:
    #: settled in the attempt's write-back transaction (:class:`LedgerSettlement`).
    begun: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)
    billed: dict[str, dict[str, Any]] = field(default_factory=dict)
    free: set[str] = field(default_factory=set)

    def settlement(self) -> LedgerSettlement:
        """Billed rows completed; rows of calls not billed for sure, and rows begun for calls never made, dropped;
        rows of calls with an unknown outcome (made, neither billed nor free) left pending — a search's is settled
        later from the search service's records (the call carried the row's key)."""
        dropped = self.free | (self.begun - self.used)
        unknown = self.used - self.free - set(self.billed)
        return LedgerSettlement(completed=tuple(self.billed.items()), dropped=tuple(sorted(dropped - set(self.billed))),
                                unknown=tuple(sorted(unknown)))


class _Gate:
    """Holds write-backs for up to ``linger`` seconds, or until ``size`` are waiting, then lets them all go in the
    same event-loop turn, so they reach the group commit together (one transaction, set-based statements)."""

    def __init__(self, linger: float, size: int) -> None:
        self.linger, self.size = linger, max(1, size)
        self._open: asyncio.Event | None = None
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None

    async def wait(self) -> None:
        if self.linger <= 0 or self.size <= 1:
            return
        if self._open is None:
            self._open, self._waiting = asyncio.Event(), 0
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._release)
        event = self._open
        self._waiting += 1
        if self._waiting >= self.size:
            self._release()
        await event.wait()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open is not None:
            self._open.set()
            self._open = None


class Researcher:
    """Researches claimed items of one run and persists the outcome (done or failed, fenced by the attempt)."""

    def __init__(
        self,
        *,
        store: Store,
        clients: Clients,
        budgets: Budgets,
        settings: OrchestratorSettings,
        run_id: str,
        options: ResearchOptions,
        setup: RunSetup,
        inflight: Inflight,
    ) -> None:
        self.store = store
        self.clients = clients
        self.budgets = budgets
        self.settings = settings
        self.run_id = run_id
        self.opts = options
        self.setup = setup
        self.inflight = inflight
        credits = TAVILY_CREDITS_BY_DEPTH.get(options.search_depth or settings.search_depth, 1)
        #: (credits, USD) a search is expected to cost: the depth's credits at the list price until a billed search
        #: tells the actual figures (then those of the last billed search).
        self._search_price: tuple[int, float] = (credits, round(credits * settings.tavily_credit_usd, 9))
        self._gate = _Gate(WRITE_BACK_LINGER_S, settings.claim_batch_size)

    # --- one item -----------------------------------------------------------------------------------------------

    async def process(self, item: ClaimedItem) -> tuple[bool, str]:
        """Research ``item`` and persist the outcome. Returns (done?, one-line summary or failure reason). A stale
        attempt's write-back is rejected by the store and reported as not done."""
        att = _Attempt()
        try:
            await self._begin_calls(item, att)
            search, cls = await self._research(item, att)
        except (ItemFailed, VantageError) as f:
            # A VantageError here is an inference INVALID_ARGUMENT that no fallback covered (e.g. on the re-ask).
            reason = f.reason if isinstance(f, ItemFailed) else describe("inference", f)
            with self.inflight.critical():
                await self.store.fail_item(item, reason, truncated=att.truncated, ledger=att.settlement())
            return False, reason
        except asyncio.CancelledError:
            # Stopped or fenced out mid-item: what the calls made so far cost is still recorded.
            settlement = att.settlement()
            if settlement:
                with contextlib.suppress(Exception), self.inflight.critical():
                    await asyncio.shield(self.store.settle_ledger(settlement))
            raise
        with self.inflight.critical():
            await self._gate.wait()
            ok = await self.store.complete_item(item, search, cls, truncated=att.truncated,
                                                ledger=att.settlement())
        if not ok:
            return False, "stale attempt: the item was claimed again elsewhere; result discarded"
        return True, f"{cls.tier} {cls.score} {cls.category}"

    def _window_chars(self, item: ClaimedItem) -> int:
        """Characters of search context that fit the model's window: ``settings.llm_max_input_tokens`` minus the
        estimated tokens (≈ 4 characters each, :func:`shared.resilience.estimate_tokens`) of the system prompt and
        of the user prompt around the context, back in characters."""
        fixed = estimate_tokens(self.setup.system_prompt) + estimate_tokens(user_prompt(item.company, item.domain, ""))
        return max(MIN_CONTEXT_CHARS, (self.settings.llm_max_input_tokens - fixed) * CHARS_PER_TOKEN)

    async def _research(self, item: ClaimedItem, att: _Attempt) -> tuple[SearchRecord, ClassificationRecord]:
        wanted = self.opts.context_char_budget or self.settings.context_char_budget
        # Trim before the call: the context never exceeds what the model's window holds by the estimate.
        budget = min(wanted, self._window_chars(item))
        sr = await self._search(item, att, budget)
        if budget < wanted and sr.context_truncated:
            att.truncated = True  # the window, not the configured budget, cut the context
        context = sr.llm_context[:budget]
        urls = [r.url for r in sr.results]
        halvings = 0
        while True:
            try:
                comp = await self._complete(item, att, context)
                break
            except InvalidArgument as e:
                if e.reason != CONTEXT_TOO_LONG:
                    raise ItemFailed(describe("inference", e)) from None
                if halvings >= MAX_CONTEXT_HALVINGS:
                    raise ItemFailed(
                        describe("inference", e) + f" (even with the context halved {halvings} times, to "
                        f"{len(context):,} characters)"
                    ) from None
                # Halve what was actually sent (the context may be well under its budget), not just the budget.
                halvings += 1
                budget = max(MIN_CONTEXT_CHARS, min(budget, len(context) or budget) // 2)
                att.truncated = True
                sr = await self._search(item, att, budget)  # the search cache makes this free
                context = sr.llm_context[:budget]
                urls = [r.url for r in sr.results]
        try:
            parsed = await self._parse(item, comp.json, urls)
        except InvalidArgument as e:
            # One more LLM answer, bypassing the response cache (it would hand back the same invalid answer).
            att.notes.append(f"invalid classification: {e.message}")
            comp = await self._complete(item, att, context, no_cache=True)
            try:
                parsed = await self._parse(item, comp.json, urls)
            except InvalidArgument as e2:
                raise ItemFailed(describe("extraction", e2) + " (twice)") from None
        if parsed.tier == common_pb2.TIER_UNSPECIFIED:
            raise ItemFailed("extraction: the classification has no tier")
        search = SearchRecord(
            returned_count=sr.returned_count,
            kept_count=len(sr.results),
            filtered_out_count=sr.filtered_out_count,
            credits=att.credits,
            cost_usd=att.search_usd,
            urls=urls,
            cached=sr.cached,
        )
        cls = ClassificationRecord(
            tier=common_pb2.Tier.Name(parsed.tier),
            score=parsed.score,
            category=parsed.category,
            rationale=parsed.rationale,
            evidence_urls=list(parsed.evidence_urls),
            model=att.model or self.opts.model,
            input_tokens=att.input_tokens,
            output_tokens=att.output_tokens,
            cost_usd=att.llm_usd,
        )
        return search, cls

    # --- stages -------------------------------------------------------------------------------------------------

    async def _search(self, item: ClaimedItem, att: _Attempt, budget: int) -> search_pb2.SearchResponse:
        req = search_pb2.SearchCompanyRequest(
            company=item.company,
            domain=item.domain,
            search_depth=self.opts.search_depth,
            context_char_budget=budget,
            no_cache=self.opts.no_cache,
        )
        if self.opts.min_score is not None:
            req.min_score = self.opts.min_score
        att.search_calls += 1
        key = self._key(item, SEARCH_PROVIDER, att.search_calls)
        # The row's key travels with the call: the search service records its outcome under it, so that the reaper
        # can settle the row exactly should this attempt die before its write-back (issue 17).
        req.idempotency_key = key
        async with self._ledger(item, att, key, SEARCH_PROVIDER, "search", "credits", self._search_price) as led:
            resp = await self._call("search", self.budgets.search, lambda t: self.clients.search.SearchCompany(
                req, timeout=t, metadata=self._md(item)))
            if resp.credits > 0 or resp.cost_usd > 0:  # 0-credit cached answers are not billed
                led.bill(units=resp.credits, usd=resp.cost_usd)
                self._search_price = (resp.credits, resp.cost_usd)
        att.credits += resp.credits
        att.search_usd += resp.cost_usd
        return resp

    async def _complete(
        self, item: ClaimedItem, att: _Attempt, context: str, *, no_cache: bool = False
    ) -> inference_pb2.CompleteResponse:
        att.llm_calls += 1
        provider = self.setup.provider or "llm"
        key = self._key(item, provider, att.llm_calls)
        req = inference_pb2.CompleteRequest(
            model=self.opts.model,
            messages=[
                inference_pb2.Message(role="system", content=self.setup.system_prompt),
                inference_pb2.Message(role="user", content=user_prompt(item.company, item.domain, context)),
            ],
            json_schema=self.setup.json_schema,
            schema_name="classification",
            no_cache=no_cache or self.opts.no_cache,
            idempotency_key=key,
        )
        async with self._ledger(item, att, key, provider, "llm", "tokens") as led:
            resp = await self._call("inference", self.budgets.inference, lambda t: self.clients.inference.Complete(
                req, timeout=t, metadata=self._md(item)))
            tin, tout = resp.usage.input_tokens, resp.usage.output_tokens
            if resp.cost_usd > 0 or (not resp.cached and tin + tout > 0):
                led.bill(units=tin + tout, usd=resp.cost_usd, input_tokens=tin, output_tokens=tout,
                         provider=resp.provider or provider, cost_estimated=resp.cost_estimated)
        att.input_tokens += resp.usage.input_tokens
        att.output_tokens += resp.usage.output_tokens
        att.llm_usd += resp.cost_usd
        att.model = resp.model or att.model
        return resp

    async def _parse(
        self, item: ClaimedItem, json_text: str, urls: list[str]
    ) -> extraction_pb2.ParseClassificationResponse:
        req = extraction_pb2.ParseClassificationRequest(
            classification_json=json_text, search_result_urls=urls, company=item.company
        )
        return await self._call("extraction", self.budgets.extraction, lambda t: self.clients.extraction.ParseClassification(
            req, timeout=t, metadata=self._md(item)), passthrough_invalid=True)

    # --- plumbing -----------------------------------------------------------------------------------------------

    async def _call(
        self,
        stage: str,
        budget: Budget,
        rpc: Callable[[float], Awaitable[T]],
        *,
        passthrough_invalid: bool = False,
    ) -> T:
        """One RPC under ``budget`` (:func:`~services.orchestrator.app.jobs.base.item_stage`: one deadline for the
        stage, only transport failures resent — the service retried its provider already). INVALID_ARGUMENT is
        re-raised as such for the caller's fallbacks (inference always; extraction when ``passthrough_invalid``);
        every other failure becomes ItemFailed."""
        return await item_stage(self.settings, stage, budget, rpc,
                                reraise_invalid=stage == "inference" or passthrough_invalid)

    def _key(self, item: ClaimedItem, provider: str, call: int) -> str:
        """Idempotency key of a paid call: ``run:item:provider:attempt`` (``:n`` added for the n-th call of the same
        provider within one attempt)."""
        base = f"{self.run_id}:{item.id}:{provider}:{item.attempt}"
        return base if call == 1 else f"{base}:{call}"

    def _md(self, item: ClaimedItem) -> tuple[tuple[str, str], ...]:
        return call_metadata(run_id=self.run_id, item_id=item.id)

    def _call_row(self, item: ClaimedItem, key: str, provider: str, kind: str, unit_type: str,
                  estimate: tuple[int, float] = (0, 0.0)) -> dict[str, Any]:
        return ledger_call(run_id=self.run_id, item_id=item.id, provider=provider, kind=kind, key=key,
                           unit_type=unit_type, attempt=item.attempt, estimate_units=estimate[0],
                           estimate_usd=estimate[1])

    async def _begin_calls(self, item: ClaimedItem, att: _Attempt) -> None:
        """The pending ledger rows of the attempt's two paid calls (the search and the classification), in ONE
        operation committed before either call is made: the items of a claim start together, so their rows share a
        transaction. A re-search or re-ask begins its own row (:meth:`_ledger`); a row whose call is never made
        is dropped by the write-back."""
        provider = self.setup.provider or "llm"
        rows = [
            self._call_row(item, self._key(item, SEARCH_PROVIDER, 1), SEARCH_PROVIDER, "search", "credits",
                           self._search_price),
            self._call_row(item, self._key(item, provider, 1), provider, "llm", "tokens"),
        ]
        with self.inflight.critical():
            await self.store.ledger_begin_many(rows)
        att.begun.update(r["idempotency_key"] for r in rows)

    @contextlib.asynccontextmanager
    async def _ledger(
        self, item: ClaimedItem, att: _Attempt, key: str, provider: str, kind: str, unit_type: str,
        estimate: tuple[int, float] = (0, 0.0),
    ) -> AsyncIterator[_Bill]:
        """A pending ledger row committed before the call (by :meth:`_begin_calls`, or here for a further call of
        the attempt); how the call ended is noted on ``att`` and settled in the attempt's write-back transaction:
        completed with its cost when billed, dropped when the call was free or failed for sure, kept pending when
        the outcome is unknown (deadline, cancellation, or the process dies). ``estimate`` = (units, USD) the call
        costs when known before it (a Tavily search's credits): the pending row carries it, flagged
        ``cost_estimated``, so an unknown outcome is counted at its known price."""
        if key not in att.begun:
            with self.inflight.critical():
                await self.store.ledger_begin_many([self._call_row(item, key, provider, kind, unit_type, estimate)])
            att.begun.add(key)
        att.used.add(key)
        bill = _Bill()
        try:
            yield bill
        except BaseException as e:
            unknown = isinstance(e, asyncio.CancelledError) or (
                isinstance(e, ItemFailed) and e.code in _UNKNOWN_OUTCOME
            )
            if not unknown:
                att.free.add(key)
            raise
        if bill.billed:
            att.billed[key] = bill.values
        else:
            att.free.add(key)


class _Bill:
    """What a call cost, set inside a :meth:`Researcher._ledger` block."""

    def __init__(self) -> None:
        self.billed = False
        self.values: dict[str, Any] = {}

    def bill(self, **values: Any) -> None:
        self.billed = True
        self.values = values


async def create_research_run(
    ctx: JobContext, rows: Iterable[InputRow], *, name: str, options: ResearchOptions, input_path: str | None = None
) -> tuple[RunRow, IngestReport]:
    """Store a new research run and its items (``rows`` is consumed as a stream), atomically with respect to the
    input (:func:`~services.orchestrator.app.jobs.base.atomic_input`): when reading or storing it fails or is
    interrupted, no run is left (or, when even the clean-up could not run, one marked incomplete that nothing
    executes). Raises InvalidArgument when the input holds no company at all, or an input error from ``rows``."""
    run = await ctx.store.create_run(kind="research", name=name, options=options.to_dict(), input_path=input_path,
                                     input_complete=False)
    async with atomic_input(ctx.store, run.id):
        report = await ctx.store.add_items(run.id, rows)
        if report.queued == 0:
            msg = "no companies in the input" + (f" ({report.skipped} rows skipped)" if report.skipped else "")
            raise InvalidArgument(msg, field="input")
    stored = await ctx.store.get_run(run.id)
    if stored is None:
        raise FailedPrecondition(f"run {run.id} vanished while it was being created")
    return stored, report


class ResearchJob:
    """The ``research`` kind of run (:class:`~services.orchestrator.app.jobs.base.Job`): set-up fetches the
    classification contract and the model's route once; each item is researched by a :class:`Researcher`."""

    max_in_flight: int | None = None

    def __init__(self, ctx: JobContext, run: RunRow, inflight: Inflight) -> None:
        self.ctx = ctx
        self.run = run
        self.inflight = inflight
        self.options = ResearchOptions.from_dict(run.options, ctx.settings)
        self._researcher: Researcher | None = None

    async def setup(self) -> None:
        """Raises :class:`SetupError` when the schema or the route cannot be fetched."""
        s = self.ctx.settings
        setup = await fetch_setup(self.ctx.clients, self.options, run_id=self.run.id, rpc_timeout=s.rpc_timeout_seconds)
        self._researcher = Researcher(
            store=self.ctx.store, clients=self.ctx.clients, budgets=self.ctx.budgets, settings=s, run_id=self.run.id,
            options=self.options, setup=setup, inflight=self.inflight,
        )

    async def process(self, item: ClaimedItem) -> tuple[bool, str]:
        if self._researcher is None:
            raise RuntimeError("ResearchJob.process before setup")
        return await self._researcher.process(item)

    async def finish(self) -> None:
        """Nothing: a research run has no run-level step after its items."""

    async def cancel(self) -> None:
        """Nothing to cancel at a provider: research calls are unary and end with the items."""

    async def aclose(self) -> None:
        """Nothing is held open."""


__all__ = ["ResearchJob", "ResearchOptions", "Researcher", "RunSetup", "create_research_run", "fetch_setup", "user_prompt"]
