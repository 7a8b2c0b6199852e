"""Two inference replicas (processes) sharing one Bright Data token, one PostgreSQL and one 429 budget (issue 17).

Bright Data blocks an IP that receives 25 or more HTTP 429s within 5 minutes (/work/shared/reference/
providers-2026-12.md, "Rate-limit policy"); the budget keeps us at ≤ ``brightdata_429_budget`` (10) per window.
Each replica alone would keep itself at 10, so two would let 20 through; the budget is shared through the inference
service's tables (services/inference/shared_budget.py), so the sandbox — which counts every 429 it sends, and
blocks at 25 as Bright Data does — must see ≤ 10 in any window from both replicas together.

The sandbox answers 429 to 30 % of every Bright Data call (trigger, progress, download) for ``STORM_S`` from the
first Bright Data call, while both replicas collect their snapshots. Time is compressed 30× as in
tests/chaos/test_chaos_brightdata_429.py: the 5-minute windows of the budget and of the sandbox's block, the storm,
Retry-After and the back-off are divided by it. Checked: the most 429s the sandbox sent within one window ≤ budget,
the IP never blocked, every item answered, each trigger paid once, and every 429 is a row of the shared table,
received by both replicas.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest

from shared.procs import Child, start_child, stop_child
from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]

COMPRESSION = 30.0
WINDOW_S = 300.0 / COMPRESSION  # Bright Data's 5 minutes
STORM_S = 120.0 / COMPRESSION  # 2 minutes of 429s
RATE_429 = 0.30
BUDGET = 10  # settings.brightdata_429_budget (the default)
BLOCK_AT = 25
BATCHES_PER_REPLICA = 8
ITEMS_PER_BATCH = 2


def _req(replica: int, batch: int, item: int) -> pb.CompleteRequest:
    return pb.CompleteRequest(model="chatgpt", location="US", messages=[pb.Message(
        role="user", content=f"Which GPU clouds suit a seed lab? (replica {replica}, batch {batch}, item {item})")])


def _storm(rate: float) -> dict[str, object]:
    return {"endpoints": {"brightdata": {"rate_429": rate, "retry_after_s": 1.0 / COMPRESSION}}}


async def _drive(addresses: list[str], admin: httpx.AsyncClient) -> list[pb.CompleteBatchResponse]:
    async def end_storm() -> None:
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:  # poll with a deadline for the first Bright Data call
            eps = (await admin.get("/_sandbox/stats")).json()["endpoints"]
            if any(ep["calls"] for n, ep in eps.items() if n.startswith("brightdata.")):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(STORM_S)  # the storm's length (the scenario), not a wait for something
        (await admin.post("/_sandbox/config", json=_storm(0.0))).raise_for_status()

    storm = asyncio.create_task(end_storm())
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    try:
        async def one(r: int, b: int) -> pb.CompleteBatchResponse:
            items = [pb.BatchItem(id=f"{r}-{b}-{i}", request=_req(r, b, i)) for i in range(ITEMS_PER_BATCH)]
            stub = pb_grpc.InferenceServiceStub(channels[r])
            return await stub.CompleteBatch(pb.CompleteBatchRequest(items=items), timeout=240)

        responses = await asyncio.gather(*(one(r, b) for b in range(BATCHES_PER_REPLICA) for r in range(2)))
        assert storm.done(), "the replicas finished before the storm ended: its figures do not cover all of it"
        return list(responses)
    finally:
        storm.cancel()
        for ch in channels:
            await ch.close()


def test_two_replicas_share_one_429_budget(pg_url: str, tmp_path: Path) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    sandbox = start_child("sandbox", env={**base_env, "VANTAGE_LOG_LEVEL": "WARNING"}, log_dir=tmp_path)
    replicas: list[Child] = []
    try:
        root = f"http://{sandbox.address}"
        httpx.post(f"{root}/_sandbox/config", json={
            "seed": 1729, "brightdata_duration_s": 1.0, "brightdata_block_after_429s": BLOCK_AT,
            "brightdata_block_window_s": WINDOW_S, **_storm(RATE_429)}, timeout=10).raise_for_status()
        env = {**base_env, "VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_SANDBOX_URL": root, "VANTAGE_DATABASE_URL": pg_url,
               "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.05", "VANTAGE_BRIGHTDATA_MAX_BATCH": str(ITEMS_PER_BATCH),
               "VANTAGE_BATCH_LINGER_SECONDS": "0.02", "VANTAGE_GRACE_SECONDS": "1",
               "VANTAGE_BRIGHTDATA_429_BUDGET": str(BUDGET),
               "VANTAGE_BRIGHTDATA_429_WINDOW_SECONDS": str(WINDOW_S),
               "VANTAGE_BRIGHTDATA_429_BACKOFF_SECONDS": str(2.0 / COMPRESSION),
               "VANTAGE_BRIGHTDATA_429_BACKOFF_MAX_SECONDS": str(32.0 / COMPRESSION)}
        for i in range(2):
            replicas.append(start_child("inference", env={**env, "VANTAGE_METRICS_PORT": "0"},
                                        log_dir=tmp_path / f"i{i}"))

        async def main() -> tuple[list[pb.CompleteBatchResponse], dict[str, object]]:
            async with httpx.AsyncClient(base_url=root, timeout=10) as admin:
                responses = await _drive([r.address for r in replicas], admin)
                return responses, (await admin.get("/_sandbox/stats")).json()

        started = time.monotonic()
        responses, stats = asyncio.run(main())
        wall = time.monotonic() - started
        sync = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(sync, autocommit=True) as conn:
            rows, by_replica = conn.execute(
                "SELECT count(*), count(DISTINCT replica) FROM brightdata_429s").fetchone() or (0, 0)
    finally:
        for r in replicas:
            stop_child(r, grace=3)
        stop_child(sandbox, grace=3)

    bd = stats["brightdata"]  # type: ignore[index]
    limited = bd["rate_limited"]
    statuses = {n: ep["status"] for n, ep in stats["endpoints"].items()  # type: ignore[attr-defined]
                if n.startswith("brightdata.")}
    outcomes = [r.WhichOneof("outcome") for resp in responses for r in resp.results]
    errors = [r.error.message for resp in responses for r in resp.results if r.WhichOneof("outcome") == "error"]
    triggers = sum(bd["triggers"].values())
    expected = 2 * BATCHES_PER_REPLICA * ITEMS_PER_BATCH
    print(f"\nshared 429 budget, 2 inference replicas on one PostgreSQL, time compressed {COMPRESSION:g}x "
          f"({wall:.1f} s wall): storm {RATE_429:.0%} for {STORM_S:g} s, window {WINDOW_S:g} s, budget {BUDGET}; "
          f"sandbox 429s {limited['total']} in all, at most {limited['max_in_window']} in one window, blocked "
          f"{limited['blocked']}; shared rows {rows} from {by_replica} replicas; answered "
          f"{outcomes.count('response')}/{expected}; triggers paid {triggers} for {2 * BATCHES_PER_REPLICA} batches; "
          f"statuses {json.dumps(statuses)}")
    assert limited["total"] > 0, "the storm never hit"
    assert limited["max_in_window"] <= BUDGET, limited
    assert limited["blocked"] is False
    assert outcomes.count("response") == expected, errors[:3]
    assert triggers == 2 * BATCHES_PER_REPLICA  # a 429 means nothing was triggered: no batch paid twice
    assert rows == limited["total"] and by_replica == 2  # every 429, of both replicas, in the shared window
