"""Latency/fault knobs, in-flight and cancellation tracking, admin endpoints."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from sandbox_testkit import API_KEY, Sandbox, poll_until
from tavily import AsyncTavilyClient

from services.sandbox.config import SandboxSettings
from services.sandbox.state import SandboxState

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Company: Cohere"}]}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def test_hang_cancelled_client_is_seen_within_100ms(sandbox: Sandbox) -> None:
    client = AsyncOpenAI(base_url=sandbox.urls["openai"], api_key=API_KEY, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(**CHAT, extra_headers={"X-Sandbox-Fault": "hang"})
    gave_up = time.time()

    async def cancelled() -> list:
        return (await sandbox.stats())["cancellations"]

    [event] = await poll_until(cancelled, within=2)
    assert event["endpoint"] == "openai.chat_completions" and event["phase"] == "hang"
    assert event["at"] - gave_up < 0.1
    stats = await sandbox.stats()
    ep = stats["endpoints"]["openai.chat_completions"]
    assert ep["cancelled"] == 1 and ep["in_flight"] == 0 and ep["status"] == {}


async def test_slow_latency_cancel_and_in_flight(sandbox: Sandbox) -> None:
    await sandbox.configure({"endpoints": {"tavily.search": {"latency_s": 0.4}}})
    tv = AsyncTavilyClient(api_key=API_KEY, api_base_url=sandbox.urls["tavily"])
    tasks = [asyncio.create_task(tv.search(f"Cohere {i}")) for i in range(3)]

    async def three_in_flight() -> bool:
        return (await sandbox.stats())["endpoints"].get("tavily.search", {}).get("in_flight") == 3

    # All three are inside the server at once: the latency sleeps do not serialise requests.
    await poll_until(three_in_flight, within=5)
    await asyncio.gather(*tasks)
    stats = await sandbox.stats()
    ep = stats["endpoints"]["tavily.search"]
    assert ep["in_flight"] == 0 and ep["max_in_flight"] == 3 and ep["status"] == {"200": 3}

    # A client that gives up during injected latency is recorded as cancelled.
    async with httpx.AsyncClient(timeout=0.15) as h:
        with pytest.raises(httpx.ReadTimeout):
            await h.post(sandbox.urls["tavily"] + "/search", json={"query": "x"}, headers=AUTH)

    async def latency_cancel() -> list:
        return [c for c in (await sandbox.stats())["cancellations"] if c["phase"] == "latency"]

    await poll_until(latency_cancel, within=2)


async def test_random_fault_rates_and_runtime_config(sandbox: Sandbox) -> None:
    cfg = await sandbox.configure({"endpoints": {"openai": {"rate_500": 1.0}}})
    assert cfg["endpoints"]["openai"]["rate_500"] == 1.0
    client = AsyncOpenAI(base_url=sandbox.urls["openai"], api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(**CHAT)
    # Merge-patch null removes the override again.
    await sandbox.configure({"endpoints": {"openai": None}})
    await client.chat.completions.create(**CHAT)
    # Invalid knobs are rejected and leave the config unchanged.
    bad = await sandbox.admin.post("/_sandbox/config", json={"default": {"rate_429": 3}})
    assert bad.status_code == 400
    assert (await sandbox.admin.get("/_sandbox/config")).json()["default"]["rate_429"] == 0
    stats = await sandbox.stats()
    assert stats["endpoints"]["openai.chat_completions"]["status"] == {"200": 1, "500": 1}
    assert (await sandbox.admin.post("/_sandbox/reset")).status_code == 200
    assert (await sandbox.stats())["endpoints"] == {}


async def test_wire_level_faults(sandbox: Sandbox) -> None:
    url = sandbox.urls["openai"] + "/chat/completions"
    async with httpx.AsyncClient(timeout=5) as h:
        r = await h.post(url, json=CHAT, headers={**AUTH, "X-Sandbox-Fault": "malformed"})
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()
        with pytest.raises(httpx.RemoteProtocolError):
            await h.post(url, json=CHAT, headers={**AUTH, "X-Sandbox-Fault": "truncated"})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            await h.post(url, json=CHAT, headers={**AUTH, "X-Sandbox-Fault": "reset"})
        r503 = await h.post(url, json=CHAT, headers={**AUTH, "X-Sandbox-Fault": "503"})
        assert r503.status_code == 503 and r503.json()["error"]["type"] == "server_error"
        tv = await h.post(
            sandbox.urls["tavily"] + "/search",
            json={"query": "q"},
            headers={**AUTH, "X-Sandbox-Fault": "429"},
        )
        assert tv.status_code == 429 and "error" in tv.json()["detail"]
        # The server survives all of it.
        assert (await h.get(sandbox.root + "/healthz")).json() == {"status": "ok"}
    faults = (await sandbox.stats())["endpoints"]["openai.chat_completions"]["faults"]
    assert faults == {"503": 1, "malformed": 1, "reset": 1, "truncated": 1}


async def test_retry_header_follows_knob(sandbox: Sandbox) -> None:
    await sandbox.configure({"suppress_sdk_retries": False, "default": {"retry_after_s": 0}})
    client = AsyncOpenAI(base_url=sandbox.urls["openai"], api_key=API_KEY, max_retries=1)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(**CHAT, extra_headers={"X-Sandbox-Fault": "429"})
    # Without x-should-retry: false the SDK retried once on its own.
    assert (await sandbox.stats())["endpoints"]["openai.chat_completions"]["calls"] == 2


def test_seeded_draws_are_reproducible() -> None:
    def draws(seed: int) -> list:
        state = SandboxState(SandboxSettings(seed=seed))
        state.update_knobs(
            {"default": {"latency_s": 0.05, "latency_cv": 1.0, "rate_429": 0.3, "rate_hang": 0.1}}
        )
        ep = state.knobs.endpoint("tavily.search")
        return [
            (state.draw_fault("tavily.search", ep), state.draw_latency("tavily.search", ep))
            for _ in range(50)
        ]

    a, b, c = draws(1), draws(1), draws(2)
    assert a == b and a != c
    kinds = [k for k, _ in a]
    assert kinds.count("429") > 5 and None in kinds
    lat = [x for _, x in a]
    assert min(lat) < 0.05 < max(lat)  # lognormal spread around the mean


def test_request_keyed_draws_do_not_depend_on_arrival_order() -> None:
    """``fault_draws: "request"``: a body's n-th attempt gets the same fault whatever came in between, each attempt
    is a fresh draw, and the rates hold. A retry is not doomed to repeat its fault because the providers' errors
    injected here are transient for the same request: the OpenAI / Anthropic SDKs resend it unchanged on
    408/409/429/≥ 500 (providers.md §3.3, §4.3)."""

    def faults(order: list[bytes], seed: int = 7) -> dict[tuple[bytes, int], str | None]:
        state = SandboxState(SandboxSettings(seed=seed))
        state.update_knobs({"fault_draws": "request", "default": {"rate_429": 0.2, "rate_500": 0.1}})
        ep = state.knobs.endpoint("tavily.search")
        seen: dict[bytes, int] = {}
        out = {}
        for body in order:
            n = seen[body] = seen.get(body, -1) + 1
            out[(body, n)] = state.draw_fault("tavily.search", ep, body)
        return out

    bodies = [f'{{"query": "company {i}"}}'.encode() for i in range(400)]
    forward = faults([b for b in bodies for _ in range(3)])
    backward = faults([b for _ in range(3) for b in reversed(bodies)])
    assert forward == backward
    assert forward != faults([b for b in bodies for _ in range(3)], seed=8)
    firsts = [forward[(b, 0)] for b in bodies]
    assert 0.2 < sum(f is not None for f in firsts) / len(firsts) < 0.4
    assert any(forward[(b, 0)] is not None and forward[(b, 1)] is None for b in bodies)
    # After a reset the same bodies start again at attempt 0.
    state = SandboxState(SandboxSettings(seed=7))
    state.update_knobs({"fault_draws": "request", "default": {"rate_429": 0.2, "rate_500": 0.1}})
    ep = state.knobs.endpoint("tavily.search")
    first = [state.draw_fault("tavily.search", ep, b) for b in bodies[:50]]
    state.reset()
    assert [state.draw_fault("tavily.search", ep, b) for b in bodies[:50]] == first
