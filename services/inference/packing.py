"""Prompt packing (``CompleteBatch`` with an ``instruction``): many small items, one instruction, few LLM calls.

Enrichment over a list (name variations of 150 organisations, a column over a CSV) costs one request per row when
each row is its own call — 150 calls, and about ten minutes under a 15 requests/minute limit. Packed 20 to a call it
is 8 calls. This module plans the packs, asks for them, validates the answers and maps them back to the items.

**Request.** An ``instruction``, an item JSON Schema (an object with ``properties``, none of them ``id``), and items
``(id, input_json)``. Each pack asks the model, through the same provider object (client and budget) that serves
``Complete``, for::

    {"items": [{"id": "<item id>", ...the item schema's fields}, ...]}

with a ``json_schema`` response format built from the item schema. The wrapper object is there because OpenAI's
strict structured outputs need an object at the root; every object of the schema is made strict-compatible
(all properties ``required``, ``additionalProperties: false``; :func:`strict_schema`).

**Packs** (:func:`plan_packs`): items in input order, at most ``max_items`` per pack (the request's
``max_items_per_call``, else ``settings.pack_max_items``, default 20) and at most ``settings.pack_max_input_tokens``
estimated prompt tokens (characters / 4 of instruction, schema and items); an item too large for any pack goes
alone. A pack may use ``settings.pack_output_tokens_per_item`` × items output tokens (at least
``settings.max_output_tokens``).

**Validation** (:func:`check_pack`): ``items`` is an array, its length is the pack's, every id of the pack is present
exactly once (and no other), every element matches the element schema (jsonschema, Draft 2020-12). Anything else
makes the whole pack invalid — a model that dropped or duplicated an item may also have shifted answers between
ids, so no element of an invalid pack is trusted.

**Failure policy.** An invalid or failed pack is retried once (after the provider's retry-after, capped at
``settings.retry_max_seconds``); an error that would recur identically (``INVALID_ARGUMENT``: prompt too long,
output cut at the token limit) skips that retry. Then each item of the pack gets its own call (the item schema
itself as the response schema). An item whose own call fails too comes back with its error
(:class:`~services.inference.providers.ItemFailure`) — never dropped, never silently empty.

**Cache.** Items are cached one by one (:func:`item_key`: provider, model, instruction, item schema, the item's
input, location), not per pack: a re-run hits every item whatever pack it lands in, and adding rows to a list only
pays for the new rows. Items with the same key in one request are asked once. Hits cost $0.

**Accounting** (:class:`PackReport`): ``llm_calls`` counts every provider call (packs, retries, per-item
fallbacks; a call that failed counts too); tokens and USD are summed over every answer received — an invalid pack
was billed, so its cost is in the total. A packed item's own response carries an even share of its pack's tokens
and USD.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import structlog

from services.inference.cache import (
    CACHE_VERSION,
    Entry,
    as_hit,
    canonical_json,
    content_key,
    result_to_json,
    unwrap,
)
from services.inference.core import (
    Inference,
    id_problem,
    location_problem,
    model_problem,
    parse_json_field,
    shown,
)
from services.inference.providers import (
    ChatMessage,
    CompletionRequest,
    CompletionResult,
    ItemFailure,
    Outcome,
    Provider,
    failure_from,
)
from shared.config import InferenceSettings
from shared.errors import InvalidArgument, RetryableError, VantageError
from shared.grpc_client import Deadline

log = structlog.get_logger("vantage.inference.packing")

#: Part of every item's cache key: bump when the prompts below change what an answer means.
PROMPT_VERSION = 1
#: Estimated characters per token (the same rule of thumb as the providers' own estimates).
CHARS_PER_TOKEN = 4

_PACK_SYSTEM = (
    "You apply one instruction to each item of a list, independently, and answer with JSON only.\n\n"
    "Instruction:\n{instruction}\n\n"
    'The user message holds the items as a JSON array between <items> and </items>; each item has an "id" and an '
    '"input". Answer {{"items": [...]}} with exactly one element per item ({count} in all): the item\'s "id" copied '
    "unchanged, and the result fields for that item's input alone. Never skip, merge, repeat or invent an item."
)
_ITEM_SYSTEM = (
    "You apply an instruction to one item and answer with JSON only.\n\n"
    "Instruction:\n{instruction}\n\n"
    'The user message holds the item between <item> and </item>: its "id" and its "input". Answer with the result '
    "fields for that input."
)
#: Request limits (README "Request limits", inference.proto): characters of the instruction, items per LLM call.
MAX_INSTRUCTION_CHARS = 20_000
MAX_ITEMS_PER_CALL = 100

# Keywords whose values are one subschema / a list of subschemas / a mapping of name → subschema.
_SUB_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SUB_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_MAP = ("properties", "$defs", "definitions", "patternProperties")


# --- the request -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackItem:
    """One item: the caller's ``id`` and its ``input`` (parsed from ``input_json``)."""

    id: str
    input: Any

    def entry_json(self) -> str:
        """The item as the prompt shows it: ``{"id": …, "input": …}`` (canonical JSON)."""
        return canonical_json({"id": self.id, "input": self.input})


