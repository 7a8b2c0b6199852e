"""The inference core: validate a request, route it, call its provider. No gRPC, no protobuf.

:class:`Inference` holds the routing table and the built providers (one long-lived client and budget each, made by
``services.inference.server.build``). A model that routes to a provider this process does not have fails with
``Unimplemented`` naming the provider, so callers can tell "not built here" from "bad model name".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pycountry

from services.inference.cache import ResponseCache, wrap_providers
from services.inference.pricing import check_lifecycle
from services.inference.providers import (
    ROLES,
    ChatMessage,
    CompletionRequest,
    CompletionResult,
    Provider,
)
from services.inference.router import ProviderSpec, Route, Router
from shared.config import InferenceSettings
from shared.errors import InvalidArgument, Unimplemented, bounded
from shared.grpc_client import Deadline
from shared.text import MAX_IDEMPOTENCY_KEY_CHARS, idempotency_key_ok

# --- request limits (README "Request limits"; the same bounds are in inference.proto's comments) ----------------

#: Model names: 1-200 characters of letters, digits and ``. _ - : / @ +`` — enough for every provider's names
#: ("gpt-4.1", "claude-sonnet-4-6", "ft:gpt-4o-mini:org:x:id", vLLM/Ollama "meta-llama/Llama-3-8B", "llama3:8b"),
#: and never a control character, a space or a quote.
MAX_MODEL_CHARS = 200
_MODEL = re.compile(r"[A-Za-z0-9._:/@+-]+")
#: Messages of one completion request.
MAX_MESSAGES = 1_000
#: Characters of a JSON text field (json_schema, item_json_schema, input_json) and its nesting (arrays + objects).
MAX_JSON_CHARS = 100_000
MAX_JSON_DEPTH = 32
#: OpenAI ``response_format.json_schema.name``: "a-z, A-Z, 0-9, or underscores and dashes, with a maximum length
#: of 64" (openai-python ``ResponseFormatJSONSchema.JSONSchema.name``).
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Largest max_output_tokens accepted (no listed model produces more: Claude 3.7 Sonnet's 128k beta is the top).
MAX_OUTPUT_TOKENS_LIMIT = 128_000
#: Longest response-cache scope (an evaluation sends "<run id>:<sample>", 40 characters).
MAX_CACHE_SCOPE_CHARS = 255
#: Caller ids of stream / batch items and resume members.
MAX_ID_CHARS = 256

_JSON_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')


def shown(value: str) -> str:
    """Client input as an error message quotes it: ``repr`` of at most 200 characters (:func:`shared.errors.bounded`)."""
    return repr(bounded(value))


def model_problem(model: str) -> str:
    """Why ``model`` (already stripped) is not an acceptable model name, or "" when it is (empty is the caller's
    concern: it reports "required")."""
    if len(model) > MAX_MODEL_CHARS:
        return f"model is {len(model)} characters; at most {MAX_MODEL_CHARS} are allowed"
    if model and not _MODEL.fullmatch(model):
        return (f"model {shown(model)} is not a model name: letters, digits and . _ - : / @ + only "
                f"(≤ {MAX_MODEL_CHARS} characters)")
    return ""


def check_model(model: str, field: str = "model") -> str:
    """``model`` stripped; ``InvalidArgument`` (``field``) when it is empty or not a model name."""
    name = model.strip()
    problem = "model is required" if not name else model_problem(name)
    if problem:
        raise InvalidArgument(problem, field=field, reason="INVALID_MODEL")
    return name


def location_problem(location: str, field: str = "location") -> tuple[str, str]:
    """``(upper-case code, "")`` for an empty location or an assigned ISO 3166-1 alpha-2 code (pycountry's copy of
    the ISO 3166 Maintenance Agency list: "US", "gb"), else ``("", why)``."""
    loc = location.strip().upper()
    if loc and not (len(loc) == 2 and loc.isascii() and loc.isalpha() and pycountry.countries.get(alpha_2=loc)):
        return "", f"{field} must be an ISO 3166-1 alpha-2 country code (e.g. US, GB), not {shown(location)}"
    return loc, ""


def id_problem(value: str, field: str) -> str:
    """Why caller id ``value`` is not acceptable (empty, longer than :data:`MAX_ID_CHARS`), or ""."""
    if not value:
        return f"{field} is required"
    if len(value) > MAX_ID_CHARS:
        return f"{field} is {len(value)} characters; at most {MAX_ID_CHARS} are allowed"
    return ""


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON ``text`` (brackets inside strings ignored); a linear scan, so
    that a 3,000-deep document is refused before the recursive parser (and ``RecursionError``) sees it."""
    depth = deepest = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def parse_json_field(
    text: str, field: str, violations: list[tuple[str, str]], *, max_chars: int = MAX_JSON_CHARS
) -> tuple[bool, Any]:
    """``(True, value)`` for JSON ``text`` within :data:`MAX_JSON_CHARS` and :data:`MAX_JSON_DEPTH`; otherwise
    ``(False, None)`` with the problem appended to ``violations`` under ``field``."""
    if len(text) > max_chars:
        violations.append((field, f"{field} is {len(text)} characters; at most {max_chars} are allowed"))
        return False, None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        violations.append((field, f"{field} is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"))
        return False, None
    try:
        return True, json.loads(text)
    except ValueError as e:  # JSONDecodeError, and int() of a number over Python's digit limit
        violations.append((field, f"{field} is not valid JSON: {str(e)[:200]}"))
        return False, None


