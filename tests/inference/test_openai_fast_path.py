"""The OpenAI chat-completions fast path (issue 16 item 1): ``client.post("/chat/completions")`` + orjson instead of
``client.chat.completions.create`` + the SDK's ``ChatCompletion`` model.

Everything is real: the official SDK client the provider builds, a tiny HTTP/1.1 server on loopback that records
the raw requests and answers canned bodies, and the sandbox for the injected ``malformed`` / ``truncated`` faults.
The reference for "as before" is the SDK's own ``chat.completions.create`` on the same client, its answer read by the
same ``OpenAIProvider._chat_result`` (which reads a ``ChatCompletion`` and a ``ChatAnswer`` alike).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from services.inference import pricing
from services.inference.providers import ChatMessage, CompletionRequest, CompletionResult
from services.inference.providers.errors import map_call_error
from services.inference.providers.openai import (
    OpenAIProvider,
    chat_completion,
    parse_chat_body,
    retry_budget,
)
from shared.config import Settings
from shared.errors import Unavailable, VantageError

# --- a recording HTTP/1.1 server on loopback ----------------------------------------------------------------------


@dataclass
class Captured:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Server:
    """Answers every request with ``answers[i]`` (the last one once they run out): (content type, body)."""

    answers: list[tuple[str, bytes]] = field(default_factory=list)
    requests: list[Captured] = field(default_factory=list)
    url: str = ""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def answer(self, body: bytes | dict[str, Any], content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers = [(content_type, raw)]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                first, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
                method, path, _ = first.split(" ", 2)
                headers = [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines)]
                length = int(dict(headers).get("content-length", "0"))
                body = await reader.readexactly(length)
                self.requests.append(Captured(method, path, headers, body))
                ctype, payload = self.answers[min(len(self.requests), len(self.answers)) - 1]
                writer.write(
                    f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        finally:
            writer.close()
            self.tasks.discard(task)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    srv.url = f"http://127.0.0.1:{port}/v1"
    async with listener:
        yield srv
        for task in list(srv.tasks):  # connections the client left open
            task.cancel()
        await asyncio.gather(*srv.tasks, return_exceptions=True)


@pytest.fixture
async def provider(server: Server) -> AsyncIterator[OpenAIProvider]:
    """The real provider and SDK client at the loopback server (one attempt per call: no retries to wait for)."""
    s = Settings(_env_file=None, sandbox_url="", openai_base_url=server.url,
                 openai_api_key=SecretStr("sk-test-fast-path"), provider_max_attempts=1)
    p = OpenAIProvider.from_settings(s)
    yield p
    await p.aclose()


def client_of(p: OpenAIProvider) -> Any:
    assert p._client is not None
    return p._client


#: providers.md §3.2 "Minimal response the SDK accepts", filled in, with the ``usage`` details OpenAI's API reference
#: shows for a chat completion (prompt_tokens 19, completion_tokens 10, total 29, prompt_tokens_details.cached_tokens,
#: completion_tokens_details.reasoning_tokens …).
DOC_EXAMPLE: dict[str, Any] = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": None,
                    "annotations": []},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tier": {"type": "string", "enum": ["HOT", "WARM", "WATCH", "COLD"]},
                   "score": {"type": "integer"}, "sources": {"type": "array", "items": {"type": "string"}}},
    "required": ["tier", "score", "sources"],
    "additionalProperties": False,
}

MESSAGES = [{"role": "system", "content": "You classify companies. Answer in JSON."},
            {"role": "user", "content": "Zürich Instruments — «GPU» needs? ☃ \"quoted\" \\ back\nslash"}]

KWARGS_CASES: dict[str, dict[str, Any]] = {
    "free text": {"model": "gpt-4.1", "messages": MESSAGES, "max_completion_tokens": 1024},
    "json_schema": {"model": "gpt-4.1", "messages": MESSAGES, "max_completion_tokens": 2048,
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "classification", "schema": SCHEMA, "strict": True}}},
    "extra headers": {"model": "gpt-5.5", "messages": MESSAGES[1:], "max_completion_tokens": 16,
                      "extra_headers": {"X-Sandbox-Fault": "none", "X-Request-Tag": "t1"}},
}


def wire(c: Captured) -> tuple[str, str, bytes, list[tuple[str, str]]]:
    return c.method, c.path, c.body, c.headers


# --- 1. the request on the wire ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(KWARGS_CASES))
async def test_request_on_the_wire_equals_the_sdk_create(server: Server, provider: OpenAIProvider, case: str) -> None:
    server.answer(DOC_EXAMPLE)
    kwargs = KWARGS_CASES[case]
    client = client_of(provider)
    await client.chat.completions.create(**kwargs, timeout=30.0)
    await chat_completion(client, timeout=30.0, **kwargs)
    before, after = server.requests
    assert after.body == before.body  # byte for byte: the same JSON, key order included
    assert wire(after) == wire(before)  # method, path, every header (auth, x-stainless-*, timeout, extra headers)
    assert json.loads(after.body) == {k: v for k, v in kwargs.items() if k != "extra_headers"}
    assert ("authorization", "Bearer sk-test-fast-path") in after.headers


async def test_complete_sends_what_head_sent(server: Server, provider: OpenAIProvider) -> None:
    """``OpenAIProvider.complete`` (the new path) puts on the wire what HEAD's ``chat.completions.create(**kwargs)``
    call did for the same request (its kwargs written out here as HEAD built them)."""
    server.answer({**DOC_EXAMPLE, "choices": [{**DOC_EXAMPLE["choices"][0], "message": {
        "role": "assistant", "content": '{"tier":"HOT","score":91,"sources":[]}', "refusal": None}}]})
    req = CompletionRequest(model="gpt-4.1", messages=[ChatMessage(m["role"], m["content"]) for m in MESSAGES],
                            json_schema=SCHEMA, schema_name="classification", max_output_tokens=2048,
                            extra_headers={"X-Request-Tag": "t2"})
    result = await provider.complete(req)
    assert result.json_text == '{"tier":"HOT","score":91,"sources":[]}'
    await client_of(provider).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, max_completion_tokens=2048,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "classification", "schema": SCHEMA, "strict": True}},
        extra_headers={"X-Request-Tag": "t2"}, timeout=30.0,
    )
    after, before = server.requests
    assert after.body == before.body
    ignore = {"x-stainless-read-timeout"}  # complete's timeout is the time left of its deadline (≤ 30 s)
    assert [h for h in after.headers if h[0] not in ignore] == [h for h in before.headers if h[0] not in ignore]


# --- 2. usage, price and fields: as the SDK's ChatCompletion reads them --------------------------------------------


def outcome(fn: Any) -> Any:
    """(result) or (error type, reason, message) of ``fn()``'s awaitable."""
    async def run() -> Any:
        try:
            return await fn()
        except VantageError as e:
            return type(e), e.reason, str(e)
    return run()


