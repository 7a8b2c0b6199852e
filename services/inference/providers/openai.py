"""OpenAI (and any OpenAI-compatible endpoint: vLLM, Ollama, hosted gateways) through the official async SDK.

One ``AsyncOpenAI`` client per process, built in :func:`services.inference.server.build` with
``base_url=settings.base_url("openai")`` (so ``VANTAGE_OPENAI_BASE_URL`` points it anywhere), ``max_retries=0``
(retries belong to :func:`~services.inference.providers.errors.budgeted_call`, which sees every 429/5xx with its
retry-after and honours the RPC deadline) and ``timeout=settings.provider_timeout_seconds`` per attempt.

- Without web search — Chat Completions (providers.md §3.2): ``POST {base}/chat/completions``; a JSON Schema
  becomes ``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}`` and the
  answer's ``message.content`` is parsed as JSON. This is the path any OpenAI-compatible server supports.
  CPU fast path (issue 16 item 1, :func:`chat_completion`): the request goes through the SDK's generic
  ``client.post`` (its auth, base URL, headers, timeout, status-error mapping), not ``chat.completions.create``,
  whose ``async_transform`` of the (already plain JSON) arguments was about half of the CPU of a call; the body
  is read with orjson into :class:`ChatAnswer` (only the fields used here) instead of a ``ChatCompletion`` model.
- With ``web_search`` — the Responses API (providers.md §3.1): ``POST {base}/responses`` with the ``web_search``
  tool and ``user_location {type: "approximate", country}``; ``url_citation`` annotations become citations,
  ``web_search_call`` actions become ``search_queries``, and each search is billed at
  ``settings.web_search_call_usd`` on top of the tokens ($10 / 1K calls, §3.5).
- Retrieved vs cited (issue 14 item 6): the request asks ``include: ["web_search_call.action.sources"]``
  (providers.md §3.1 request example; SDK ``ResponseIncludable``: "Include the sources of the web search tool
  call"), so every ``web_search_call`` search action lists ``sources: [{type: "url", url}]`` (§3.1 "Output items";
  SDK ``ActionSearchSource``). Those sources minus the ``url_citation`` annotations' URLs (compared by
  :func:`url_key`) are the answer's ``links_attached``: retrieved, not cited (:func:`links_attached`).

Reasoning headroom: reasoning models spend reasoning tokens out of ``max_output_tokens`` /
``max_completion_tokens``, so a small cap can end a response ``status: "incomplete"`` with
``incomplete_details.reason: "max_output_tokens"`` (Responses; chat completions: ``finish_reason: "length"``) and
empty or cut text (providers-2026-12.md, OpenAI; SDK ``Response.incomplete_details``). Such a response is asked
again once with :func:`retry_budget` tokens; incomplete again, the call fails with
``InvalidArgument(field="max_output_tokens", reason="MAX_OUTPUT_TOKENS")`` (provider error code
``max_output_tokens``) — a cut answer is never stored as an answer. Usage and cost sum both calls.

Errors (SDK exception classes, providers.md §3.3) → :mod:`shared.errors`, see :mod:`.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
import orjson
from openai import AsyncOpenAI
from openai.types.responses import ResponseFunctionWebSearch, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_function_web_search import ActionSearch
from openai.types.responses.response_output_text import AnnotationURLCitation

from services.inference import pricing
from services.inference.providers import (
    Capabilities,
    Citation,
    CompletionRequest,
    CompletionResult,
)
from services.inference.providers.errors import (
    SdkProvider,
    budgeted_call,
    map_sdk_error,
    request_tokens,
)
from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
    VantageError,
)
from shared.grpc_client import Deadline

if TYPE_CHECKING:
    from openai._types import RequestOptions, SecurityOptions


def map_openai_error(exc: openai.APIError, *, provider: str = "openai", key_env: str = "OPENAI_API_KEY") -> VantageError:
    """Translate an OpenAI-SDK exception (also Perplexity's, which speaks through this SDK): see
    :mod:`services.inference.providers.errors` for the table."""
    label = "OpenAI" if provider == "openai" else provider.capitalize()
    return map_sdk_error(exc, provider=provider, label=label, key_env=key_env)


def response_format(req: CompletionRequest) -> dict[str, Any] | None:
    """OpenAI structured-output ``response_format`` for ``req`` (providers.md §3.2), None for free text."""
    if req.json_schema is None:
        return None
    return {
        "type": "json_schema",
        "json_schema": {"name": req.schema_name or "result", "schema": req.json_schema, "strict": True},
    }


def parse_json_answer(content: str, finish_reason: str, provider: str) -> str:
    """The answer to a schema request, parsed and re-serialised compactly.

    Raises ``InvalidArgument(field="max_output_tokens", reason="OUTPUT_TRUNCATED")`` when the output was cut at
    the token limit (retrying the same request would fail the same way), else ``Unavailable(reason=
    "malformed_response")`` (a fresh sample may well be valid JSON).
    """
    try:
        value = json.loads(content)
    except ValueError:
        if finish_reason in ("length", "max_tokens", "max_output_tokens"):
            raise InvalidArgument(
                "the structured answer was cut at max_output_tokens and is not valid JSON; raise max_output_tokens",
                field="max_output_tokens",
                reason="OUTPUT_TRUNCATED",
                provider=provider,
            ) from None
        raise Unavailable(
            "the model's answer to a json_schema request is not valid JSON", provider=provider,
            reason="malformed_response",
        ) from None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


#: Tokens added (at least) to the budget of the one retry of an incomplete response.
REASONING_HEADROOM_TOKENS = 4096


def retry_budget(budget: int) -> int:
    """The larger ``max_output_tokens`` of the retry after an incomplete response: twice the budget, and at least
    :data:`REASONING_HEADROOM_TOKENS` more."""
    return max(2 * budget, budget + REASONING_HEADROOM_TOKENS)


def is_incomplete(resp: Any) -> bool:
    """True when ``resp`` (a Responses ``Response`` or a ``ChatCompletion``) ended at the output-token cap."""
    if getattr(resp, "object", "") == "response" or hasattr(resp, "incomplete_details"):
        reason = getattr(getattr(resp, "incomplete_details", None), "reason", None)
        return getattr(resp, "status", "") == "incomplete" and reason == "max_output_tokens"
    choices = getattr(resp, "choices", None) or []
    return bool(choices) and choices[0].finish_reason == "length"


def incomplete_error(provider: str, budgets: tuple[int, int]) -> InvalidArgument:
    """The failure of a call whose retry with a larger budget was incomplete too."""
    return InvalidArgument(
        f"the response was incomplete (incomplete_details.reason = max_output_tokens) with {budgets[0]} and again "
        f"with {budgets[1]} output tokens: reasoning used the budget; raise max_output_tokens",
        field="max_output_tokens", reason="MAX_OUTPUT_TOKENS", provider=provider,
        metadata={"provider_error_code": "max_output_tokens"},
    )


async def with_headroom(create: Any, kwargs: dict[str, Any], key: str, timeout_s: float) -> list[Any]:
    """``create(**kwargs)``, and once more with :func:`retry_budget` tokens (``kwargs[key]``) when the first
    response is incomplete: every response, in order."""
    responses = [await create(**kwargs, timeout=timeout_s)]
    if is_incomplete(responses[0]):
        responses.append(await create(**{**kwargs, key: retry_budget(int(kwargs[key]))}, timeout=timeout_s))
    return responses


@dataclass(slots=True)
class AnswerMessage:
    """``choices[0].message`` of a chat completion: the fields read here, as sent (no type coercion, as the SDK's
    non-validating ``ChatCompletion`` construction keeps them)."""

    content: Any = None
    refusal: Any = None


@dataclass(slots=True)
class AnswerChoice:
    message: AnswerMessage
    finish_reason: Any = None


@dataclass(slots=True)
class AnswerUsage:
    prompt_tokens: Any = None
    completion_tokens: Any = None
    total_tokens: Any = None


@dataclass(slots=True)
class ChatAnswer:
    """The parts of a ``chat.completion`` body this provider reads (providers.md §3.2): what
    :meth:`OpenAIProvider._chat_result`, :func:`is_incomplete` and ``_final`` need, attribute for attribute as on the
    SDK's ``ChatCompletion``. ``choices`` holds the first choice only (we never ask for ``n`` > 1)."""

    id: Any = None
    model: Any = None
    choices: list[AnswerChoice] = field(default_factory=list)
    usage: AnswerUsage | None = None


def _not_the_shape(provider: str, label: str) -> Unavailable:
    return Unavailable(f"{label} sent a response that is not the expected shape", provider=provider,
                       reason="malformed_response")


def parse_chat_body(content: bytes, content_type: str, *, provider: str = "openai", label: str = "OpenAI") -> ChatAnswer:
    """A chat completion body → :class:`ChatAnswer`, failing as ``chat.completions.create`` + ``_chat_result`` did:

    - not JSON with a JSON content type: ``ValueError`` (the SDK's ``response.json()`` raised ``JSONDecodeError``;
      :func:`~.errors.map_call_error` makes it ``Unavailable(reason="malformed_response")``);
    - not JSON with another content type, or JSON that is not an object with a non-empty ``choices`` list: no choices
      (the SDK returned the text or a model without choices; ``_chat_result`` raises "answered without choices");
    - a first choice or message that is not an object: ``Unavailable(reason="malformed_response")`` (the SDK's model
      let these through and reading them raised AttributeError / KeyError, an INTERNAL error: now the documented
      malformed-body row of :mod:`.errors`).

    orjson reads the body; what it refuses (NaN, integers beyond 64 bits, …) is read again with ``json.loads`` as
    the SDK did, so both accept exactly the same bodies.
    """
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        if not content_type.split(";", 1)[0].endswith("json"):  # the SDK's test (_response.py)
            try:
                data = json.loads(content)
            except ValueError:
                return ChatAnswer()
        else:
            data = json.loads(content)  # raises ValueError for a body that is not JSON
    if not isinstance(data, dict):
        return ChatAnswer()
    choices = data.get("choices")
    if not choices:
        return ChatAnswer(id=data.get("id"), model=data.get("model"))
    if not isinstance(choices, list):
        raise _not_the_shape(provider, label)
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise _not_the_shape(provider, label)
    usage = data.get("usage")
    return ChatAnswer(
        id=data.get("id"),
        model=data.get("model"),
        choices=[AnswerChoice(AnswerMessage(message.get("content"), message.get("refusal")), first.get("finish_reason"))],
        usage=AnswerUsage(usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens"))
        if isinstance(usage, dict) else None,
    )


#: ``chat.completions.create``'s ``security`` request option: the bearer key only (not an admin key).
CHAT_SECURITY: SecurityOptions = {"bearer_auth": True}


async def chat_completion(
    client: AsyncOpenAI, *, timeout: float, extra_headers: Mapping[str, str] | None = None, **body: Any  # noqa: ASYNC109
) -> ChatAnswer:
    """``POST /chat/completions`` with ``body`` (plain JSON values, as :meth:`OpenAIProvider.complete` builds them)
    through the SDK's generic ``client.post``: the same request ``client.chat.completions.create(**body)`` sends
    (auth, base URL, default and ``extra_headers``, ``timeout``, retries setting, idempotency key) and the same
    ``openai.APIStatusError`` / ``APIConnectionError`` / ``APITimeoutError`` — without ``create``'s
    ``async_transform`` of the arguments (a no-op on plain dicts, half the CPU of a call) or the ``ChatCompletion``
    model of the answer (:func:`parse_chat_body`)."""
    options: RequestOptions = {"timeout": timeout, "security": CHAT_SECURITY}
    if extra_headers:
        options["headers"] = extra_headers
    response = await client.post("/chat/completions", body=body, cast_to=httpx.Response, options=options)
    return parse_chat_body(response.content, response.headers.get("content-type", "*"))


def web_search_count(resp: Any) -> int:
    """Billed web searches of a Responses answer: ``tool_usage.web_search.num_requests`` when reported, else its
    ``web_search_call`` search actions (0 for a chat completion)."""
    reported = getattr(getattr(getattr(resp, "tool_usage", None), "web_search", None), "num_requests", None)
    if isinstance(reported, int):
        return reported
    return sum(
        1 for item in getattr(resp, "output", None) or []
        if getattr(item, "type", "") == "web_search_call"
        and getattr(getattr(item, "action", None), "type", "search") == "search"
    )


def web_search_tool(location: str) -> dict[str, Any]:
    """The Responses API ``web_search`` tool, located in ``location`` (ISO-2) when given (§3.1)."""
    tool: dict[str, Any] = {"type": "web_search"}
    if location:
        tool["user_location"] = {"type": "approximate", "country": location}
    return tool


def dedupe(citations: list[Citation]) -> list[Citation]:
    """Citations in order, each URL once (the first title wins)."""
    seen: set[str] = set()
    out = []
    for c in citations:
        if c.url and c.url not in seen:
            seen.add(c.url)
            out.append(c)
    return out


#: The ``include`` value that makes a Responses ``web_search_call`` list its sources (providers.md §3.1).
INCLUDE_SOURCES = "web_search_call.action.sources"


def url_key(url: str) -> str:
    """The key under which a retrieved source and a citation are the same page: scheme and host lower-cased,
    fragment, ``utm_*`` click-tracking parameters and a trailing slash dropped (a citation URL may carry a
    ``utm_source`` its source lacks, as the sandbox's ChatGPT-style citations do). Not a URL: the stripped text."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    query = "&".join(q for q in parts.query.split("&") if q and not q.lower().startswith("utm_"))
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/") or "/", query, ""))


def not_cited(retrieved: Iterable[Citation], cited: Iterable[Citation]) -> list[Citation]:
    """``retrieved`` in order, each page once (:func:`url_key`), without the pages in ``cited``: the
    ``links_attached`` of an answer (retrieved, not cited)."""
    seen = {url_key(c.url) for c in cited if c.url}
    out: list[Citation] = []
    for c in retrieved:
        key = url_key(c.url) if c.url else ""
        if key and key not in seen:
            seen.add(key)
            out.append(c)
    return out


def search_sources(resp: Any) -> list[Citation]:
    """The ``sources`` of every ``web_search_call`` search action of a Responses answer, in output order
    (SDK ``ResponseFunctionWebSearch`` / ``ActionSearch`` / ``ActionSearchSource``: ``{type: "url", url}``, no
    title, so the title is ""). [] when the response did not include them (no :data:`INCLUDE_SOURCES`)."""
    out: list[Citation] = []
    for item in getattr(resp, "output", None) or []:
        if isinstance(item, ResponseFunctionWebSearch) and isinstance(item.action, ActionSearch):
            out += [Citation(s.url, "") for s in item.action.sources or [] if getattr(s, "url", None)]
    return out


def url_citations(resp: Any) -> list[Citation]:
    """The ``url_citation`` annotations of a Responses answer's ``output_text`` parts, in order (SDK
    ``ResponseOutputMessage`` / ``ResponseOutputText`` / ``AnnotationURLCitation``; providers.md §3.1)."""
    out: list[Citation] = []
    for item in getattr(resp, "output", None) or []:
        if not isinstance(item, ResponseOutputMessage):
            continue
        for part in item.content or []:
            if isinstance(part, ResponseOutputText):
                out += [Citation(a.url, a.title or "") for a in part.annotations or []
                        if isinstance(a, AnnotationURLCitation) and a.url]
    return out


def links_attached(resp: Any) -> list[Citation]:
    """Retrieved, not cited, of a Responses answer (SDK ``openai.types.responses.Response``): the
    ``web_search_call.action.sources`` (:func:`search_sources`) minus the ``url_citation`` annotations
    (:func:`url_citations`), by :func:`url_key` — providers.md §3.1 ("Output items") and its request example with
    ``include: ["web_search_call.action.sources"]``; providers-2026-12.md, OpenAI ("Citations: url_citation
    annotations")."""
    return not_cited(search_sources(resp), url_citations(resp))


class OpenAIProvider(SdkProvider):
    """:class:`~services.inference.providers.Provider` over Chat Completions and, for web search, Responses.

    ``client`` is None when no key is configured (every call then fails with ``FailedPrecondition``);
    ``guard`` (:class:`~shared.resilience.ProviderGuard`) holds the process-wide adaptive budget of concurrent calls
    (≤ ``settings.openai_concurrency``; ``limiter`` is its live capacity limiter), the rate limits, the circuit
    breaker and the retry policy.
    """

    name = "openai"
    label = "OpenAI"
    key_env = "OPENAI_API_KEY"
    capabilities = Capabilities(supports_web_search=True, supports_locations=True)
    sdk_client = AsyncOpenAI
    sdk_module = openai

    def _require_client(self) -> AsyncOpenAI:
        if self._client is None:
            raise FailedPrecondition(
                f"{self.key_env} is not set (any non-empty value works for an OpenAI-compatible endpoint that "
                "does not check keys)",
                provider=self.name,
                reason="NO_API_KEY",
            )
        return self._client

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        """One completion; ``deadline`` covers the waits for the budget and rate limits, every attempt and the
        back-off between them (None = ``settings.rpc_timeout_seconds``); one attempt lasts at most
        ``settings.provider_timeout_seconds``."""
        client = self._require_client()
        deadline = deadline or Deadline(self._settings.rpc_timeout_seconds)
        max_tokens = req.max_output_tokens or self._settings.max_output_tokens
        if req.web_search:
            return await self._responses(client, req, deadline, max_tokens)
        kwargs: dict[str, Any] = {
            "model": req.model,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            "max_completion_tokens": max_tokens,
        }
        if (rf := response_format(req)) is not None:
            kwargs["response_format"] = rf
        if req.extra_headers:
            kwargs["extra_headers"] = req.extra_headers
        return await budgeted_call(
            provider=self.name,
            label=self.label,
            key_env=self.key_env,
            model=req.model,
            guard=self.guard,
            tokens=request_tokens((m.content for m in req.messages), max_tokens),
            deadline=deadline,
            max_timeout=self._settings.provider_timeout_seconds,
            call=lambda t: with_headroom(partial(chat_completion, client), kwargs, "max_completion_tokens", t),
            to_result=lambda resps: self._final(req, resps, self._chat_result, max_tokens),
        )

    def _final(self, req: CompletionRequest, resps: list[Any], parse: Any, budget: int) -> CompletionResult:
        """The result of the last response, usage and cost summed over ``resps``; an incomplete last response
        (after the retry) is :func:`incomplete_error`."""
        if is_incomplete(resps[-1]):
            raise incomplete_error(self.name, (budget, retry_budget(budget)))
        result: CompletionResult = parse(req, resps[-1])
        for earlier in resps[:-1]:
            usage = getattr(earlier, "usage", None)
            in_tok = int(getattr(usage, "input_tokens", None) or getattr(usage, "prompt_tokens", 0) or 0)
            out_tok = int(getattr(usage, "output_tokens", None) or getattr(usage, "completion_tokens", 0) or 0)
            result.input_tokens += in_tok
            result.output_tokens += out_tok
            searches = web_search_count(earlier)
            result.web_search_calls += searches
            result.cost_usd += pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok)
            result.cost_usd += pricing.web_search_cost_usd(self._settings, searches, req.model)
        return result

    def _chat_result(self, req: CompletionRequest, resp: Any) -> CompletionResult:
        if not getattr(resp, "choices", None):
            raise Unavailable(f"{self.label} answered without choices", provider=self.name, reason="malformed_response")
        choice = resp.choices[0]
        message = choice.message
        finish = choice.finish_reason or ""
        content = message.content or ""
        refusal = getattr(message, "refusal", None)
        if refusal and not content:
            raise FailedPrecondition(f"the model refused: {refusal[:300]}", provider=self.name, reason="MODEL_REFUSAL")
        json_text = parse_json_answer(content, finish, self.name) if req.json_schema is not None else ""
        usage = resp.usage
        in_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
        out_tok = int(getattr(usage, "completion_tokens", 0) or 0)
        return CompletionResult(
            text=content,
            json_text=json_text,
            provider=self.name,
            model=resp.model or req.model,
            input_tokens=in_tok,
            output_tokens=out_tok,
            cost_usd=pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok),
            finish_reason=finish,
        )

    # --- Responses API + web_search (providers.md §3.1) ---------------------------------------------------------

    async def _responses(
        self, client: AsyncOpenAI, req: CompletionRequest, deadline: Deadline, max_tokens: int
    ) -> CompletionResult:
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        kwargs: dict[str, Any] = {
            "model": req.model,
            "input": [{"role": m.role, "content": m.content} for m in req.messages if m.role != "system"],
            "tools": [web_search_tool(req.location)],
            "include": [INCLUDE_SOURCES],
            "max_output_tokens": max_tokens,
        }
        if system:
            kwargs["instructions"] = system
        if req.json_schema is not None:
            kwargs["text"] = {"format": {"type": "json_schema", "name": req.schema_name or "result",
                                         "schema": req.json_schema, "strict": True}}
        if req.extra_headers:
            kwargs["extra_headers"] = req.extra_headers
        return await budgeted_call(
            provider=self.name,
            label=self.label,
            key_env=self.key_env,
            model=req.model,
            guard=self.guard,
            tokens=request_tokens((m.content for m in req.messages), max_tokens),
            deadline=deadline,
            max_timeout=self._settings.provider_timeout_seconds,
            call=lambda t: with_headroom(client.responses.create, kwargs, "max_output_tokens", t),
            to_result=lambda resps: self._final(req, resps, self._responses_result, max_tokens),
        )

    def _responses_result(self, req: CompletionRequest, resp: Any) -> CompletionResult:
        texts: list[str] = []
        citations = url_citations(resp)
        queries: list[str] = []
        searches = 0
        for item in resp.output or []:
            kind = getattr(item, "type", "")
            if kind == "web_search_call":
                action = getattr(item, "action", None)
                if action is None or getattr(action, "type", "search") == "search":
                    searches += 1
                    found = list(getattr(action, "queries", None) or []) or [getattr(action, "query", None)]
                    queries += [q for q in found if q and q not in queries]
            elif kind == "message":
                for part in getattr(item, "content", None) or []:
                    if getattr(part, "type", "") != "output_text":
                        continue
                    texts.append(part.text or "")
        # Newer responses report the billed count; older ones only the calls in the output.
        reported = getattr(getattr(getattr(resp, "tool_usage", None), "web_search", None), "num_requests", None)
        if isinstance(reported, int):
            searches = reported
        text = "".join(texts)
        status = getattr(resp, "status", "") or ""
        finish = "stop" if status == "completed" else (
            getattr(getattr(resp, "incomplete_details", None), "reason", None) or status
        )
        json_text = parse_json_answer(text, finish, self.name) if req.json_schema is not None else ""
        usage = resp.usage
        in_tok = int(getattr(usage, "input_tokens", 0) or 0)
        out_tok = int(getattr(usage, "output_tokens", 0) or 0)
        cost = pricing.token_cost_usd(self._settings, req.model, in_tok, out_tok) + pricing.web_search_cost_usd(
            self._settings, searches, req.model
        )
        return CompletionResult(
            text=text,
            json_text=json_text,
            provider=self.name,
            model=resp.model or req.model,
            citations=dedupe(citations),
            input_tokens=in_tok,
            output_tokens=out_tok,
            cost_usd=cost,
            finish_reason=finish,
            search_queries=queries,
            web_search_calls=searches,
            links_attached=links_attached(resp),
        )