@dataclass
class InferenceRequest(CompletionRequest):
    """A request as the service handles it: the provider's fields plus ``no_cache`` (skip the response-cache lookup;
    the fresh answer still refreshes the entry). Providers see a plain :class:`CompletionRequest`."""

    no_cache: bool = False


def build_request(
    *,
    model: str,
    messages: Iterable[tuple[str, str]],
    json_schema: str = "",
    schema_name: str = "",
    location: str = "",
    web_search: bool = False,
    max_output_tokens: int = 0,
    idempotency_key: str = "",
    extra_headers: Mapping[str, str] | None = None,
    no_cache: bool = False,
    cache_scope: str = "",
    max_prompt_chars: int = 2_000_000,
) -> InferenceRequest:
    """A validated :class:`InferenceRequest` from wire-level fields.

    Raises one ``InvalidArgument`` listing every problem as a field violation: ``model`` (empty, over
    :data:`MAX_MODEL_CHARS`, characters outside ``A-Za-z0-9._:/@+-``), ``messages`` (none, more than
    :data:`MAX_MESSAGES`, more than ``max_prompt_chars`` characters of content in all), ``messages[i].role`` (not
    system|user|assistant), ``json_schema`` (over :data:`MAX_JSON_CHARS`, nested deeper than
    :data:`MAX_JSON_DEPTH`, not a JSON object), ``schema_name`` (not 1-64 of ``A-Za-z0-9_-``), ``location`` (not an
    assigned ISO 3166-1 alpha-2 code, :func:`location_problem`), ``max_output_tokens`` (outside
    0..:data:`MAX_OUTPUT_TOKENS_LIMIT`), ``idempotency_key`` (over :data:`~shared.text.MAX_IDEMPOTENCY_KEY_CHARS`, not visible ASCII),
    ``cache_scope`` (over :data:`MAX_CACHE_SCOPE_CHARS`).
    """
    violations: list[tuple[str, str]] = []
    name = model.strip()
    if not name:
        violations.append(("model", "model is required"))
    elif problem := model_problem(name):
        violations.append(("model", problem))
    pairs = list(messages)
    msgs: list[ChatMessage] = []
    if not pairs:
        violations.append(("messages", "at least one message is required"))
    elif len(pairs) > MAX_MESSAGES:
        violations.append(("messages", f"{len(pairs)} messages; at most {MAX_MESSAGES} are allowed"))
    else:
        msgs = [ChatMessage(role, content) for role, content in pairs]
        for i, m in enumerate(msgs):
            if m.role not in ROLES:
                violations.append(
                    (f"messages[{i}].role", f"role must be one of {', '.join(ROLES)}, not {shown(m.role)}")
                )
        chars = sum(len(m.content) for m in msgs)
        if chars > max_prompt_chars:
            violations.append(
                ("messages", f"the messages hold {chars} characters; at most {max_prompt_chars} are allowed")
            )
    schema: dict[str, Any] | None = None
    if json_schema.strip():
        ok, parsed = parse_json_field(json_schema, "json_schema", violations)
        if ok:
            if isinstance(parsed, dict):
                schema = parsed
            else:
                violations.append(("json_schema", "json_schema must be a JSON object (a JSON Schema)"))
    sname = schema_name.strip()
    if sname and not _SCHEMA_NAME.fullmatch(sname):
        violations.append(
            ("schema_name", f"schema_name {shown(sname)} must be 1-64 characters of a-z, A-Z, 0-9, _ and -")
        )
    loc, problem = location_problem(location)
    if problem:
        violations.append(("location", problem))
    if not 0 <= max_output_tokens <= MAX_OUTPUT_TOKENS_LIMIT:
        violations.append(("max_output_tokens", f"max_output_tokens must be between 0 (the configured default) "
                                                f"and {MAX_OUTPUT_TOKENS_LIMIT}, got {max_output_tokens}"))
    if not idempotency_key_ok(idempotency_key):
        violations.append(("idempotency_key", f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} "
                                              "visible ASCII characters (it is sent as an HTTP header)"))
    if len(cache_scope) > MAX_CACHE_SCOPE_CHARS:
        violations.append(("cache_scope", f"cache_scope must be at most {MAX_CACHE_SCOPE_CHARS} characters, got "
                                          f"{len(cache_scope)}"))
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations, reason="INVALID_REQUEST")
    return InferenceRequest(
        model=name,
        messages=msgs,
        json_schema=schema,
        schema_name=sname or "result",
        location=loc,
        web_search=web_search,
        max_output_tokens=max_output_tokens,
        idempotency_key=idempotency_key,
        extra_headers=dict(extra_headers or {}),
        no_cache=no_cache,
        cache_scope=cache_scope,
    )