async def sdk_outcome(provider: OpenAIProvider, req: CompletionRequest, kwargs: dict[str, Any]) -> Any:
    """What HEAD's path made of the answer: ``chat.completions.create`` → ``_chat_result``, SDK errors mapped as
    ``budgeted_call`` maps them (None from ``map_call_error``: an exception HEAD let through as INTERNAL)."""
    try:
        resp = await client_of(provider).chat.completions.create(**kwargs, timeout=30.0)
        return provider._chat_result(req, resp)
    except VantageError as e:
        return type(e), e.reason, str(e)
    except Exception as e:
        err = map_call_error(e, provider="openai", label="OpenAI", key_env="OPENAI_API_KEY")
        return ("INTERNAL", type(e).__name__) if err is None else (type(err), err.reason, str(err))


REQ = CompletionRequest(model="gpt-4.1", messages=[ChatMessage("user", "hi")], max_output_tokens=64)
REQ_KWARGS = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 64}


async def test_documented_example_reads_as_the_sdk_model(server: Server, provider: OpenAIProvider) -> None:
    server.answer(DOC_EXAMPLE)
    sdk = await client_of(provider).chat.completions.create(**REQ_KWARGS, timeout=30.0)
    ours = parse_chat_body(json.dumps(DOC_EXAMPLE).encode(), "application/json")
    assert (ours.id, ours.model) == (sdk.id, sdk.model)
    assert (ours.choices[0].message.content, ours.choices[0].message.refusal, ours.choices[0].finish_reason) == (
        sdk.choices[0].message.content, sdk.choices[0].message.refusal, sdk.choices[0].finish_reason)
    assert sdk.usage is not None and ours.usage is not None
    assert (ours.usage.prompt_tokens, ours.usage.completion_tokens, ours.usage.total_tokens) == (
        sdk.usage.prompt_tokens, sdk.usage.completion_tokens, sdk.usage.total_tokens) == (19, 10, 29)

    result = await provider.complete(REQ)
    assert result == provider._chat_result(REQ, sdk)
    assert (result.input_tokens, result.output_tokens, result.model, result.finish_reason) == (
        19, 10, "gpt-4.1-2025-04-14", "stop")
    assert result.text == "Hello! How can I assist you today?"
    assert result.cost_usd == pricing.token_cost_usd(provider._settings, "gpt-4.1", 19, 10) > 0