@dataclass(frozen=True)
class PackSpec:
    """A validated packing request (see :func:`build_spec`).

    ``item_schema``: the caller's schema (parsed); ``strict_item``: its strict-compatible form without ``$defs``;
    ``defs``: the hoisted ``$defs`` / ``definitions`` (``{"$defs": {…}}`` or empty), placed at the root of every
    response schema so that ``#/$defs/…`` references keep resolving. ``max_items``: items per pack;
    ``max_input_tokens``: estimated prompt tokens per pack; ``output_tokens_per_item``: output allowance per item.
    """

    model: str
    instruction: str
    item_schema: dict[str, Any]
    strict_item: dict[str, Any]
    defs: dict[str, Any]
    location: str = ""
    max_items: int = 20
    max_input_tokens: int = 8_000
    output_tokens_per_item: int = 256
    min_output_tokens: int = 1_024
    no_cache: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)

    def element_schema(self) -> dict[str, Any]:
        """Schema of one element of a pack's answer: ``id`` + the item's fields, strict."""
        props = {"id": {"type": "string"}, **self.strict_item["properties"]}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    def pack_schema(self) -> dict[str, Any]:
        """Response schema of a pack: ``{"items": [element, …]}`` (an object root, as strict mode requires)."""
        return {
            "type": "object",
            "properties": {"items": {"type": "array", "items": self.element_schema()}},
            "required": ["items"],
            "additionalProperties": False,
            **self.defs,
        }

    def item_response_schema(self) -> dict[str, Any]:
        """Response schema of one item's own call (the fallback): the strict item schema."""
        return {**self.strict_item, **self.defs}