@dataclass(frozen=True)
class ProviderStatus:
    """A provider as ``ListModels`` shows it: its spec and whether this process can call it."""

    spec: ProviderSpec
    available: bool


class Inference:
    """Routing + providers. ``providers`` maps provider id → built provider; ids missing from it are not built.

    With a ``cache`` every provider's ``complete`` goes through it (:func:`services.inference.cache.wrap_providers`):
    ``Complete``, the single calls of ``CompleteStream`` / explicit ``CompleteBatch``, and a Bright Data
    ``Complete``; the items of Bright Data *batches* are looked up and stored per item by the stream engine
    (:mod:`services.inference.streaming`), under the same keys. The cache's lifetime is the caller's (``build``)."""

    def __init__(
        self,
        settings: InferenceSettings,
        router: Router,
        providers: Mapping[str, Provider],
        cache: ResponseCache | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.cache = cache
        self.providers = wrap_providers(providers, cache, settings)

    def route(self, model: str) -> Route:
        route = self.router.route(model)
        check_lifecycle(self.settings, model)  # model catalogue (#18): a retired model → FAILED_PRECONDITION
        return route

    def provider_statuses(self) -> list[ProviderStatus]:
        """Every known provider with ``available`` = built here and callable (has a key or the sandbox)."""
        out = []
        for pid, spec in self.router.providers.items():
            p = self.providers.get(pid)
            out.append(ProviderStatus(spec, bool(p is not None and p.available)))
        return out

    def provider_for(self, route: Route) -> Provider:
        """The built provider of ``route``; ``Unimplemented`` when this service does not have it."""
        p = self.providers.get(route.provider.id)
        if p is None:
            raise Unimplemented(
                f"provider {route.provider.id} ({route.provider.name}) is not available yet: model "
                f"{route.model!r} routes to it ({route.rule.label}) but this inference service does not "
                "implement it",
                provider=route.provider.id,
                reason="PROVIDER_NOT_BUILT",
            )
        return p

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        """Route ``req`` and answer it with its provider before ``deadline``."""
        route = self.route(req.model)
        provider = self.provider_for(route)
        return await provider.complete(req, deadline=deadline)

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()