async def test_length_then_stop_sums_both_calls_as_before(server: Server, provider: OpenAIProvider) -> None:
    """The reasoning-headroom retry (``finish_reason: "length"``) works on ``ChatAnswer`` as on ``ChatCompletion``:
    one retry with :func:`retry_budget` tokens, usage and cost summed."""
    cut = {**DOC_EXAMPLE, "choices": [{**DOC_EXAMPLE["choices"][0], "finish_reason": "length"}],
           "usage": {"prompt_tokens": 19, "completion_tokens": 64, "total_tokens": 83}}
    server.answers = [("application/json", json.dumps(cut).encode()),
                      ("application/json", json.dumps(DOC_EXAMPLE).encode())]
    result = await provider.complete(REQ)
    assert [json.loads(r.body)["max_completion_tokens"] for r in server.requests] == [64, retry_budget(64)]
    assert (result.input_tokens, result.output_tokens, result.finish_reason) == (38, 74, "stop")
    server.requests.clear()  # the same two answers again, for the SDK's create
    client = client_of(provider)
    resps = [await client.chat.completions.create(**REQ_KWARGS, timeout=30.0),
             await client.chat.completions.create(**REQ_KWARGS, timeout=30.0)]
    assert result == provider._final(REQ, resps, provider._chat_result, 64)


OK_CHOICE = {"index": 0, "message": {"role": "assistant", "content": "a", "refusal": None}, "finish_reason": "stop"}

