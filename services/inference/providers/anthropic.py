"""Anthropic Messages API through the official async SDK (providers.md §4).

``AsyncAnthropic(base_url=settings.base_url("anthropic"))`` (no ``/v1`` in the base, §4.1), ``max_retries=0``,
one client per process. System messages go in ``system``; the others are the conversation.

- Web search (§4.1, §4.2): the server tool ``{"type": "web_search_20250305", "name": "web_search", "max_uses",
  "user_location": {"type": "approximate", "country"}}``. ``text`` blocks' ``web_search_result_location``
  citations become citations, ``server_tool_use`` inputs become ``search_queries``, and
  ``usage.server_tool_use.web_search_requests`` searches are billed at ``settings.web_search_call_usd`` each
  ($10 / 1K searches, §4.4) on top of the tokens. A long server-tool turn may stop with ``pause_turn``: the turn is
  sent back as is to let Claude continue (at most :data:`MAX_CONTINUATIONS` times), usage summed.
- JSON schema: Claude is made to answer through one tool whose ``input_schema`` is the schema
  (``tool_choice: {"type": "tool"}``); the tool's ``input`` is the JSON answer. A forced tool call cannot also search,
  so ``json_schema`` together with ``web_search`` is refused (``InvalidArgument``).
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
from anthropic import AsyncAnthropic

from services.inference import pricing
from services.inference.providers import Capabilities, Citation, CompletionRequest, CompletionResult
from services.inference.providers.errors import (
    SdkProvider,
    budgeted_call,
    request_tokens,
)
from services.inference.providers.openai import dedupe
from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.grpc_client import Deadline

#: ``pause_turn`` continuations of one call before giving up and returning what there is.
MAX_CONTINUATIONS = 3


def _field(obj: Any, name: str, default: Any = None) -> Any:
    value = obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)
    return default if value is None else value


def _block_param(block: Any) -> Any:
    """A response content block as request content (to send a paused turn back)."""
    return block.model_dump(exclude_none=True) if hasattr(block, "model_dump") else block


class AnthropicProvider(SdkProvider):
    """:class:`~services.inference.providers.Provider` over the Messages API."""

    name = "anthropic"
    label = "Anthropic"
    key_env = "ANTHROPIC_API_KEY"
    capabilities = Capabilities(supports_web_search=True, supports_locations=True)
    sdk_client = AsyncAnthropic
    sdk_module = anthropic

    def request_kwargs(self, req: CompletionRequest) -> dict[str, Any]:
        """The ``messages.create`` arguments for ``req`` (without timeout)."""
        if req.json_schema is not None and req.web_search:
            raise InvalidArgument(
                "Anthropic cannot search the web and answer through a JSON schema in one call; drop one of "
                "json_schema and web_search", field="json_schema", provider=self.name,
            )
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        kwargs: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_output_tokens or self._settings.max_output_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages if m.role != "system"],
        }
        if system:
            kwargs["system"] = system
        if req.web_search:
            tool: dict[str, Any] = {
                "type": "web_search_20250305",
                "name": "web_search",
                "max_uses": max(1, self._settings.web_search_max_uses),
            }
            if req.location:
                tool["user_location"] = {"type": "approximate", "country": req.location}
            kwargs["tools"] = [tool]
        elif req.json_schema is not None:
            name = req.schema_name or "result"
            kwargs["tools"] = [{"name": name, "description": "Give the answer as this tool's input.",
                                "input_schema": req.json_schema}]
            kwargs["tool_choice"] = {"type": "tool", "name": name}
        if req.extra_headers:
            kwargs["extra_headers"] = req.extra_headers
        return kwargs

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        if self._client is None:
            raise FailedPrecondition(f"{self.key_env} is not set", provider=self.name, reason="NO_API_KEY")
        client = self._client
        kwargs = self.request_kwargs(req)

        async def call(timeout_s: float) -> list[Any]:
            # Every response of the turn: the first, then one per pause_turn continuation.
            responses = [await client.messages.create(**kwargs, timeout=timeout_s)]
            messages = list(kwargs["messages"])
            while _field(responses[-1], "stop_reason") == "pause_turn" and len(responses) <= MAX_CONTINUATIONS:
                messages = [*messages, {"role": "assistant",
                                        "content": [_block_param(b) for b in responses[-1].content]}]
                responses.append(await client.messages.create(**{**kwargs, "messages": messages}, timeout=timeout_s))
            return responses

        return await budgeted_call(
            provider=self.name,
            label=self.label,
            key_env=self.key_env,
            model=req.model,
            guard=self.guard,
            tokens=request_tokens((m.content for m in req.messages), int(kwargs["max_tokens"])),
            deadline=deadline or Deadline(self._settings.rpc_timeout_seconds),
            max_timeout=self._settings.provider_timeout_seconds,
            call=call,
            to_result=lambda responses: self._result(req, responses),
        )

    def _result(self, req: CompletionRequest, responses: list[Any]) -> CompletionResult:
        texts: list[str] = []
        citations: list[Citation] = []
        queries: list[str] = []
        tool_input: Any = None
        in_tok = out_tok = searches = 0
        for resp in responses:
            for block in _field(resp, "content", []):
                kind = _field(block, "type", "")
                if kind == "text":
                    texts.append(_field(block, "text", ""))
                    for c in _field(block, "citations", []):
                        if _field(c, "type") == "web_search_result_location" and _field(c, "url"):
                            citations.append(Citation(_field(c, "url"), _field(c, "title", "")))
                elif kind == "server_tool_use" and _field(block, "name") == "web_search":
                    q = _field(_field(block, "input", {}), "query")
                    if q and q not in queries:
                        queries.append(str(q))
                elif kind == "tool_use" and tool_input is None:
                    tool_input = _field(block, "input")
            usage = _field(resp, "usage")
            in_tok += int(_field(usage, "input_tokens", 0))
            out_tok += int(_field(usage, "output_tokens", 0))
            searches += int(_field(_field(usage, "server_tool_use"), "web_search_requests", 0))
        last = responses[-1]
        finish = str(_field(last, "stop_reason", ""))
        text = "".join(texts)
        json_text = ""
        if req.json_schema is not None:
            if tool_input is None:
                if finish == "max_tokens":
                    raise InvalidArgument("the structured answer was cut at max_output_tokens; raise it",
                                          field="max_output_tokens", reason="OUTPUT_TRUNCATED", provider=self.name)
                raise Unavailable("Claude did not answer through the schema tool", provider=self.name,
                                  reason="malformed_response")
            json_text = json.dumps(tool_input, ensure_ascii=False, separators=(",", ":"))
            text = text or json_text
        cost = pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok) + pricing.web_search_cost_usd(
            self._settings, searches
        )
        return CompletionResult(
            text=text,
            json_text=json_text,
            provider=self.name,
            model=str(_field(last, "model", req.model)),
            citations=dedupe(citations),
            input_tokens=in_tok,
            output_tokens=out_tok,
            cost_usd=cost,
            finish_reason=finish,
            search_queries=queries,
            web_search_calls=searches,
        )
