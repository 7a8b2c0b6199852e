"""Anthropic Messages API through the official async SDK (providers.md §4).

``AsyncAnthropic(base_url=settings.base_url("anthropic"))`` (no ``/v1`` in the base, §4.1), ``max_retries=0``,
one client per process. System messages go in ``system``; the others are the conversation.

- Web search (§4.1, §4.2): the server tool ``{"type": "web_search_20250305", "name": "web_search", "max_uses",
  "user_location": {"type": "approximate", "country"}}``. ``text`` blocks' ``web_search_result_location``
  citations become citations, ``server_tool_use`` inputs become ``search_queries``, and
  ``usage.server_tool_use.web_search_requests`` searches are billed at ``settings.web_search_call_usd`` each
  ($10 / 1K searches, §4.4) on top of the tokens. A long server-tool turn may stop with ``pause_turn``: the turn is
  sent back as is to let Claude continue (see stop reasons below).
- Retrieved vs cited (issue 14 item 6; providers.md §4.2, unchanged per providers-2026-12.md "Anthropic Messages"):
  the ``web_search_tool_result`` blocks' ``web_search_result`` items (``url``, ``title``; SDK
  ``WebSearchToolResultBlock`` / ``WebSearchResultBlock``) are what the search retrieved, the ``text`` blocks'
  ``web_search_result_location`` citations (SDK ``CitationsWebSearchResultLocation``) the cited locations; the
  results minus the cited URLs (:func:`~services.inference.providers.openai.url_key`) are ``links_attached``
  (:func:`links_attached`). A ``web_search_tool_result_error`` content retrieved nothing.
- JSON schema: native structured output, ``output_config={"format": {"type": "json_schema", "schema": ...}}``
  (anthropic SDK 2.15 ``OutputConfigParam`` / ``JSONOutputFormatParam``;
  platform.claude.com/docs/en/build-with-claude/structured-outputs); the answer's ``text`` is the JSON. Never a
  forced tool: ``tool_choice`` ``{type: tool}`` / ``{type: any}`` is rejected with 400 "Thinking may not be enabled
  when tool_choice forces tool use." whenever thinking is on — the default on the newest models
  (platform.claude.com/docs/en/build-with-claude/extended-thinking, "feature compatibility"; UKGovernmentBEIS/
  inspect_ai PR #2333; langchain-ai/langchain PR #35544). Structured output and web search are kept apart
  (``InvalidArgument``): a web-search answer is cited text blocks, and whether citations combine with
  ``output_config.format`` is not settled by the sources checked.
- ``max_tokens`` covers thinking plus text (SDK ``ThinkingConfigEnabledParam``: "Thinking tokens count toward your
  max_tokens limit"), so models that think by default (Opus 5 / Sonnet 5 families, :func:`thinks_by_default`) get
  :data:`THINKING_HEADROOM_TOKENS` on top of the answer's budget.
- Stop reasons (platform.claude.com/docs/en/build-with-claude/handling-stop-reasons): ``pause_turn`` — the turn is
  sent back as is so Claude continues it, once; a second pause fails the call (``FailedPrecondition``, reason
  ``PAUSE_TURN``). ``max_tokens`` — asked again once with twice the budget; cut again, the call fails
  (``InvalidArgument(field="max_output_tokens", reason="OUTPUT_TRUNCATED")``): a cut answer is never an answer.
  Usage (and so cost) sums every response, the ones given up included.
"""

from __future__ import annotations

import re
from typing import Any

import anthropic
from anthropic import AsyncAnthropic
from anthropic.types import (
    CitationsWebSearchResultLocation,
    TextBlock,
    WebSearchResultBlock,
    WebSearchToolResultBlock,
)

from services.inference import pricing
from services.inference.providers import Capabilities, Citation, CompletionRequest, CompletionResult
from services.inference.providers.errors import (
    SdkProvider,
    budgeted_call,
    request_tokens,
)
from services.inference.providers.openai import dedupe, not_cited, parse_json_answer
from shared.errors import FailedPrecondition, InvalidArgument
from shared.grpc_client import Deadline

#: ``pause_turn`` continuations of one call before failing it.
MAX_CONTINUATIONS = 1
#: Output tokens added to ``max_tokens`` for models that think by default (thinking counts toward max_tokens).
THINKING_HEADROOM_TOKENS = 4096
_THINKS_BY_DEFAULT = re.compile(r"^claude-(opus|sonnet)-5(\b|[-.])")


def thinks_by_default(model: str) -> bool:
    """True for the model families with extended thinking on by default (Opus 5 / Sonnet 5, providers-2026-12.md:
    "whats-new" pages of platform.claude.com)."""
    return _THINKS_BY_DEFAULT.match(model.strip().lower()) is not None


def _field(obj: Any, name: str, default: Any = None) -> Any:
    value = obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)
    return default if value is None else value


def _block_param(block: Any) -> Any:
    """A response content block as request content (to send a paused turn back)."""
    return block.model_dump(exclude_none=True) if hasattr(block, "model_dump") else block


