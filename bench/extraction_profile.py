"""Micro-benchmark of the extraction service's pure work on part a's typical answer (no gRPC, no threads).

``python -m bench.extraction_profile [--calls N] [--profile]`` prints µs per call of :func:`core.analyze` and of
the whole ``Extract`` servicer path (serialized request → decoded request → servicer → serialized response, as the
server does it, minus the gRPC transport) on :func:`bench.ceiling.typical_answer`, best of five rounds of N calls;
``--profile`` adds cProfile listings of N calls of the servicer path: the top 30 functions by own time and by
cumulative time (cProfile inflates small functions; ``py-spy record -p <pid>`` on the running service is the
sampling view, see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from google.protobuf import json_format

from bench.ceiling import typical_answer
from services.extraction import core
from services.extraction.server import ExtractionServicer
from shared.config import Settings
from vantage.extraction.v1 import extraction_pb2 as pb


def _args(req: dict) -> tuple:
    org = core.Org(req["org"]["name"], req["org"]["domain"], tuple(req["org"]["nameVariations"]))
    cites = [(c["url"], c["title"]) for c in req["providerCitations"]]
    return req["answerMarkdown"], org, req["knownCompetitors"], cites


def _best_us(fn, calls: int) -> float:
    """Best of five rounds of ``calls`` calls, in µs of this process's CPU per call (steadier than wall time on a
    shared machine)."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t0) / calls)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--profile", action="store_true")
    ns = ap.parse_args()
    req = typical_answer()
    answer, org, known, cites = _args(req)
    cfg = core.ExtractionConfig()
    core.warm_up()
    print(f"answer: {len(answer)} chars, {len(cites)} provider citations")
    print(f"core.analyze: {_best_us(lambda: core.analyze(answer, org, known, cites, cfg), ns.calls):.1f} µs/call")

    servicer = ExtractionServicer(Settings())
    data = json_format.ParseDict(req, pb.ExtractRequest()).SerializeToString()

    async def servicer_loop(n: int) -> None:
        for _ in range(n):
            request = pb.ExtractRequest.FromString(data)  # a fresh message per call, as the server decodes it
            (await servicer.Extract(request, None)).SerializeToString()

    loop = asyncio.new_event_loop()
    try:
        us = _best_us(lambda: loop.run_until_complete(servicer_loop(ns.calls)), 1) / ns.calls
    finally:
        loop.close()
    print(f"servicer Extract (request → serialized response, no gRPC transport): {us:.1f} µs/call")

    if ns.profile:
        loop = asyncio.new_event_loop()
        try:
            prof = cProfile.Profile()
            prof.enable()
            loop.run_until_complete(servicer_loop(ns.calls))
            prof.disable()
        finally:
            loop.close()
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