def strict_schema(schema: Any) -> Any:
    """``schema`` with every object that has ``properties`` made strict-compatible: all of them ``required`` and
    ``additionalProperties: false`` (OpenAI strict structured outputs; harmless elsewhere). A copy."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for k in _SUB_ONE:
        if isinstance(out.get(k), dict):
            out[k] = strict_schema(out[k])
    for k in _SUB_LIST:
        if isinstance(out.get(k), list):
            out[k] = [strict_schema(s) for s in out[k]]
    for k in _SUB_MAP:
        if isinstance(out.get(k), dict):
            out[k] = {name: strict_schema(s) for name, s in out[k].items()}
    if isinstance(out.get("properties"), dict):
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def build_spec(
    settings: InferenceSettings,
    *,
    model: str,
    instruction: str,
    item_json_schema: str,
    location: str = "",
    max_items_per_call: int = 0,
    no_cache: bool = False,
    extra_headers: dict[str, str] | None = None,
) -> PackSpec:
    """A validated :class:`PackSpec`, or one ``InvalidArgument`` listing every problem as a field violation:
    ``model`` (empty or not a model name, :func:`~services.inference.core.model_problem`), ``instruction`` (blank,
    over :data:`MAX_INSTRUCTION_CHARS`), ``item_json_schema`` (over 100,000 characters or 32 levels of nesting, not
    JSON, not an object schema with properties, a property named ``id``, not a valid JSON Schema), ``location``,
    ``max_items_per_call`` (outside 0..:data:`MAX_ITEMS_PER_CALL`)."""
    violations: list[tuple[str, str]] = []
    if not model.strip():
        violations.append(("model", "model is required"))
    elif problem := model_problem(model.strip()):
        violations.append(("model", problem))
    if not instruction.strip():
        violations.append(("instruction", "instruction is required in packing mode"))
    elif len(instruction) > MAX_INSTRUCTION_CHARS:
        violations.append(("instruction", f"instruction is {len(instruction)} characters; at most "
                                          f"{MAX_INSTRUCTION_CHARS} are allowed"))
    schema: dict[str, Any] = {}
    text = item_json_schema.strip()
    if not text:
        violations.append(("item_json_schema", "item_json_schema is required in packing mode (a JSON Schema object)"))
    else:
        ok, parsed = parse_json_field(text, "item_json_schema", violations)
        if ok:
            if not isinstance(parsed, dict):
                violations.append(("item_json_schema", "item_json_schema must be a JSON object (a JSON Schema)"))
            elif problem := _item_schema_problem(parsed):
                violations.append(("item_json_schema", problem))
            else:
                schema = parsed
    loc, problem = location_problem(location)
    if problem:
        violations.append(("location", problem))
    if not 0 <= max_items_per_call <= MAX_ITEMS_PER_CALL:
        violations.append(("max_items_per_call", f"max_items_per_call must be between 0 (the configured default) "
                                                 f"and {MAX_ITEMS_PER_CALL}, got {max_items_per_call}"))
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations, reason="INVALID_REQUEST")
    strict = strict_schema(schema)
    defs = {k: strict.pop(k) for k in ("$defs", "definitions") if k in strict}
    return PackSpec(
        model=model.strip(),
        instruction=instruction.strip(),
        item_schema=schema,
        strict_item=strict,
        defs=defs,
        location=loc,
        max_items=max(1, max_items_per_call or settings.pack_max_items),
        max_input_tokens=max(1, settings.pack_max_input_tokens),
        output_tokens_per_item=max(1, settings.pack_output_tokens_per_item),
        min_output_tokens=settings.max_output_tokens,
        no_cache=no_cache,
        extra_headers=dict(extra_headers or {}),
    )


def _item_schema_problem(schema: dict[str, Any]) -> str:
    t = schema.get("type", "object")
    if t != "object" or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        return 'item_json_schema must describe an object with "properties" (one per result field)'
    if "id" in schema["properties"]:
        return 'item_json_schema must not define "id": the item id is added to each result by the service'
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        return f"item_json_schema is not a valid JSON Schema: {e.message[:200]}"
    return ""


def parse_items(pairs: Sequence[tuple[str, str]]) -> tuple[list[PackItem], dict[str, ItemFailure]]:
    """Items from ``(id, input_json)`` pairs: ``(items to answer, failures of items whose input is not JSON, or is
    over 100,000 characters or 32 levels of nesting)``. Raises ``InvalidArgument`` for an empty, over-long (>
    :data:`~services.inference.core.MAX_ID_CHARS` characters) or repeated id (results are mapped back by id)."""
    violations: list[tuple[str, str]] = []
    seen: set[str] = set()
    items: list[PackItem] = []
    failures: dict[str, ItemFailure] = {}
    for i, (item_id, input_json) in enumerate(pairs):
        if not item_id:
            violations.append((f"items[{i}].id", "every item needs an id"))
            continue
        if problem := id_problem(item_id, f"items[{i}].id"):
            violations.append((f"items[{i}].id", problem))
            continue
        if item_id in seen:
            violations.append((f"items[{i}].id", f"id {shown(item_id)} is used by more than one item"))
            continue
        seen.add(item_id)
        if not input_json.strip():
            failures[item_id] = ItemFailure("INVALID_ARGUMENT", f"items[{i}].input_json is required in packing mode")
            continue
        problems: list[tuple[str, str]] = []
        ok, value = parse_json_field(input_json, f"items[{i}].input_json", problems)
        if ok:
            items.append(PackItem(item_id, value))
        else:
            failures[item_id] = ItemFailure("INVALID_ARGUMENT", problems[0][1])
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations, reason="INVALID_REQUEST")
    return items, failures


# --- planning and prompts ----------------------------------------------------------------------------------------


def estimate_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters of prompt (characters / 4, rounded up)."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def plan_packs(items: Sequence[PackItem], spec: PackSpec) -> list[list[PackItem]]:
    """``items`` cut into packs, in order: each at most ``spec.max_items`` items and at most
    ``spec.max_input_tokens`` estimated prompt tokens (an item that alone exceeds the budget gets a pack of its own).
    0 items → no pack; 20 → 1; 21 → 2; 150 → 8 (with the default 20 and small items)."""
    fixed = len(pack_system(spec, spec.max_items)) + len(canonical_json(spec.pack_schema())) + len("<items>\n[\n]\n</items>")
    packs: list[list[PackItem]] = []
    current: list[PackItem] = []
    chars = fixed
    for item in items:
        size = len(item.entry_json()) + 2  # ",\n" between entries
        if current and (len(current) >= spec.max_items or estimate_tokens(chars + size) > spec.max_input_tokens):
            packs.append(current)
            current, chars = [], fixed
        current.append(item)
        chars += size
    if current:
        packs.append(current)
    return packs


def pack_system(spec: PackSpec, count: int) -> str:
    return _PACK_SYSTEM.format(instruction=spec.instruction, count=count)


def pack_request(spec: PackSpec, pack: Sequence[PackItem]) -> CompletionRequest:
    """The completion that answers ``pack``: system = instruction + rules, user = the items between ``<items>``."""
    user = "<items>\n[\n" + ",\n".join(item.entry_json() for item in pack) + "\n]\n</items>"
    return CompletionRequest(
        model=spec.model,
        messages=[ChatMessage("system", pack_system(spec, len(pack))), ChatMessage("user", user)],
        json_schema=spec.pack_schema(),
        schema_name="items",
        location=spec.location,
        max_output_tokens=max(spec.min_output_tokens, spec.output_tokens_per_item * len(pack)),
        extra_headers=dict(spec.extra_headers),
    )


def item_request(spec: PackSpec, item: PackItem) -> CompletionRequest:
    """The completion that answers one item on its own (the fallback): its result fields at the root."""
    return CompletionRequest(
        model=spec.model,
        messages=[
            ChatMessage("system", _ITEM_SYSTEM.format(instruction=spec.instruction)),
            ChatMessage("user", f"<item>\n{item.entry_json()}\n</item>"),
        ],
        json_schema=spec.item_response_schema(),
        schema_name="item",
        location=spec.location,
        max_output_tokens=max(spec.min_output_tokens, spec.output_tokens_per_item),
        extra_headers=dict(spec.extra_headers),
    )


def item_key(provider: str, spec: PackSpec, item: PackItem) -> str:
    """Cache key of one item's result: what determines it — never the pack it was asked in, nor its id."""
    return content_key(
        {
            "v": CACHE_VERSION,
            "kind": "pack_item",
            "prompt": PROMPT_VERSION,
            "provider": provider,
            "model": spec.model,
            "instruction": spec.instruction,
            "item_schema": spec.item_schema,
            "input": item.input,
            "location": spec.location,
            "headers": sorted((k.lower(), v) for k, v in spec.extra_headers.items()),
        }
    )