def links_attached(turn: list[Any]) -> list[Citation]:
    """Retrieved, not cited, of a turn (its responses in order, SDK ``anthropic.types.Message``): every
    ``web_search_tool_result`` block's ``web_search_result`` items (url, title) minus the ``url`` of every
    ``web_search_result_location`` citation of the turn's ``text`` blocks, each page once, in retrieval order
    (providers.md §4.2). Blocks that are not the SDK's types (e.g. a plain dict) are not read."""
    retrieved: list[Citation] = []
    cited: list[Citation] = []
    for resp in turn:
        for block in getattr(resp, "content", None) or []:
            if isinstance(block, WebSearchToolResultBlock) and isinstance(block.content, list):
                retrieved += [Citation(r.url, r.title or "") for r in block.content
                              if isinstance(r, WebSearchResultBlock) and r.url]
            elif isinstance(block, TextBlock):
                cited += [Citation(c.url, c.title or "") for c in block.citations or []
                          if isinstance(c, CitationsWebSearchResultLocation) and c.url]
    return not_cited(retrieved, cited)


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
                "Anthropic cannot search the web and answer through a JSON schema in one call (a web-search answer "
                "is cited text; structured output is plain JSON); drop one of json_schema and web_search",
                field="json_schema", provider=self.name,
            )
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        answer_tokens = req.max_output_tokens or self._settings.max_output_tokens
        headroom = THINKING_HEADROOM_TOKENS if thinks_by_default(req.model) else 0
        kwargs: dict[str, Any] = {
            "model": req.model,
            "max_tokens": answer_tokens + headroom,
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
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": req.json_schema}}
        if req.extra_headers:
            kwargs["extra_headers"] = req.extra_headers
        return kwargs

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        if self._client is None:
            raise FailedPrecondition(f"{self.key_env} is not set", provider=self.name, reason="NO_API_KEY")
        client = self._client
        kwargs = self.request_kwargs(req)

        async def call(timeout_s: float) -> tuple[list[Any], list[Any]]:
            """(every response, the responses of the turn that answers): a turn cut at ``max_tokens`` is asked
            again once with twice the budget; a paused turn is continued once."""
            every: list[Any] = []
            budget = int(kwargs["max_tokens"])
            for _ in range(2):
                turn = [await client.messages.create(**{**kwargs, "max_tokens": budget}, timeout=timeout_s)]
                messages = list(kwargs["messages"])
                while _field(turn[-1], "stop_reason") == "pause_turn" and len(turn) <= MAX_CONTINUATIONS:
                    messages = [*messages, {"role": "assistant",
                                            "content": [_block_param(b) for b in turn[-1].content]}]
                    turn.append(await client.messages.create(
                        **{**kwargs, "max_tokens": budget, "messages": messages}, timeout=timeout_s))
                every += turn
                if _field(turn[-1], "stop_reason") != "max_tokens":
                    break
                budget *= 2
            return every, turn

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
            to_result=lambda responses: self._result(req, *responses),
        )

    def _result(self, req: CompletionRequest, every: list[Any], turn: list[Any] | None = None) -> CompletionResult:
        """The answer of ``turn`` (its responses in order; default ``every``), usage summed over ``every`` (the
        responses given up included: they were billed). Raises ``FailedPrecondition(reason="PAUSE_TURN")`` for a
        turn still paused after its continuation, ``InvalidArgument(reason="OUTPUT_TRUNCATED")`` for one cut at
        ``max_tokens``, ``Unavailable(reason="malformed_response")`` for a schema answer that is not JSON."""
        turn = every if turn is None else turn
        texts: list[str] = []
        citations: list[Citation] = []
        queries: list[str] = []
        in_tok = out_tok = searches = 0
        for resp in every:
            usage = _field(resp, "usage")
            in_tok += int(_field(usage, "input_tokens", 0))
            out_tok += int(_field(usage, "output_tokens", 0))
            searches += int(_field(_field(usage, "server_tool_use"), "web_search_requests", 0))
        for resp in turn:
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
        last = turn[-1]
        finish = str(_field(last, "stop_reason", ""))
        if finish == "pause_turn":
            raise FailedPrecondition(
                f"Claude paused its turn again (stop_reason pause_turn) after {MAX_CONTINUATIONS} continuation; "
                "the answer is incomplete and is not stored", provider=self.name, reason="PAUSE_TURN",
                metadata={"provider_error_code": "pause_turn"},
            )
        if finish == "max_tokens":
            raise InvalidArgument(
                "Claude stopped at max_tokens (stop_reason max_tokens) again after a retry with twice the budget; "
                "the answer is cut and is not stored: raise max_output_tokens",
                field="max_output_tokens", reason="OUTPUT_TRUNCATED", provider=self.name,
                metadata={"provider_error_code": "max_tokens"},
            )
        if finish == "refusal":
            raise FailedPrecondition("Claude declined to answer (stop_reason refusal)", provider=self.name,
                                     reason="MODEL_REFUSAL")
        text = "".join(texts)
        json_text = parse_json_answer(text, finish, self.name) if req.json_schema is not None else ""
        cost = pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok) + pricing.web_search_cost_usd(
            self._settings, searches, req.model
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
            links_attached=links_attached(turn),
        )
