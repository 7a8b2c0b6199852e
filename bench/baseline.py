"""``python -m bench.baseline FILE.csv OUT.json``: the replaced system's strategy, as the baseline of part b.

The script Vantage replaces worked in phases: search every company first (here: at most ``search_concurrency``
calls at once, the most favourable reading), then classify them in fixed batches of ``inference_concurrency``,
each batch awaited with ``asyncio.gather`` before the next starts (then its parses, gathered too). A batch lasts as
long as its slowest LLM call, so with i.i.d. latencies a gathered batch of B delivers ~1/H_B of the streaming
throughput (reference/performance.md §3.1: B = 50, lognormal CV 0.5 → roughly ½).

It calls the same gRPC services, with the same requests, as the orchestrator (search → inference → extraction),
but persists nothing (no database at all), which only favours it. Writes {makespan_s, search_phase_s,
llm_phase_s, done, failed, cpu_s} to OUT.json.
"""

from __future__ import annotations

import asyncio
import csv
import json
import resource
import sys
import time
from typing import Any

from services.orchestrator.app.jobs.research import user_prompt
from shared.config import get_settings
from shared.grpc_client import Channels
from vantage.extraction.v1 import extraction_pb2, extraction_pb2_grpc
from vantage.inference.v1 import inference_pb2, inference_pb2_grpc
from vantage.search.v1 import search_pb2, search_pb2_grpc


def read_companies(path: str) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        return [(r["company"], r.get("domain", "")) for r in csv.DictReader(f)]


async def run(companies: list[tuple[str, str]]) -> dict[str, Any]:
    settings = get_settings()
    channels = Channels(settings)
    search = search_pb2_grpc.SearchServiceStub(channels.for_service("search"))
    inference = inference_pb2_grpc.InferenceServiceStub(channels.for_service("inference"))
    extraction = extraction_pb2_grpc.ExtractionServiceStub(channels.for_service("extraction"))
    timeout = settings.rpc_timeout_seconds
    try:
        schema = await extraction.GetClassificationSchema(extraction_pb2.GetClassificationSchemaRequest(), timeout=30)
        t0 = time.monotonic()

        # Phase 1: every search, then a barrier.
        sem = asyncio.Semaphore(settings.search_concurrency)

        async def one_search(company: str, domain: str) -> tuple[str, list[str]]:
            async with sem:
                r = await search.SearchCompany(
                    search_pb2.SearchCompanyRequest(
                        company=company, domain=domain, context_char_budget=settings.context_char_budget
                    ),
                    timeout=timeout,
                )
            return r.llm_context, [x.url for x in r.results]  # keep only what the next phase needs

        found = await asyncio.gather(*(one_search(c, d) for c, d in companies), return_exceptions=True)
        t1 = time.monotonic()

        # Phase 2: fixed batches of B LLM calls, each batch awaited with gather, then its parses.
        batch = settings.inference_concurrency
        done = failed = 0

        async def classify(i: int) -> None:
            company, domain = companies[i]
            ctx, urls = found[i]  # type: ignore[misc]
            resp = await inference.Complete(
                inference_pb2.CompleteRequest(
                    model=settings.research_model,
                    messages=[
                        inference_pb2.Message(role="system", content=schema.system_prompt),
                        inference_pb2.Message(role="user", content=user_prompt(company, domain, ctx)),
                    ],
                    json_schema=schema.json_schema, schema_name="classification",
                ),
                timeout=timeout,
            )
            await extraction.ParseClassification(
                extraction_pb2.ParseClassificationRequest(
                    classification_json=resp.json, search_result_urls=urls, company=company
                ),
                timeout=timeout,
            )

        ok_idx = [i for i, f in enumerate(found) if not isinstance(f, BaseException)]
        failed += len(companies) - len(ok_idx)
        for start in range(0, len(ok_idx), batch):
            outcomes = await asyncio.gather(*(classify(i) for i in ok_idx[start : start + batch]),
                                            return_exceptions=True)
            bad = sum(1 for o in outcomes if isinstance(o, BaseException))
            failed += bad
            done += len(outcomes) - bad
        t2 = time.monotonic()
    finally:
        await channels.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "n": len(companies),
        "makespan_s": round(t2 - t0, 3),
        "search_phase_s": round(t1 - t0, 3),
        "llm_phase_s": round(t2 - t1, 3),
        "batch": batch,
        "done": done,
        "failed": failed,
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "max_rss_mib": round(ru.ru_maxrss / 1024, 1),
    }


def main() -> None:
    path, out = sys.argv[1], sys.argv[2]
    # The default asyncio loop, as the orchestrator's CLI uses (``asyncio.run``): the same footing for both.
    result = asyncio.run(run(read_companies(path)))
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
