"""Perplexity's own Sonar API (``sonar``, ``sonar-pro``, …) through the OpenAI SDK (providers.md §5).

``AsyncOpenAI(base_url=settings.base_url("perplexity"))`` — Perplexity serves ``/chat/completions`` at its root,
without ``/v1`` (§5.1). Sonar always searches the web; a location goes in
``web_search_options.user_location.country`` (``extra_body``). The answer's top-level ``citations`` (URLs, indexed
by the ``[n]`` markers of the text) and ``search_results`` (``{title, url, date, snippet}``) become citations:
the cited URLs first, titled from ``search_results``, then the other search results.

Cost: Perplexity bills tokens plus a request fee ($5–12 / 1K requests, §5.2) and reports the total in
``usage.cost.total_cost``; that figure is used when present, otherwise tokens × ``settings.token_prices(model)``.
"""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI

from services.inference import pricing
from services.inference.providers import Capabilities, Citation, CompletionRequest, CompletionResult
from services.inference.providers.errors import (
    SdkProvider,
    budgeted_call,
    request_tokens,
)
from services.inference.providers.openai import dedupe, parse_json_answer
from shared.errors import FailedPrecondition, Unavailable
from shared.grpc_client import Deadline


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK model that may be declared or arrive as an extra (Perplexity's additions)."""
    value = getattr(obj, name, None)
    if value is None and isinstance(getattr(obj, "model_extra", None), dict):
        value = obj.model_extra.get(name)
    return value


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def perplexity_citations(resp: Any) -> list[Citation]:
    """Cited URLs (titled from ``search_results``) then the remaining search results, each URL once."""
    results = _get(resp, "search_results") or []
    titles = {str(_field(r, "url")): str(_field(r, "title") or "") for r in results if _field(r, "url")}
    cited = [Citation(str(u), titles.get(str(u), "")) for u in (_get(resp, "citations") or []) if u]
    others = [Citation(u, t) for u, t in titles.items()]
    return dedupe(cited + others)


class PerplexityProvider(SdkProvider):
    """:class:`~services.inference.providers.Provider` for the Sonar models."""

    name = "perplexity"
    label = "Perplexity"
    key_env = "PERPLEXITY_API_KEY"
    capabilities = Capabilities(supports_web_search=True, supports_locations=True)
    sdk_client = AsyncOpenAI
    sdk_module = openai

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        if self._client is None:
            raise FailedPrecondition(f"{self.key_env} is not set", provider=self.name, reason="NO_API_KEY")
        client = self._client
        kwargs: dict[str, Any] = {
            "model": req.model,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            "max_tokens": req.max_output_tokens or self._settings.max_output_tokens,
        }
        if req.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name or "result", "schema": req.json_schema},
            }
        if req.location:
            kwargs["extra_body"] = {"web_search_options": {"user_location": {"country": req.location}}}
        if req.extra_headers:
            kwargs["extra_headers"] = req.extra_headers
        return await budgeted_call(
            provider=self.name,
            label=self.label,
            key_env=self.key_env,
            model=req.model,
            guard=self.guard,
            tokens=request_tokens((m.content for m in req.messages), int(kwargs["max_tokens"])),
            deadline=deadline or Deadline(self._settings.rpc_timeout_seconds),
            max_timeout=self._settings.provider_timeout_seconds,
            call=lambda t: client.chat.completions.create(**kwargs, timeout=t),
            to_result=lambda resp: self._result(req, resp),
        )

    def _result(self, req: CompletionRequest, resp: Any) -> CompletionResult:
        if not getattr(resp, "choices", None):
            raise Unavailable("Perplexity answered without choices", provider=self.name, reason="malformed_response")
        choice = resp.choices[0]
        content = choice.message.content or ""
        finish = choice.finish_reason or ""
        usage = resp.usage
        in_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
        out_tok = int(getattr(usage, "completion_tokens", 0) or 0)
        reported = _field(_get(usage, "cost"), "total_cost") if usage is not None else None
        cost = (
            float(reported)
            if isinstance(reported, int | float)
            else pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok)
        )
        return CompletionResult(
            text=content,
            json_text=parse_json_answer(content, finish, self.name) if req.json_schema is not None else "",
            provider=self.name,
            model=resp.model or req.model,
            citations=perplexity_citations(resp),
            input_tokens=in_tok,
            output_tokens=out_tok,
            cost_usd=cost,
            finish_reason=finish,
            # web_search_calls stays 0: Sonar's searches are paid for by its request fee, already in cost_usd.
        )