# --- validation --------------------------------------------------------------------------------------------------


class PackInvalid(Exception):
    """A pack's answer broke the contract; ``str()`` says how (for logs and the items' errors)."""


def check_pack(answer: Any, ids: Sequence[str], validator: jsonschema.protocols.Validator) -> dict[str, dict[str, Any]]:
    """``{id: fields}`` of a valid pack answer (``{"items": [...]}``) for items ``ids``; raises :class:`PackInvalid`
    when ``items`` is not an array, its length is not ``len(ids)``, an id is missing, repeated or not asked for, or
    an element does not match the element schema."""
    elements = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(elements, list):
        raise PackInvalid(f'"items" is not an array (got {type(elements).__name__})')
    if len(elements) != len(ids):
        raise PackInvalid(f"{len(elements)} results for {len(ids)} items")
    out: dict[str, dict[str, Any]] = {}
    wanted = set(ids)
    for i, element in enumerate(elements):
        errors = sorted(validator.iter_errors(element), key=lambda e: list(e.absolute_path))
        if errors:
            raise PackInvalid(f"items[{i}] does not match the item schema: {_error_text(errors[0])}")
        item_id = element["id"]
        if item_id not in wanted:
            raise PackInvalid(f"items[{i}] has id {item_id!r}, which was not asked for")
        if item_id in out:
            raise PackInvalid(f"id {item_id!r} answered more than once")
        out[item_id] = {k: v for k, v in element.items() if k != "id"}
    missing = [i for i in ids if i not in out]
    if missing:  # unreachable with a matching count and no duplicates/unknowns; kept as the contract's last word
        raise PackInvalid(f"ids missing from the answer: {', '.join(missing[:5])}")
    return out


