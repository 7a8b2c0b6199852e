"""Part c — batched scraping: ``n`` ChatGPT question runs through ``InferenceService/CompleteStream``, which packs
them into Bright Data snapshots of ≤ 20 prompts and keeps at most ``brightdata_max_in_flight`` snapshots in flight
(the inference service's setting, fixed when the stack starts). The sandbox makes every snapshot take
``snapshot_s`` seconds (scaled).

Bound: ⌈n / 20 / cap⌉ × snapshot_s — the rounds of full snapshots the in-flight cap allows. Reported: the makespan
(first item sent → last answer received), its ratio to the bound, the snapshots submitted and the answers received.
The ratio above 1 is the polling delay (polls every 7.5 % of the expected snapshot duration, learned from the
dataset's recent snapshots; before any is known 7.5 % of the snapshot's age, at least ``brightdata_poll_seconds``:
reference/performance.md §3.2), each round's triggers (a slot is freed when progress says ``ready``, downloads have
their own budget) and the last round's downloads. ``submit_times_s`` (in the detail) says when each snapshot was
announced, so a late round can be told from a slow last download.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import grpc

from bench.common import ratio, say
from vantage.inference.v1 import inference_pb2, inference_pb2_grpc

BATCH = 20
QUESTIONS = (
    "What are the best GPU cloud providers for training large models?",
    "Which serverless inference platforms are fastest for open models?",
    "Where can I fine-tune Llama models cheaply?",
    "Which LLM APIs are best for a startup?",
)


async def _run(address: str, n: int, timeout_s: float) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)

        async def requests():
            for i in range(n):
                q = f"{QUESTIONS[i % len(QUESTIONS)]} (bench variant {i})"
                yield inference_pb2.CompleteStreamRequest(item=inference_pb2.StreamItem(
                    id=f"q{i}",
                    request=inference_pb2.CompleteRequest(
                        model="chatgpt", location="US", messages=[inference_pb2.Message(role="user", content=q)]
                    ),
                ))

        t0 = time.monotonic()
        submitted = answers = errors = 0
        error_codes: dict[str, int] = {}
        last = t0
        submit_times: list[float] = []
        async for ev in stub.CompleteStream(requests(), timeout=timeout_s):
            kind = ev.WhichOneof("kind")
            if kind == "batch_submitted":
                submitted += 1
                submit_times.append(round(time.monotonic() - t0, 3))
            elif kind == "result":
                last = time.monotonic()
                if ev.result.WhichOneof("outcome") == "error":
                    errors += 1
                    code = ev.result.error.code or "?"
                    error_codes[code] = error_codes.get(code, 0) + 1
                else:
                    answers += 1
        return {"makespan_s": round(last - t0, 3), "snapshots": submitted, "answers": answers, "errors": errors,
                "error_codes": error_codes, "submit_times_s": submit_times}


def run(address: str, *, n: int, cap: int, snapshot_s: float, poll_s: float, timeout_s: float = 300) -> dict[str, Any]:
    """Part c against the inference service at ``address`` (started with ``brightdata_max_in_flight = cap``)."""
    bound = math.ceil(n / BATCH / cap) * snapshot_s
    say(f"c. batched scraping: {n:,} chatgpt questions, snapshots of ≤ {BATCH} taking {snapshot_s:g} s, "
        f"≤ {cap} in flight, first poll after {poll_s:g} s → bound {bound:g} s")
    res = asyncio.run(_run(address, n, timeout_s))
    # When each "round" of snapshots began: the (k·cap+1)-th submission waits for a slot freed by round k.
    times = res.pop("submit_times_s")
    res["round_starts_s"] = times[::cap] if cap > 0 else []
    res["submit_times_s"] = times
    res.update(n=n, batch=BATCH, in_flight_cap=cap, snapshot_s=snapshot_s, poll_s=poll_s, bound_s=bound,
               makespan_over_bound=ratio(res["makespan_s"], bound))
    say(f"  makespan {res['makespan_s']:.2f} s vs bound {bound:g} s → {res['makespan_over_bound']}×; "
        f"{res['snapshots']} snapshots, {res['answers']} answers, {res['errors']} errors; rounds started at "
        f"{res['round_starts_s']} s")
    return res
