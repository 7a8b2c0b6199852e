"""The inference core: validate a request, route it, call its provider. No gRPC, no protobuf.

:class:`Inference` holds the routing table and the built providers (one long-lived client and budget each, made by
``services.inference.server.build``). A model that routes to a provider this process does not have fails with
``Unimplemented`` naming the provider, so callers can tell "not built here" from "bad model name".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
from shared.config import Settings
from shared.errors import InvalidArgument, Unimplemented
from shared.grpc_client import Deadline


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
) -> InferenceRequest:
    """A validated :class:`InferenceRequest` from wire-level fields.

    Raises one ``InvalidArgument`` listing every problem as a field violation: ``model`` (empty), ``messages``
    (none), ``messages[i].role`` (not system|user|assistant), ``json_schema`` (not a JSON object),
    ``location`` (not a 2-letter ISO 3166-1 code), ``max_output_tokens`` (negative).
    """
    violations: list[tuple[str, str]] = []
    if not model.strip():
        violations.append(("model", "model is required"))
    msgs = [ChatMessage(role, content) for role, content in messages]
    if not msgs:
        violations.append(("messages", "at least one message is required"))
    for i, m in enumerate(msgs):
        if m.role not in ROLES:
            violations.append((f"messages[{i}].role", f"role must be one of {', '.join(ROLES)}, not {m.role!r}"))
    schema: dict[str, Any] | None = None
    if json_schema.strip():
        try:
            parsed = json.loads(json_schema)
        except ValueError as e:
            violations.append(("json_schema", f"json_schema is not valid JSON: {e}"))
        else:
            if isinstance(parsed, dict):
                schema = parsed
            else:
                violations.append(("json_schema", "json_schema must be a JSON object (a JSON Schema)"))
    loc = location.strip().upper()
    if loc and not (len(loc) == 2 and loc.isascii() and loc.isalpha()):
        violations.append(("location", f"location must be an ISO 3166-1 alpha-2 country code, not {location!r}"))
    if max_output_tokens < 0:
        violations.append(("max_output_tokens", "max_output_tokens must be ≥ 0 (0 = the configured default)"))
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations, reason="INVALID_REQUEST")
    return InferenceRequest(
        model=model.strip(),
        messages=msgs,
        json_schema=schema,
        schema_name=schema_name.strip() or "result",
        location=loc,
        web_search=web_search,
        max_output_tokens=max_output_tokens,
        idempotency_key=idempotency_key,
        extra_headers=dict(extra_headers or {}),
        no_cache=no_cache,
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
        settings: Settings,
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