def _error_text(e: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in e.absolute_path)
    return f"{where}: {e.message}" if where else e.message


# --- running -----------------------------------------------------------------------------------------------------


@dataclass
class PackReport:
    """Outcome of one packing request.

    ``outcomes``: item id → answer (``CompletionResult``; ``cached`` for hits) or ``ItemFailure``.
    ``llm_calls``: provider calls made (packs + retries + per-item fallbacks, failed calls included);
    ``packs`` / ``retries`` / ``fallback_calls`` split it. ``cache_hits``: items answered without a call.
    ``cost_usd``: USD of every answer received; ``input_tokens`` / ``output_tokens``: tokens billed.
    """

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    llm_calls: int = 0
    packs: int = 0
    retries: int = 0
    fallback_calls: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def bill(self, result: CompletionResult) -> None:
        self.cost_usd += result.cost_usd
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens


class Packer:
    """Runs packing requests on the providers of ``core`` — the same provider objects (client and budget) that serve
    ``Complete`` — caching items one by one in ``core.cache`` (none: no cache)."""

    def __init__(self, core: Inference) -> None:
        self.core = core
        self.settings = core.settings
        self.cache = core.cache

    def provider_for(self, spec: PackSpec) -> Provider:
        """The provider that serves ``spec.model``; ``InvalidArgument`` for a scraper (Bright Data answers prompts
        as a browser user would, with no structured output to pack into), ``Unimplemented`` when not built here."""
        route = self.core.route(spec.model)
        if route.provider.capabilities.supports_batching:
            raise InvalidArgument(
                f"model {spec.model!r} routes to {route.provider.name}, which cannot answer packed structured "
                "requests; use an API model (OpenAI, Anthropic, Perplexity or an OpenAI-compatible endpoint)",
                field="model",
            )
        return self.core.provider_for(route)

    async def run(self, spec: PackSpec, items: Sequence[PackItem], *, deadline: Deadline | None = None) -> PackReport:
        """Answer every item of ``items``. Raises only for the request as a whole (its model, see
        :meth:`provider_for`); an item's trouble becomes that item's ``ItemFailure``."""
        report = PackReport()
        raw = unwrap(self.provider_for(spec))  # items are cached here, one by one, not per call
        keys = {item.id: item_key(raw.name, spec, item) for item in items}
        hits = {} if spec.no_cache or self.cache is None else await self.cache.get_many(keys.values())
        todo: list[PackItem] = []
        followers: dict[str, list[str]] = {}  # key → ids answered by the first item with that key
        for item in items:
            key = keys[item.id]
            if key in hits:
                report.outcomes[item.id] = as_hit(hits[key])
                report.cache_hits += 1
            elif key in followers:
                followers[key].append(item.id)
            else:
                followers[key] = []
                todo.append(item)
        run = _Run(self, spec, raw, keys, report, deadline)
        async with asyncio.TaskGroup() as tg:
            for pack in plan_packs(todo, spec):
                tg.create_task(run.pack(pack))
        for item in todo:  # repeated inputs share their first item's answer, at no extra cost
            outcome = report.outcomes[item.id]
            for other in followers[keys[item.id]]:
                if isinstance(outcome, CompletionResult):
                    report.outcomes[other] = as_hit(outcome)
                    report.cache_hits += 1
                else:
                    report.outcomes[other] = outcome
        return report


