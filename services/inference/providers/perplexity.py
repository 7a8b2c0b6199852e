"""Perplexity through its Agent API (``POST {root}/v1/agent``, alias ``/v1/responses``), via the OpenAI SDK.

Perplexity retired Sonar Chat Completions (``/chat/completions``) on 2026-09-27; the Agent API replaces it
(docs.perplexity.ai/docs/agent-api/migrate-from-sonar/overview; providers-2026-12.md). Its request and response are
Responses-shaped, so ``AsyncOpenAI(base_url=f"{root}/v1").responses.create(...)`` reaches it (hex/llm-perplexity
PR #27 does exactly this); the fields the OpenAI SDK does not declare travel in ``extra_body`` and come back as the
models' extras. Field names follow the official SDK's types (perplexityai/perplexity-py 0.38.0,
``types/response_create_params.py``, ``output_item.py``, ``responses_usage.py``).

Model selection (:func:`agent_model`): a preset — ``pplx:<preset>`` (``fast``, ``low``, ``medium``, ``high``,
``xhigh``, ``wide-research``) or a legacy Sonar id mapped to its preset (``sonar`` → ``fast``, ``sonar-pro`` →
``low``, ``sonar-reasoning[-pro]`` → ``medium``, ``sonar-deep-research`` → ``high``: hex/llm-perplexity PR #27,
vercel/ai issue #18988) — or a direct Agent API model id, ``perplexity/<model>`` (e.g. ``perplexity/sonar``).

Every call offers the ``web_search`` tool and **forces** it (``tool_choice: {"type": "web_search"}``): the Agent
API searches only when the model decides to unless the tool is forced, and an offered-but-not-forced tool often
gives no search and no sources (theopenco/llmgateway PR #4146, "verified live"). A location goes in the tool's
``user_location.country`` (perplexity-py ``ToolWebSearchToolUserLocation``: ISO 3166-1 alpha-2). A JSON Schema goes
in ``response_format: {type: "json_schema", json_schema: {name, schema}}`` (perplexity-py ``ResponseFormat``).

Answer: the ``output_text`` of the ``message`` items. Citations come from the ``search_results`` output items —
one per search, so every item is read (mvanhorn/last30days-skill PR #913) — the results the text cites with
``[n]`` (their ``id``) first, then the other results, each URL once. ``search_queries`` are the items' ``queries``.

Cost, into the ledger: ``usage.cost.total_cost`` (USD; tokens plus per-search billing, vercel/ai PR #18991) when
present, else tokens × the model's catalogue prices + searches × its catalogue fee per search ($5 / 1K
``web_search`` calls, docs.perplexity.ai/docs/grounded-llm/responses/tools/overview). ``web_search_calls`` =
``usage.tool_calls_details.web_search.invocation``, else the number of ``search_results`` items.
A response whose ``status`` is not ``completed`` (``failed``, ``cancelled``, …) is never an answer.
"""

from __future__ import annotations

import re
from typing import Any

import openai
from openai import AsyncOpenAI

from services.inference import pricing
from services.inference.providers import Capabilities, Citation, CompletionRequest, CompletionResult
from services.inference.providers.errors import (
    SdkProvider,
    budgeted_call,
    http_client_for,
    request_tokens,
)
from services.inference.providers.openai import dedupe, parse_json_answer
from shared.config import InferenceSettings
from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.grpc_client import Deadline
from shared.resilience import ProviderGuard

#: Agent API presets (perplexity-py ``preset``; hex/llm-perplexity PR #27; maximhq/bifrost #7236).
PRESETS = ("fast", "low", "medium", "high", "xhigh", "wide-research")
#: Legacy Sonar ids → the preset that replaces them (hex/llm-perplexity PR #27; vercel/ai issue #18988).
SONAR_PRESETS = {
    "sonar": "fast",
    "sonar-pro": "low",
    "sonar-reasoning": "medium",
    "sonar-reasoning-pro": "medium",
    "sonar-deep-research": "high",
}
#: The preset form of a model name in our routing table: ``pplx:fast``.
PRESET_PREFIX = "pplx:"
#: The ``web_search`` tool forced on every call.
FORCE_WEB_SEARCH: dict[str, str] = {"type": "web_search"}
_MARKER = re.compile(r"\[(\d{1,4})\]")


