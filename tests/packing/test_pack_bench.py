"""bench/packing.py stays runnable: its figures on a small input against an in-process inference service."""

from __future__ import annotations

import asyncio

import pytest

from bench.packing import run, summary_line
from shared.grpc_server import RunningServer

pytestmark = pytest.mark.integration


async def test_the_packing_bench_measures_packed_per_item_and_rerun(inference: RunningServer, sandbox_url: str) -> None:
    # run() drives its own event loop (it is a bench entry point): give it a thread.
    res = await asyncio.to_thread(run, inference.address, sandbox_url, n=25, latency_s=0.05)
    assert (res["packed"]["llm_calls"], res["packed"]["sandbox_calls"]) == (2, 2)
    assert (res["per_item"]["llm_calls"], res["per_item"]["sandbox_calls"]) == (25, 25)
    assert (res["rerun"]["llm_calls"], res["rerun"]["cache_hits"], res["rerun"]["cost_usd"]) == (0, 25, 0)
    assert res["calls_ratio"] == 12.5 and res["expected_packed_calls"] == 2
    assert "25 items → 2 calls" in summary_line(res)
