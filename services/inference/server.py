"""gRPC face of the inference service (``vantage.inference.v1.InferenceService``): a thin servicer over
:class:`services.inference.core.Inference`, and :func:`build`, which creates the long-lived provider clients and
budgets once per process.

Handlers only translate protobuf ↔ domain types; validation, routing and provider calls live in the core and the
provider modules. Errors are :mod:`shared.errors` classes, mapped to statuses by the server interceptor.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import grpc
import structlog

from services.inference.cache import ResponseCache, is_cached, purge_periodically
from services.inference.core import (
    MAX_ID_CHARS,
    Inference,
    build_request,
    check_model,
    id_problem,
    location_problem,
    model_problem,
    shown,
)
from services.inference.packing import Packer, build_spec, parse_items
from services.inference.pricing import answer_notes, catalogue_to_proto
from services.inference.providers import (
    BatchProvider,
    CompletionRequest,
    CompletionResult,
    ItemFailure,
    Outcome,
    Provider,
    failure_from,
)
from services.inference.providers.anthropic import AnthropicProvider
from services.inference.providers.brightdata import (
    CHATGPT,
    PERPLEXITY,
    BrightDataProvider,
    new_http_client,
    validate_snapshot_id,
)
from services.inference.providers.openai import OpenAIProvider
from services.inference.providers.perplexity import PerplexityProvider
from services.inference.router import Router
from services.inference.streaming import (
    BatchSubmitted,
    Item,
    ItemResult,
    Resume,
    StreamEngine,
    StreamEvent,
    StreamInput,
    drive,
    totals,
)
from services.inference.trigger_intents import TriggerIntents
from shared.concurrency import background
from shared.config import InferenceSettings
from shared.errors import InvalidArgument, VantageError, public_message
from shared.grpc_client import MAX_FORWARDED_DEADLINE, Deadline, forward_timeout
from shared.grpc_server import Mount, Undecodable, reads_undecodable
from shared.logging import register_secret
from vantage.common.v1 import common_pb2
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

SERVICE_NAME = "vantage.inference.v1.InferenceService"

log = structlog.get_logger("vantage.inference.server")

#: Incoming metadata key whose value is forwarded to the sandbox as ``X-Sandbox-Fault`` (tests force provider
#: faults through the service this way). Honoured only when ``settings.sandbox_url`` is set.
SANDBOX_FAULT_KEY = "x-sandbox-fault"
#: Members of one ``ResumeBatch``: one Bright Data snapshot holds ≤ 20 prompts (providers.md §2.7).
MAX_RESUME_MEMBERS = 20
#: Members of a refused ``ResumeBatch`` that get their own error (a resume naming more is a broken client: one
#: message must not turn into millions of results).
MAX_RESUME_REPORTED = 1_000
#: Providers whose batches ``CancelBatch`` can cancel ("" = brightdata_chatgpt: one cancel endpoint serves both).
CANCEL_PROVIDERS = ("brightdata_chatgpt", "brightdata_perplexity")


def result_to_proto(r: CompletionResult) -> pb.CompleteResponse:
    estimated, warning = answer_notes(r.provider, r.model)  # model catalogue (#18): unknown → estimated cost
    return pb.CompleteResponse(
        text=r.text,
        json=r.json_text,
        citations=[common_pb2.Citation(url=c.url, title=c.title) for c in r.citations],
        usage=common_pb2.Usage(input_tokens=r.input_tokens, output_tokens=r.output_tokens),
        cost_usd=r.cost_usd,
        provider=r.provider,
        model=r.model,
        finish_reason=r.finish_reason,
        search_queries=r.search_queries,
        markdown=r.markdown,
        snapshot_id=r.snapshot_id,
        web_search_calls=r.web_search_calls,
        cached=is_cached(r),
        web_search_triggered=r.web_search_triggered,
        links_attached=[common_pb2.Citation(url=c.url, title=c.title) for c in r.links_attached],
        cost_estimated=estimated,
        model_warning=warning,
    )


def with_estimate_flag(resp: pb.CompleteBatchResponse) -> pb.CompleteBatchResponse:
    """``resp`` with ``cost_estimated`` set when any of its answers' cost is an estimate (model catalogue)."""
    resp.cost_estimated = any(r.response.cost_estimated for r in resp.results if r.HasField("response"))
    return resp


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    """Thin servicer: validate → core → response."""

    def __init__(self, settings: InferenceSettings, core: Inference, engine: StreamEngine) -> None:
        self._settings = settings
        self._core = core
        self._engine = engine
        self._packer = Packer(core)

    def _extra_headers(self, context: grpc.aio.ServicerContext) -> dict[str, str]:
        if not self._settings.sandbox_url:
            return {}
        for key, value in context.invocation_metadata() or ():
            if key == SANDBOX_FAULT_KEY and isinstance(value, str) and value:
                return {"X-Sandbox-Fault": value}
        return {}

    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteResponse:
        route = self._core.route(check_model(request.model))
        caps = route.provider.capabilities
        return pb.RouteResponse(
            provider=route.provider.id,
            supports_batching=caps.supports_batching,
            max_batch_size=caps.max_batch_size,
            supports_web_search=caps.supports_web_search,
            supports_locations=caps.supports_locations,
            rule=route.rule.label,
            provider_name=route.provider.name,
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        rules = [
            pb.RoutingRule(match=r.match, pattern=r.pattern, provider=r.provider, description=r.description)
            for r in self._core.router.rules
        ]
        providers = [
            pb.ProviderInfo(
                provider=s.spec.id,
                provider_name=s.spec.name,
                supports_batching=s.spec.capabilities.supports_batching,
                max_batch_size=s.spec.capabilities.max_batch_size,
                supports_web_search=s.spec.capabilities.supports_web_search,
                supports_locations=s.spec.capabilities.supports_locations,
                available=s.available,
                **guard_fields(self._core.providers.get(s.spec.id)),
            )
            for s in self._core.provider_statuses()
        ]
        return pb.ListModelsResponse(rules=rules, providers=providers, models=catalogue_to_proto(self._settings))

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:
        req = request_from_proto(request, self._extra_headers(context), self._settings.max_prompt_chars)
        # The caller's deadline when it set one; otherwise each provider's own limit applies (a Bright Data
        # snapshot may take many minutes, an API call at most provider_timeout_seconds).
        result = await self._core.complete(req, deadline=self._caller_deadline(context))
        return result_to_proto(result)

    def _caller_deadline(self, context: grpc.aio.ServicerContext) -> Deadline | None:
        """The caller's deadline (minus a margin), or None when it set none: long streams then run until the
        providers' own limits (``provider_timeout_seconds``, ``brightdata_timeout_seconds``)."""
        remaining = context.time_remaining()
        if remaining is None or remaining > MAX_FORWARDED_DEADLINE:
            return None
        return Deadline(forward_timeout(context, remaining))

    def _stream_inputs(
        self, msg: pb.CompleteStreamRequest, extra_headers: dict[str, str], number: int
    ) -> list[StreamInput]:
        """What message ``number`` (1-based) of a stream asks: an item (with its validation failure, if any), a
        valid resume, or — for a resume that breaks a limit — one failed item per member it names. Never raises."""
        limit = self._settings.stream_max_messages
        over = (f"a CompleteStream carries at most {limit} messages (VANTAGE_STREAM_MAX_MESSAGES); this is "
                f"message #{number}") if number > limit else ""
        kind = msg.WhichOneof("kind")
        if kind == "resume":
            return self._resume_inputs(msg.resume, over)
        item_id = msg.item.id
        if over:
            err = InvalidArgument(over, field="item", reason="TOO_MANY_MESSAGES")
        elif kind is None:
            err = InvalidArgument("the message carries neither an item nor a resume", field="kind")
        elif problem := id_problem(item_id, "item.id"):
            err = InvalidArgument(problem, field="item.id")
        else:
            return [self._item(item_id, msg.item.request, extra_headers)]
        return [Item(item_id[:MAX_ID_CHARS], failure=failure_from(err))]

    def _resume_inputs(self, r: pb.ResumeBatch, over: str) -> list[StreamInput]:
        """A valid :class:`Resume`, or one failed item per acceptable member id, at most
        :data:`MAX_RESUME_REPORTED` (a resume naming no acceptable member has nobody to answer: it is logged and
        dropped)."""
        members = tuple(r.member_ids)
        violations: list[tuple[str, str]] = []
        if over:
            violations.append(("resume", over))
        snapshot_id = r.snapshot_id.strip()
        try:
            validate_snapshot_id(snapshot_id, "resume.snapshot_id")
        except InvalidArgument as e:
            violations.extend(e.violations)
        model = r.model.strip()
        if not model:
            violations.append(("resume.model", "resume.model is required"))
        elif problem := model_problem(model):
            violations.append(("resume.model", problem))
        location, problem = location_problem(r.location, "resume.location")
        if problem:
            violations.append(("resume.location", problem))
        if not members:
            violations.append(("resume.member_ids", "resume.member_ids is required"))
        elif len(members) > MAX_RESUME_MEMBERS:
            violations.append(("resume.member_ids", f"{len(members)} member ids; a snapshot has at most "
                                                    f"{MAX_RESUME_MEMBERS}"))
        bad_ids = [(f"resume.member_ids[{i}]", p) for i, m in enumerate(members)
                   if (p := id_problem(m, f"resume.member_ids[{i}]"))]
        violations.extend(bad_ids[:3])
        if not violations:
            return [Resume(snapshot_id, model, location, members)]
        failure = failure_from(InvalidArgument("; ".join(d for _, d in violations), violations=violations,
                                               reason="INVALID_RESUME"))
        named: list[StreamInput] = [Item(m, failure=failure) for m in members if not id_problem(m, "")]
        if not named or len(named) > MAX_RESUME_REPORTED:
            log.warning("resume_refused_unreported", members=len(members), reported=min(len(named),
                        MAX_RESUME_REPORTED), problem=failure.message)
        return named[:MAX_RESUME_REPORTED]

    def _item(self, item_id: str, request: pb.CompleteRequest, extra_headers: dict[str, str]) -> Item:
        try:
            return Item(item_id, request_from_proto(request, extra_headers, self._settings.max_prompt_chars))
        except VantageError as e:
            return Item(item_id, failure=failure_from(e))
        except Exception as e:  # a bug must fail its item, not the stream
            log.exception("stream_item_validation_error")
            return Item(item_id, failure=ItemFailure("INTERNAL", f"internal error: {type(e).__name__}"))

    @reads_undecodable
    async def CompleteStream(
        self, request_iterator: AsyncIterator[pb.CompleteStreamRequest | Undecodable],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.CompleteStreamResponse]:
        headers = self._extra_headers(context)
        deadline = self._caller_deadline(context)

        async def inputs() -> AsyncIterator[StreamInput]:
            number = 0
            async for msg in request_iterator:
                number += 1
                if isinstance(msg, Undecodable):
                    # Corrupt bytes name no item: reported as a failed item without an id; the stream goes on.
                    yield Item("", failure=failure_from(msg.to_error(number - 1)))
                    continue
                for inp in self._stream_inputs(msg, headers, number):
                    yield inp

        async for event in drive(lambda emit: self._engine.run(inputs(), emit, deadline=deadline)):
            yield event_to_proto(event)

    async def CompleteBatch(
        self, request: pb.CompleteBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteBatchResponse:
        limit = self._settings.complete_batch_max_items
        if len(request.items) > limit:
            raise InvalidArgument(
                f"items: at most {limit} items per CompleteBatch (VANTAGE_COMPLETE_BATCH_MAX_ITEMS), got "
                f"{len(request.items)}; split the list into several requests", field="items", reason="TOO_MANY_ITEMS")
        if request.instruction:
            return await self._complete_packed(request, context)
        if not request.items:
            raise InvalidArgument("at least one item is required", field="items")
        check_ids([it.id for it in request.items])
        headers = self._extra_headers(context)
        items: list[Item] = []
        for i, it in enumerate(request.items):
            if not it.HasField("request"):
                items.append(Item(it.id, failure=failure_from(InvalidArgument(
                    f"items[{i}].request is required in explicit-batch mode", field=f"items[{i}].request"))))
                continue
            req = pb.CompleteRequest()
            req.CopyFrom(it.request)
            req.model = req.model or request.model  # the batch's model and location are the items' defaults
            req.location = req.location or request.location
            req.no_cache = req.no_cache or request.no_cache
            items.append(self._item(it.id, req, headers))

        async def inputs() -> AsyncIterator[StreamInput]:
            for item in items:
                yield item

        outcomes: dict[str, Outcome] = {}

        async def collect(event: StreamEvent) -> None:
            if isinstance(event, ItemResult):
                outcomes[event.id] = event.outcome

        stats = await self._engine.run(inputs(), collect, deadline=self._caller_deadline(context))
        results = [outcomes[it.id] for it in items if it.id in outcomes]
        in_tok, out_tok, cost = totals(results)
        hits = sum(1 for r in results if is_cached(r))
        return with_estimate_flag(pb.CompleteBatchResponse(
            results=[outcome_to_proto(it.id, outcomes[it.id]) for it in items if it.id in outcomes],
            llm_calls=stats.calls,  # snapshots triggered + single calls that reached a provider (hits did not)
            cache_hits=hits,
            cost_usd=cost,
            usage=common_pb2.Usage(input_tokens=in_tok, output_tokens=out_tok),
        ))

    async def _complete_packed(
        self, request: pb.CompleteBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteBatchResponse:
        """Packing mode: ``instruction`` + ``item_json_schema`` applied to each item's ``input_json``, ≤
        ``max_items_per_call`` items per LLM call (:mod:`services.inference.packing`). Results in request order."""
        spec = build_spec(
            self._settings,
            model=request.model,
            instruction=request.instruction,
            item_json_schema=request.item_json_schema,
            location=request.location,
            max_items_per_call=request.max_items_per_call,
            no_cache=request.no_cache,
            extra_headers=self._extra_headers(context),
        )
        items, failures = parse_items([(it.id, it.input_json) for it in request.items])
        report = await self._packer.run(spec, items, deadline=self._caller_deadline(context))
        outcomes = {**failures, **report.outcomes}
        return with_estimate_flag(pb.CompleteBatchResponse(
            results=[outcome_to_proto(it.id, outcomes[it.id]) for it in request.items],
            llm_calls=report.llm_calls,
            cache_hits=report.cache_hits,
            cost_usd=report.cost_usd,
            usage=common_pb2.Usage(input_tokens=report.input_tokens, output_tokens=report.output_tokens),
        ))

    async def CancelBatch(self, request: pb.CancelBatchRequest, context: grpc.aio.ServicerContext) -> pb.CancelBatchResponse:
        snapshot_id = validate_snapshot_id(request.snapshot_id.strip(), "snapshot_id")
        provider_id = request.provider or "brightdata_chatgpt"  # one cancel endpoint serves every dataset
        if provider_id not in CANCEL_PROVIDERS:
            raise InvalidArgument(f"provider {shown(provider_id)} has no batches to cancel; one of "
                                  f"{', '.join(CANCEL_PROVIDERS)} (or empty)", field="provider")
        provider = self._core.providers.get(provider_id)
        if not isinstance(provider, BatchProvider):
            raise InvalidArgument(f"provider {provider_id!r} has no batches to cancel", field="provider")
        return pb.CancelBatchResponse(cancelled=await provider.cancel_batch(snapshot_id))


def guard_fields(provider: object) -> dict[str, Any]:
    """ProviderInfo's live resilience fields (current/max concurrency limit, in flight, circuit state) of a built
    provider's :class:`~shared.resilience.ProviderGuard`; {} when it has none."""
    guard = getattr(provider, "guard", None)
    if guard is None:
        return {}
    st = guard.status()
    return {"current_limit": st["current_limit"], "max_limit": st["max_limit"], "in_flight": st["in_flight"],
            "circuit_state": st["circuit_state"]}


def check_ids(ids: list[str]) -> None:
    """``InvalidArgument`` (``items[i].id``) unless every id is 1-256 characters and unique: results are mapped
    back by id. At most the first 5 problems are listed."""
    violations: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item_id in enumerate(ids):
        if problem := id_problem(item_id, f"items[{i}].id"):
            violations.append((f"items[{i}].id", problem))
        elif item_id in seen:
            violations.append((f"items[{i}].id", f"id {shown(item_id)} is used by more than one item"))
        seen.add(item_id)
        if len(violations) >= 5:
            break
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations, reason="INVALID_REQUEST")


def request_from_proto(
    request: pb.CompleteRequest, extra_headers: dict[str, str], max_prompt_chars: int = 2_000_000
) -> CompletionRequest:
    """A validated domain request (``InvalidArgument`` with field violations otherwise; limits in
    :func:`services.inference.core.build_request`)."""
    return build_request(
        model=request.model,
        messages=[(m.role, m.content) for m in request.messages],
        json_schema=request.json_schema,
        schema_name=request.schema_name,
        location=request.location,
        web_search=request.web_search,
        max_output_tokens=request.max_output_tokens,
        idempotency_key=request.idempotency_key,
        extra_headers=extra_headers,
        no_cache=request.no_cache,
        cache_scope=request.cache_scope,
        max_prompt_chars=max_prompt_chars,
    )


def outcome_to_proto(item_id: str, outcome: Outcome) -> pb.ItemResult:
    if isinstance(outcome, ItemFailure):
        # An item's error leaves the service like a unary status does: masked and bounded (public_message); a
        # provider's error text may quote our key ("Bearer bd-…").
        return pb.ItemResult(
            id=item_id,
            error=common_pb2.ItemError(
                code=outcome.code,
                message=public_message(outcome.message),
                provider_error_code=public_message(outcome.provider_error_code, 200),
                provider=outcome.provider,
            ),
        )
    return pb.ItemResult(id=item_id, response=result_to_proto(outcome))


def event_to_proto(event: StreamEvent) -> pb.CompleteStreamResponse:
    if isinstance(event, BatchSubmitted):
        return pb.CompleteStreamResponse(
            batch_submitted=pb.BatchSubmitted(
                snapshot_id=event.snapshot_id,
                provider=event.provider,
                model=event.model,
                location=event.location,
                member_ids=list(event.member_ids),
            )
        )
    return pb.CompleteStreamResponse(result=outcome_to_proto(event.id, event.outcome))


@contextlib.asynccontextmanager
async def build(settings: InferenceSettings) -> AsyncIterator[list[Mount]]:
    """Create the routing table and the providers — one SDK/HTTP client and one concurrency budget each, made
    once per process — yield the servicer mount, close the clients on exit. Whatever was opened before a failure
    part-way is closed (an ``AsyncExitStack``, last opened first closed). Raises ``ValueError`` at start-up for bad
    ``routing_rules``."""
    async with contextlib.AsyncExitStack() as stack:
        router = Router.from_settings(settings)
        for name in ("openai", "anthropic", "perplexity", "brightdata"):
            register_secret(settings.api_key(name))
        bd_http = new_http_client(settings)
        stack.push_async_callback(bd_http.aclose)
        bd_key = settings.api_key("brightdata") is not None
        providers: dict[str, Provider] = {}
        stack.push_async_callback(_close_providers, providers)
        providers["openai"] = OpenAIProvider.from_settings(settings)
        providers["anthropic"] = AnthropicProvider.from_settings(settings)
        providers["perplexity"] = PerplexityProvider.from_settings(settings)
        # One in-flight cap per dataset (Bright Data limits concurrent batch jobs per dataset).
        for key, dataset in (("brightdata_chatgpt", CHATGPT), ("brightdata_perplexity", PERPLEXITY)):
            providers[key] = BrightDataProvider(
                settings, dataset, bd_http, anyio.CapacityLimiter(max(1, settings.brightdata_max_in_flight)),
                has_key=bd_key,
            )
        # The response cache lives in the database (table response_cache); None when disabled or unusable (logged).
        cache = await ResponseCache.open(settings)
        if cache is not None:
            stack.push_async_callback(cache.aclose)
        # Bright Data trigger intents in the same database, seen by every replica (services/inference/trigger_intents.py).
        intents = await TriggerIntents.open(cache.engine if cache is not None else None)
        for p in providers.values():
            if isinstance(p, BrightDataProvider):
                p.intents = intents
        # The token's 429 budget is shared with every replica through the same database (issue 17: Bright Data
        # blocks an IP at 25 429s in 5 minutes, whichever replica received them).
        if intents.engine is not None:
            stack.push_async_callback(bd_http.budget.unshare)
            await bd_http.budget.share(intents.engine)
        core = Inference(settings, router, providers, cache=cache)
        engine = StreamEngine(core, linger=settings.batch_linger_seconds, max_pending=settings.stream_max_pending_items)
        # Expired cache rows are deleted in the background, one bounded batch per interval: never on a call's path
        # (a task of a TaskGroup for the service's lifetime: cancelled and awaited first on exit).
        if cache is not None and settings.response_cache_purge_interval_seconds > 0:
            await stack.enter_async_context(
                background(purge_periodically(cache, settings.response_cache_purge_interval_seconds))
            )
        yield [Mount(InferenceServicer(settings, core, engine), pb_grpc.add_InferenceServiceServicer_to_server,
                     SERVICE_NAME)]


async def _close_providers(providers: dict[str, Provider]) -> None:
    """Close every provider created (their SDK clients; the Bright Data HTTP client is closed by ``build``)."""
    for p in providers.values():
        await p.aclose()