def agent_model(model: str) -> dict[str, str]:
    """How ``model`` selects an Agent API model: ``{"preset": ...}`` or ``{"model": ...}``.

    Raises ``InvalidArgument(field="model")`` for an unknown preset or Sonar id (never sent: the Agent API would
    refuse it with a 400 after a round trip).
    """
    name = model.strip().lower()
    if name.startswith(PRESET_PREFIX):
        preset = name[len(PRESET_PREFIX):]
        if preset not in PRESETS:
            raise InvalidArgument(f"unknown Perplexity preset {preset!r}; known: {', '.join(PRESETS)}",
                                  field="model", reason="UNKNOWN_MODEL", provider="perplexity")
        return {"preset": preset}
    if "/" in name:
        return {"model": model.strip()}
    if name in SONAR_PRESETS:
        return {"preset": SONAR_PRESETS[name]}
    raise InvalidArgument(
        f"Perplexity model {model!r} is not a preset (pplx:fast, ...), a Sonar id ({', '.join(SONAR_PRESETS)}) or "
        "an Agent API model id (provider/model, e.g. perplexity/sonar)",
        field="model", reason="UNKNOWN_MODEL", provider="perplexity",
    )


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a dict or of an SDK model (declared, or kept as an extra: Perplexity's additions)."""
    if isinstance(obj, dict):
        value = obj.get(name)
    else:
        value = getattr(obj, name, None)
        if value is None and isinstance(getattr(obj, "model_extra", None), dict):
            value = obj.model_extra.get(name)
    return default if value is None else value


def agent_answer(resp: Any) -> tuple[str, list[Citation], list[str], int]:
    """(text, citations, search queries, search_results items) of an Agent API response: cited results (by the
    ``[n]`` markers naming result ids) first, then the other results, each URL once."""
    texts: list[str] = []
    results: list[tuple[int | None, Citation]] = []
    queries: list[str] = []
    items = 0
    for item in _field(resp, "output", []):
        kind = _field(item, "type", "")
        if kind == "search_results":
            items += 1
            queries += [str(q) for q in _field(item, "queries", []) if q and str(q) not in queries]
            for r in _field(item, "results", []):
                url = _field(r, "url")
                if url:
                    rid = _field(r, "id")
                    results.append((rid if isinstance(rid, int) else None, Citation(str(url), str(_field(r, "title", "")))))
        elif kind == "message":
            for part in _field(item, "content", []):
                if _field(part, "type") == "output_text":
                    texts.append(str(_field(part, "text", "")))
    text = "".join(texts)
    by_id = {rid: c for rid, c in results if rid is not None}
    cited = [by_id[n] for n in (int(m) for m in _MARKER.findall(text)) if n in by_id]
    return text, dedupe(cited + [c for _, c in results]), queries, items


class PerplexityProvider(SdkProvider):
    """:class:`~services.inference.providers.Provider` for Perplexity's Agent API (``sonar*``, ``pplx:*``,
    ``perplexity/*`` model names)."""

    name = "perplexity"
    label = "Perplexity"
    key_env = "PERPLEXITY_API_KEY"
    capabilities = Capabilities(supports_web_search=True, supports_locations=True)
    sdk_client = AsyncOpenAI
    sdk_module = openai

    @classmethod
    def make_client(cls, settings: InferenceSettings, key: str, guard: ProviderGuard) -> Any:
        """``AsyncOpenAI`` at ``{settings.base_url("perplexity")}/v1`` (the Agent API's root; ``responses.create``
        posts to ``/v1/responses``, the documented alias of ``/v1/agent``)."""
        root = settings.base_url("perplexity").rstrip("/")
        return cls.sdk_client(
            base_url=root if root.endswith("/v1") else f"{root}/v1",
            api_key=key,
            max_retries=0,
            timeout=settings.provider_timeout_seconds,
            http_client=http_client_for(cls.sdk_module, guard),
        )

    def request_kwargs(self, req: CompletionRequest) -> dict[str, Any]:
        """The ``responses.create`` arguments for ``req`` (without timeout): the forced ``web_search`` tool (located
        when ``req.location`` is set), instructions from the system messages, the conversation as input items."""
        tool: dict[str, Any] = {"type": "web_search"}
        if req.location:
            tool["user_location"] = {"country": req.location}
        extra: dict[str, Any] = dict(agent_model(req.model))
        if req.json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name or "result", "schema": req.json_schema},
            }
        kwargs: dict[str, Any] = {
            "input": [{"role": m.role, "content": m.content} for m in req.messages if m.role != "system"],
            "tools": [tool],
            "tool_choice": FORCE_WEB_SEARCH,
            "max_output_tokens": req.max_output_tokens or self._settings.max_output_tokens,
        }
        if "model" in extra:
            kwargs["model"] = extra.pop("model")
        kwargs["extra_body"] = extra
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        if system:
            kwargs["instructions"] = system
        if req.extra_headers:
            kwargs["extra_headers"] = req.extra_headers
        return kwargs

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        if self._client is None:
            raise FailedPrecondition(f"{self.key_env} is not set", provider=self.name, reason="NO_API_KEY")
        client = self._client
        kwargs = self.request_kwargs(req)
        return await budgeted_call(
            provider=self.name,
            label=self.label,
            key_env=self.key_env,
            model=req.model,
            guard=self.guard,
            tokens=request_tokens((m.content for m in req.messages), int(kwargs["max_output_tokens"])),
            deadline=deadline or Deadline(self._settings.rpc_timeout_seconds),
            max_timeout=self._settings.provider_timeout_seconds,
            call=lambda t: client.responses.create(**kwargs, timeout=t),
            to_result=lambda resp: self.result(req, resp),
        )

    def result(self, req: CompletionRequest, resp: Any) -> CompletionResult:
        """The answer in ``resp`` (an Agent API response, SDK model or dict). Raises ``Unavailable`` for a response
        that did not complete (``status`` ≠ ``completed``) or carries no text."""
        status = str(_field(resp, "status", ""))
        if status != "completed":
            err = _field(resp, "error")
            detail = f": {_field(err, 'message', '')}" if err else ""
            raise Unavailable(f"Perplexity's response ended {status or 'without a status'}{detail}",
                              provider=self.name, reason="PROVIDER_RESPONSE_FAILED",
                              metadata={"provider_error_code": str(_field(err, "code", "") or status)})
        text, citations, queries, items = agent_answer(resp)
        if not text:
            raise Unavailable("Perplexity answered without text", provider=self.name, reason="malformed_response")
        usage = _field(resp, "usage")
        in_tok = int(_field(usage, "input_tokens", 0))
        out_tok = int(_field(usage, "output_tokens", 0))
        invoked = _field(_field(_field(usage, "tool_calls_details", {}), "web_search", {}), "invocation")
        searches = int(invoked) if isinstance(invoked, int) else items
        reported = _field(_field(usage, "cost"), "total_cost")
        cost = (
            float(reported)
            if isinstance(reported, int | float)
            else pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok)
            + pricing.web_search_cost_usd(self._settings, searches, req.model)
        )
        return CompletionResult(
            text=text,
            json_text=parse_json_answer(text, "stop", self.name) if req.json_schema is not None else "",
            provider=self.name,
            model=str(_field(resp, "model", req.model)),
            citations=citations,
            input_tokens=in_tok,
            output_tokens=out_tok,
            cost_usd=cost,
            finish_reason="stop",
            search_queries=queries,
            web_search_calls=searches,
        )
