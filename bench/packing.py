"""Prompt packing — ``n`` small enrichment items through ``InferenceService/CompleteBatch`` (packing mode), measured
three ways in one run, against the sandbox's OpenAI emulator at a fixed latency:

1. **packed** (``no_cache``): ≤ 20 items per LLM call → ⌈n / 20⌉ calls (150 items → 8);
2. **one call per item** (``no_cache``, ``max_items_per_call = 1``): n calls, the pre-packing baseline;
3. **re-run** (cache on): every item is a cache hit → 0 calls, $0.

Reported per mode: LLM calls (the response's ``llm_calls`` and the sandbox's own count of chat-completion requests),
wall time (s), USD and tokens; then the ratios (calls, wall time) and the time the calls alone would take under a
provider limit of ``rpm`` requests per minute (the issue's 15 RPM: 150 calls ≈ 10 minutes, 8 calls ≈ 32 s).

Wall time depends on the inference service's ``openai_concurrency``: with c calls in flight, one call per item takes
about ⌈n / c⌉ × latency and packing ⌈⌈n / 20⌉ / c⌉ × latency, plus the (longer) generation of packed answers.

Usage: ``python -m bench.packing`` (own sandbox + inference on free ports, a temporary SQLite database; prints one
JSON line), or ``run(address, sandbox_url)`` against a running stack. Environment: ``BENCH_PACK_N`` (150),
``BENCH_PACK_LATENCY_S`` (0.5), ``BENCH_PACK_CONCURRENCY`` (10, own stack only).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx

from vantage.inference.v1 import inference_pb2 as pb
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

CHAT = "openai.chat_completions"
MODEL = "gpt-4.1-mini"
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "canonical": {"type": "string"},
        "variations": {"type": "array", "items": {"type": "string"}},
        "segment": {"type": "string", "enum": ["cloud", "lab", "other"]},
    },
}


def _request(n: int, instruction: str, *, per_call: int = 0, no_cache: bool = False) -> pb.CompleteBatchRequest:
    return pb.CompleteBatchRequest(
        model=MODEL,
        instruction=instruction,
        item_json_schema=json.dumps(ITEM_SCHEMA),
        items=[pb.BatchItem(id=str(i), input_json=json.dumps({"name": f"Bench Org {i} Labs"})) for i in range(n)],
        max_items_per_call=per_call,
        no_cache=no_cache,
    )


def _chat_calls(sandbox_url: str) -> int:
    stats = httpx.get(f"{sandbox_url}/_sandbox/stats", timeout=10).json()
    return int(stats["endpoints"].get(CHAT, {}).get("calls", 0))


async def _measure(stub: pb_grpc.InferenceServiceStub, sandbox_url: str, req: pb.CompleteBatchRequest) -> dict[str, Any]:
    before = await asyncio.to_thread(_chat_calls, sandbox_url)
    t0 = time.perf_counter()
    r = await stub.CompleteBatch(req, timeout=600)
    wall = time.perf_counter() - t0
    sandbox_calls = await asyncio.to_thread(_chat_calls, sandbox_url) - before
    failed = sum(1 for x in r.results if x.WhichOneof("outcome") != "response")
    return {
        "llm_calls": r.llm_calls, "sandbox_calls": sandbox_calls, "cache_hits": r.cache_hits, "failed": failed,
        "wall_s": round(wall, 3), "cost_usd": round(r.cost_usd, 6),
        "input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens,
    }


async def _run(address: str, sandbox_url: str, n: int) -> dict[str, Any]:
    # A fresh instruction per bench run: nothing from an earlier run can be in the cache.
    instruction = f"Give each organisation's canonical name, name variations and segment. (bench {uuid.uuid4().hex})"
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        packed = await _measure(stub, sandbox_url, _request(n, instruction, no_cache=True))
        per_item = await _measure(stub, sandbox_url, _request(n, instruction, per_call=1, no_cache=True))
        rerun = await _measure(stub, sandbox_url, _request(n, instruction))
    return {"packed": packed, "per_item": per_item, "rerun": rerun}


def run(
    address: str | None = None,
    sandbox_url: str | None = None,
    *,
    n: int | None = None,
    latency_s: float | None = None,
    rpm: int = 15,
) -> dict[str, Any]:
    """Measure packing (see the module docstring) against the inference service at ``address`` and the sandbox at
    ``sandbox_url`` (both None: start both here, on a temporary database). Sets the sandbox's chat-completion
    latency to ``latency_s`` for the measurement and puts the previous knobs back. Returns the figures as a dict."""
    n = n if n is not None else int(os.environ.get("BENCH_PACK_N", 150))
    latency_s = latency_s if latency_s is not None else float(os.environ.get("BENCH_PACK_LATENCY_S", 0.5))
    stack = None
    concurrency: int | None = None
    if address is None or sandbox_url is None:
        from shared.procs import start_stack

        concurrency = int(os.environ.get("BENCH_PACK_CONCURRENCY", 10))
        db = Path(tempfile.mkdtemp(prefix="vantage-bench-pack-")) / "bench.db"
        stack = start_stack(("sandbox", "inference"), env={
            "VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_SANDBOX_LOG_LEVEL": "warning",
            "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "VANTAGE_OPENAI_CONCURRENCY": str(concurrency),
        })
        address = stack.children["inference"].address
        sandbox_url = f"http://{stack.children['sandbox'].address}"
    try:
        before = httpx.get(f"{sandbox_url}/_sandbox/config", timeout=10).json()
        httpx.post(f"{sandbox_url}/_sandbox/config", timeout=10,
                   json={"endpoints": {CHAT: {"latency_s": latency_s, "latency_cv": 0.0}}}).raise_for_status()
        try:
            res = asyncio.run(_run(address, sandbox_url, n))
        finally:
            restore = {"endpoints": {CHAT: before.get("endpoints", {}).get(CHAT)}}
            httpx.post(f"{sandbox_url}/_sandbox/config", json=restore, timeout=10)
    finally:
        if stack is not None:
            stack.stop(grace=5)
    packed, per_item = res["packed"], res["per_item"]
    res.update(
        items=n,
        latency_s=latency_s,
        openai_concurrency=concurrency,
        expected_packed_calls=math.ceil(n / 20),
        calls_ratio=round(per_item["llm_calls"] / packed["llm_calls"], 2) if packed["llm_calls"] else None,
        wall_speedup=round(per_item["wall_s"] / packed["wall_s"], 2) if packed["wall_s"] else None,
        cost_ratio=round(per_item["cost_usd"] / packed["cost_usd"], 2) if packed["cost_usd"] else None,
        rpm=rpm,
        # Calls alone under an rpm limit: the first minute's calls go at once, the rest wait for their minute.
        rpm_bound_s={"packed": 60.0 * ((packed["llm_calls"] - 1) // rpm),
                     "per_item": 60.0 * ((per_item["llm_calls"] - 1) // rpm)},
    )
    return res


def summary_line(res: dict[str, Any]) -> str:
    """One human line: calls, wall times and the re-run."""
    p, s, r = res["packed"], res["per_item"], res["rerun"]
    return (
        f"packing: {res['items']} items → {p['llm_calls']} calls ({p['wall_s']:.2f} s, ${p['cost_usd']:.4f}) vs "
        f"{s['llm_calls']} calls one per item ({s['wall_s']:.2f} s, ${s['cost_usd']:.4f}) at {res['latency_s']:g} s "
        f"latency: ×{res['calls_ratio']} fewer calls, ×{res['wall_speedup']} faster; re-run {r['llm_calls']} calls, "
        f"{r['cache_hits']} hits, ${r['cost_usd']:.4f}"
    )


if __name__ == "__main__":
    result = run()
    sys.stderr.write(summary_line(result) + "\n")
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
