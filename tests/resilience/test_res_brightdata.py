"""Bright Data faults (a paid submission): a failed trigger is repeated only after the idempotency check (the
dataset's snapshot list shows no snapshot was created), a garbled download is downloaded again, a dead trigger
endpoint trips the circuit, and a 429 shrinks the adaptive in-flight cap — against a private sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from res_testkit import endpoint, stats

from services.inference.providers import ChatMessage, CompletionRequest, CompletionResult
from services.inference.providers.brightdata import CHATGPT, BrightDataProvider, new_http_client
from shared.config import Settings
from shared.errors import Unavailable
from shared.grpc_client import Deadline
from shared.resilience import CIRCUIT_OPEN

pytestmark = pytest.mark.integration

TRIGGER = "brightdata.trigger"


def req(i: int) -> CompletionRequest:
    return CompletionRequest(model="chatgpt", messages=[ChatMessage("user", f"Best GPU clouds for training? #{i}")],
                             location="US")


@pytest.fixture
async def bd(res_settings: Settings, knobs: Any) -> AsyncIterator[Any]:
    await knobs({"brightdata_duration_s": 0.2})
    clients: list[httpx.AsyncClient] = []

    def make(cap: int = 10, **overrides: Any) -> BrightDataProvider:
        s = res_settings.model_copy(update=overrides)
        http = new_http_client(s)
        clients.append(http)
        return BrightDataProvider(s, CHATGPT, http, anyio.CapacityLimiter(cap), has_key=True)

    yield make
    for c in clients:
        await c.aclose()


def triggers_accepted(st: dict[str, Any]) -> int:
    return int(st["brightdata"]["triggers"].get(CHATGPT.dataset_id, 0))


async def test_a_failed_trigger_is_repeated_after_checking_no_snapshot_was_created(
    bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    provider = bd()
    # Seed 32 draws "fault, fault, ok" on the trigger endpoint at rate 0.5: two 500s, then the trigger is accepted.
    await knobs({"seed": 32, "endpoints": {TRIGGER: {"rate_500": 0.5}}})
    outcomes = await provider.complete_batch([req(i) for i in range(3)], deadline=Deadline(30))
    assert all(isinstance(o, CompletionResult) for o in outcomes)
    st = await stats(sandbox_admin)
    assert (await endpoint(sandbox_admin, TRIGGER))["calls"] == 3  # two failed triggers, then one accepted
    assert triggers_accepted(st) == 1  # exactly one paid snapshot
    assert st["brightdata"]["records_billed"][CHATGPT.dataset_id] == 3


async def foreign_trigger(admin: httpx.AsyncClient, prompt: str) -> str:
    """A snapshot triggered by another client of the same account (not this provider)."""
    r = await admin.post("/brightdata/datasets/v3/trigger", params={"dataset_id": CHATGPT.dataset_id},
                         json=[{"url": CHATGPT.url, "prompt": prompt, "index": 1}],
                         headers={"Authorization": "Bearer sandbox-key"})
    assert r.status_code == 200, r.text
    return str(r.json()["snapshot_id"])


async def test_a_garbled_trigger_answer_adopts_the_snapshot_it_created(
    bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    provider = bd()
    await knobs({"endpoints": {TRIGGER: {"rate_malformed": 1.0}}})  # every trigger works, its answer is garbled
    outcomes = await provider.complete_batch([req(i) for i in range(3)], deadline=Deadline(30))
    assert all(isinstance(o, CompletionResult) for o in outcomes)
    st = await stats(sandbox_admin)
    assert triggers_accepted(st) == 1  # adopted, not paid twice


async def test_another_clients_snapshot_is_never_taken_for_ours(
    bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    # The only snapshot created since our failed trigger is someone else's: its records carry other prompts, so it
    # is not adopted (issue 17: never "the single unknown snapshot"); each failed trigger is verified and repeated.
    provider = bd()
    await foreign_trigger(sandbox_admin, "someone else's question")
    await knobs({"endpoints": {TRIGGER: {"rate_500": 1.0}}})
    with pytest.raises(Unavailable):
        await provider.complete_batch([req(0)], deadline=Deadline(30))
    st = await stats(sandbox_admin)
    assert triggers_accepted(st) == 1  # the foreign one only: nothing of ours was paid for, nothing adopted
    attempts = provider._settings.provider_max_attempts
    assert (await endpoint(sandbox_admin, TRIGGER))["calls"] == 1 + attempts


async def test_a_failed_trigger_is_repeated_past_foreign_snapshots_once_none_is_ours(
    bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    provider = bd()
    await foreign_trigger(sandbox_admin, "first foreign question")
    await foreign_trigger(sandbox_admin, "second foreign question")
    # Seed 32 draws "fault, fault, ok" at rate 0.5: two 500s (each checked: two foreign snapshots, neither ours).
    await knobs({"seed": 32, "endpoints": {TRIGGER: {"rate_500": 0.5}}})
    outcomes = await provider.complete_batch([req(0)], deadline=Deadline(30))
    assert all(isinstance(o, CompletionResult) for o in outcomes)
    assert triggers_accepted(await stats(sandbox_admin)) == 3  # two foreign + exactly one of ours


async def test_a_failed_trigger_is_not_repeated_when_its_outcome_is_ambiguous(
    bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient
) -> None:
    provider = bd()
    await knobs({"endpoints": {TRIGGER: {"rate_500": 1.0}, "brightdata.snapshots": {"rate_500": 1.0}}})
    with pytest.raises(Unavailable) as ei:
        await provider.submit_batch([req(0)], deadline=Deadline(30))
    assert "the trigger was not repeated: the snapshot list could not be read" in ei.value.message
    assert (await endpoint(sandbox_admin, TRIGGER))["calls"] == 1  # ours (failed), never repeated


async def test_a_garbled_download_is_downloaded_again(bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient) -> None:
    provider = bd()
    await knobs({"seed": 34, "endpoints": {"brightdata.snapshot": {"rate_malformed": 0.5}}})  # bad, bad, ok
    outcomes = await provider.complete_batch([req(i) for i in range(4)], deadline=Deadline(30))
    assert all(isinstance(o, CompletionResult) for o in outcomes)
    ep = await endpoint(sandbox_admin, "brightdata.snapshot")
    assert ep["faults"].get("malformed", 0) >= 1


async def test_a_dead_trigger_endpoint_opens_the_circuit(bd: Any, knobs: Any, sandbox_admin: httpx.AsyncClient) -> None:
    provider = bd(circuit_failure_threshold=2, circuit_cooldown_seconds=30, provider_max_attempts=1)
    await knobs({"endpoints": {TRIGGER: {"rate_503": 1.0}}})
    for i in range(2):
        with pytest.raises(Unavailable):
            await provider.submit_batch([req(i)], deadline=Deadline(10))
    with pytest.raises(Unavailable) as ei:
        await provider.submit_batch([req(9)], deadline=Deadline(10))
    assert ei.value.reason == CIRCUIT_OPEN and ei.value.retry_after is not None and ei.value.retry_after > 25
    assert (await endpoint(sandbox_admin, TRIGGER))["calls"] == 2
    assert provider.in_flight.borrowed_tokens == 0  # no slot kept by the refused batches


async def test_a_trigger_429_shrinks_the_in_flight_cap(bd: Any, knobs: Any) -> None:
    provider = bd(cap=20, retry_attempts=3)
    await knobs({"seed": 32, "endpoints": {TRIGGER: {"rate_429": 0.5, "retry_after_s": 0}}})  # 429, 429, ok
    await provider.submit_batch([req(0)], deadline=Deadline(30))
    assert provider.in_flight.total_tokens == 16  # 20 → 18 → 16 after the two 429s (never above 20)
    assert provider.guard.status()["max_limit"] == 20