#: Bodies HEAD handled (same outcome required), as (content type, body).
SAME_AS_BEFORE: dict[str, tuple[str, bytes]] = {
    "not JSON": ("application/json", b'{"id":"x", <<garbage not json}"'),
    "empty": ("application/json", b""),
    "not JSON, text/plain": ("text/plain", b"upstream says hi"),
    "JSON, text/plain": ("text/plain", json.dumps(DOC_EXAMPLE).encode()),
    "JSON null": ("application/json", b"null"),
    "a list": ("application/json", b"[1, 2]"),
    "no choices": ("application/json", b'{"id": "x", "model": "m"}'),
    "empty choices": ("application/json", b'{"id": "x", "choices": []}'),
    "no usage": ("application/json", json.dumps({"choices": [OK_CHOICE]}).encode()),
    "usage not an object": ("application/json", json.dumps({"choices": [OK_CHOICE], "usage": 5}).encode()),
    "usage as strings": ("application/json",
                         json.dumps({"choices": [OK_CHOICE], "usage": {"prompt_tokens": "7"}}).encode()),
    "NaN tokens": ("application/json", b'{"choices": [{"message": {"content": "a"}, "finish_reason": "stop"}],'
                                       b' "usage": {"prompt_tokens": NaN}}'),
    "no finish_reason": ("application/json", b'{"choices": [{"message": {"content": "a"}}], "model": "m"}'),
    "refusal": ("application/json", json.dumps({"choices": [{**OK_CHOICE, "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}]}).encode()),
    "charset parameter": ("application/json; charset=utf-8", json.dumps(DOC_EXAMPLE, ensure_ascii=False).encode()),
}


@pytest.mark.parametrize("case", list(SAME_AS_BEFORE))
async def test_odd_bodies_end_as_before(server: Server, provider: OpenAIProvider, case: str) -> None:
    ctype, body = SAME_AS_BEFORE[case]
    server.answers = [(ctype, body)]
    before = await sdk_outcome(provider, REQ, REQ_KWARGS)
    after = await outcome(lambda: provider.complete(REQ))
    assert not (isinstance(before, tuple) and before[0] == "INTERNAL")
    assert after == before


#: Bodies HEAD let through as an INTERNAL error (AttributeError / KeyError reading the model): now the documented
#: ``Unavailable(reason="malformed_response")`` (retryable) of providers/errors.py.
WAS_INTERNAL: dict[str, bytes] = {
    "choices an object": b'{"choices": {"a": 1}}',
    "choice a string": b'{"choices": ["x"]}',
    "message null": b'{"choices": [{"message": null, "finish_reason": "stop"}]}',
}


@pytest.mark.parametrize("case", list(WAS_INTERNAL))
async def test_bodies_that_were_internal_errors_are_malformed(server: Server, provider: OpenAIProvider,
                                                              case: str) -> None:
    server.answer(WAS_INTERNAL[case])
    before = await sdk_outcome(provider, REQ, REQ_KWARGS)
    assert before[0] == "INTERNAL"
    with pytest.raises(Unavailable) as ei:
        await provider.complete(REQ)
    assert ei.value.reason == "malformed_response"
    assert str(ei.value) == "OpenAI sent a response that is not the expected shape"


# --- 3. the sandbox's injected malformed / truncated bodies -------------------------------------------------------


@pytest.mark.parametrize(("fault", "reason"), [("malformed", "malformed_response"),
                                               ("truncated", "PROVIDER_CONNECTION")])
@pytest.mark.parametrize("schema", [False, True])
async def test_sandbox_faults_give_the_same_error(settings: Settings, fault: str, reason: str, schema: bool) -> None:
    s = settings.model_copy(update={"provider_max_attempts": 1})
    p = OpenAIProvider.from_settings(s)
    try:
        headers = {"X-Sandbox-Fault": fault}
        req = CompletionRequest(model="gpt-4.1", messages=[ChatMessage("user", "Research: Together AI")],
                                json_schema=SCHEMA if schema else None, max_output_tokens=256, extra_headers=headers)
        kwargs: dict[str, Any] = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Research: Together AI"}],
                                  "max_completion_tokens": 256, "extra_headers": headers}
        if schema:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "result", "schema": SCHEMA, "strict": True}}
        before = await sdk_outcome(p, req, kwargs)
        after = await outcome(lambda: p.complete(req))
        assert after == before
        assert after[0] is Unavailable and after[1] == reason
    finally:
        await p.aclose()


async def test_sandbox_answer_reads_as_the_sdk_model(settings: Settings) -> None:
    """A real emulator answer (schema request) gives the same result both ways."""
    p = OpenAIProvider.from_settings(settings)
    try:
        req = CompletionRequest(model="gpt-4.1", messages=[ChatMessage("user", "Research: Together AI")],
                                json_schema=SCHEMA, max_output_tokens=512)
        kwargs = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Research: Together AI"}],
                  "max_completion_tokens": 512,
                  "response_format": {"type": "json_schema",
                                      "json_schema": {"name": "result", "schema": SCHEMA, "strict": True}}}
        before = await sdk_outcome(p, req, kwargs)
        after = await outcome(lambda: p.complete(req))
        assert isinstance(before, CompletionResult) and before.input_tokens > 0
        assert after == before
    finally:
        await p.aclose()