class _Run:
    """One request's packs: shared report, keys and validators."""

    def __init__(
        self, packer: Packer, spec: PackSpec, provider: Provider, keys: dict[str, str], report: PackReport,
        deadline: Deadline | None,
    ) -> None:
        self.packer = packer
        self.spec = spec
        self.provider = provider
        self.keys = keys
        self.report = report
        self.deadline = deadline
        self.element_validator = jsonschema.Draft202012Validator({**spec.element_schema(), **spec.defs})
        self.item_validator = jsonschema.Draft202012Validator(spec.item_response_schema())

    async def pack(self, pack: list[PackItem]) -> None:
        ids = [item.id for item in pack]
        self.report.packs += 1
        problem = ""
        for attempt in (1, 2):
            if attempt == 2:
                self.report.retries += 1
            try:
                result = await self._call(pack_request(self.spec, pack))
                fields = check_pack(json.loads(result.json_text or "null"), ids, self.element_validator)
            except PackInvalid as e:
                problem = f"invalid packed answer: {e}"
                log.warning("pack_invalid", items=len(pack), attempt=attempt, problem=str(e))
                continue
            except VantageError as e:
                problem = e.message
                log.warning("pack_failed", items=len(pack), attempt=attempt, code=e.code.name, reason=e.reason)
                if isinstance(e, InvalidArgument):
                    break  # the same request would fail the same way: straight to one call per item
                if attempt == 1 and isinstance(e, RetryableError) and e.retry_after:
                    await asyncio.sleep(min(e.retry_after, self.packer.settings.retry_max_seconds, self._left()))
                continue
            except Exception as e:  # a bug must fail this pack's calls, not the request
                problem = f"internal error: {type(e).__name__}"
                log.exception("pack_internal_error", items=len(pack))
                continue
            await self._accept(pack, fields, result)
            return
        log.info("pack_fallback", items=len(pack), problem=problem)
        async with asyncio.TaskGroup() as tg:
            for item in pack:
                tg.create_task(self.single(item))

    async def single(self, item: PackItem) -> None:
        """One item on its own (after its pack failed twice)."""
        self.report.fallback_calls += 1
        try:
            result = await self._call(item_request(self.spec, item))
            fields = json.loads(result.json_text or "null")
            errors = sorted(self.item_validator.iter_errors(fields), key=lambda e: list(e.absolute_path))
            if errors:
                self.report.outcomes[item.id] = ItemFailure(
                    "UNAVAILABLE",
                    f"the model's answer does not match the item schema: {_error_text(errors[0])}",
                    provider=self.provider.name,
                )
                return
        except VantageError as e:
            self.report.outcomes[item.id] = failure_from(e, provider=self.provider.name)
            return
        except Exception as e:  # a bug must fail its item, not the request
            log.exception("pack_item_internal_error")
            self.report.outcomes[item.id] = ItemFailure(
                "INTERNAL", f"internal error: {type(e).__name__}", provider=self.provider.name
            )
            return
        answer = _item_result(result, fields, result.input_tokens, result.output_tokens, result.cost_usd)
        self.report.outcomes[item.id] = answer
        await self._store([(item, answer)])

    async def _call(self, req: CompletionRequest) -> CompletionResult:
        self.report.llm_calls += 1
        result = await self.provider.complete(req, deadline=self.deadline)
        self.report.bill(result)
        return result

    async def _accept(self, pack: list[PackItem], fields: dict[str, dict[str, Any]], result: CompletionResult) -> None:
        n = len(pack)
        in_q, in_r = divmod(result.input_tokens, n)
        out_q, out_r = divmod(result.output_tokens, n)
        answers = []
        for i, item in enumerate(pack):
            answer = _item_result(
                result, fields[item.id], in_q + (i < in_r), out_q + (i < out_r), result.cost_usd / n
            )
            self.report.outcomes[item.id] = answer
            answers.append((item, answer))
        await self._store(answers)

    async def _store(self, answers: list[tuple[PackItem, CompletionResult]]) -> None:
        cache = self.packer.cache
        if cache is None:
            return
        await cache.put_many([
            Entry(self.keys[item.id], self.provider.name, self.spec.model, result_to_json(answer))
            for item, answer in answers
        ])

    def _left(self) -> float:
        return self.deadline.remaining() if self.deadline is not None else float("inf")


def _item_result(
    call: CompletionResult, fields: Any, input_tokens: int, output_tokens: int, cost_usd: float
) -> CompletionResult:
    text = canonical_json(fields)
    return CompletionResult(
        text=text,
        json_text=text,
        provider=call.provider,
        model=call.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
        finish_reason=call.finish_reason,
    )
