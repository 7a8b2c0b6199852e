"""The sandbox's CPU per researched item, measured alone (issue 16 item 6: ≤ 8 ms).

``.venv/bin/python -m bench.sandbox_cpu [--n 300] [--concurrency 8] [--profile FILE]``

Starts the sandbox (``python -m services.sandbox --port 0``, logs at WARNING) and drives exactly the sandbox requests
one researched item makes, for N distinct companies (``"<name> <tag><i>"`` as in :mod:`bench.pipeline`, so no two
items share a query):

1. ``POST /tavily/search`` through tavily-python's ``AsyncTavilyClient.search`` with the search service's
   parameters (:class:`shared.config.Settings`: the company query template, ``search_depth`` advanced,
   ``max_results`` 20, ``include_raw_content`` true, ``include_usage`` true);
2. ``POST /openai/v1/chat/completions`` through the openai SDK's ``AsyncOpenAI.chat.completions.create`` with the
   classification system prompt and ``json_schema`` response format of the extraction service
   (:mod:`services.extraction.classification`), and the user prompt of :func:`services.orchestrator.app.jobs.research.user_prompt`
   around the LLM context the search service builds from the kept results
   (:func:`services.search.core.format_llm_context`, 60,000 characters, 15,000 per source).

The figure is the sandbox *process's* CPU time (user + system, ``/proc/<pid>/stat``) over the N items divided by N,
in milliseconds — CPU time, not wall time, so other load on a shared machine does not count. The emulated latencies
are set to 0 (``POST /_sandbox/config``) so the run is short; sleeping costs no CPU. A warm-up of
``--warmup`` items (not counted) comes first. ``--profile FILE`` attaches ``py-spy record -f raw`` (collapsed
stacks) to the sandbox for the measured items, writes them to FILE and prints the top entries by own time.

Prints one JSON line: ``{"sandbox_cpu_ms_per_item": float, "n": int, "wall_s": float, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, child_env, proc_cpu_s, sandbox_config, say
from bench.pipeline import _bases

#: The sandbox's credentials are any non-empty key (require_auth only checks presence).
SANDBOX_KEY = "sk-sandbox-bench"
#: Goal of issue 16 item 6 (ms of sandbox CPU per researched item).
GOAL_MS = 8.0


def start_sandbox(tmp: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """Start ``python -m services.sandbox --port 0``; returns (process, base URL, pid of the sandbox itself)."""
    ready = tmp / "sandbox.ready"
    cmd = [sys.executable, "-m", "services.sandbox", "--host", "127.0.0.1", "--port", "0", "--ready-file", str(ready)]
    with open(tmp / "sandbox.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"sandbox did not start: {(tmp / 'sandbox.log').read_text()[-2000:]}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return proc, f"http://127.0.0.1:{info['port']}", int(info["pid"])


class ItemDriver:
    """The sandbox requests of one researched item, through the official SDKs."""

    def __init__(self, base_url: str) -> None:
        from openai import AsyncOpenAI
        from tavily import AsyncTavilyClient

        from services.extraction import classification
        from shared.config import Settings

        self.settings = s = Settings()
        self.tavily = AsyncTavilyClient(api_key=SANDBOX_KEY, api_base_url=f"{base_url}/tavily")
        self.openai = AsyncOpenAI(api_key=SANDBOX_KEY, base_url=f"{base_url}/openai/v1", max_retries=0)
        cats = list(s.categories)
        self.schema = classification.classification_schema(cats)
        self.system = classification.system_prompt(cats)

    async def item(self, company: str, domain: str) -> int:
        """Search + classify one company; returns the classification's length (characters)."""
        from services.orchestrator.app.jobs.research import user_prompt
        from services.search.core import Hit, company_query, filter_hits, format_llm_context

        s = self.settings
        body = await self.tavily.search(
            company_query(s.company_query_template, company, domain),
            search_depth=s.search_depth,
            max_results=s.search_max_results,
            include_raw_content=s.search_include_raw_content,
            include_usage=True,
        )
        hits = [Hit(title=r.get("title") or "", url=r["url"], content=r.get("content") or "",
                    raw_content=r.get("raw_content") or "", score=float(r.get("score") or 0.0))
                for r in body.get("results") or []]
        kept, _ = filter_hits(hits, s.search_min_score)
        context, _ = format_llm_context(kept, s.context_char_budget, s.context_source_char_cap, official_domain=domain)
        resp = await self.openai.chat.completions.create(
            model=s.research_model,
            messages=[{"role": "system", "content": self.system},
                      {"role": "user", "content": user_prompt(company, domain, context)}],
            max_completion_tokens=s.max_output_tokens,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "classification", "schema": self.schema, "strict": True}},
        )
        return len(resp.choices[0].message.content or "")

    async def run(self, companies: list[tuple[str, str]], concurrency: int) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(c: tuple[str, str]) -> None:
            async with sem:
                if await self.item(*c) <= 0:
                    raise RuntimeError(f"empty classification for {c[0]!r}")

        await asyncio.gather(*(one(c) for c in companies))

    async def close(self) -> None:
        await self.openai.close()
        await self.tavily.close()


def companies(n: int, tag: str) -> list[tuple[str, str]]:
    bases = _bases()
    return [(f"{bases[i % len(bases)][0]} {tag}{i:05d}", bases[i % len(bases)][1]) for i in range(n)]


def measure(n: int = 300, concurrency: int = 8, warmup: int = 20, profile: str | None = None) -> dict[str, Any]:
    """Run N items against a fresh sandbox; returns the figures (see the module docstring)."""
    spy = ""
    if profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as d:
        proc, url, pid = start_sandbox(Path(d))
        spy_proc: subprocess.Popen[bytes] | None = None
        try:
            sandbox_config(url, {"endpoints": {"tavily.search": {"latency_s": 0.0, "latency_cv": 0.0},
                                               "openai.chat_completions": {"latency_s": 0.0, "latency_cv": 0.0}}})
            driver = ItemDriver(url)

            async def go() -> tuple[float, float, float]:
                await driver.run(companies(warmup, "warm"), concurrency)
                nonlocal spy_proc
                if spy:
                    spy_proc = await asyncio.to_thread(
                        subprocess.Popen, [spy, "record", "--pid", str(pid), "--nonblocking", "-r", "250", "-f", "raw",
                                           "-o", str(profile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(1.0)  # py-spy attaches
                c0, t0 = proc_cpu_s(pid), time.perf_counter()
                await driver.run(companies(n, "cpu"), concurrency)
                c1, t1 = proc_cpu_s(pid), time.perf_counter()
                if spy_proc is not None:
                    spy_proc.send_signal(signal.SIGINT)
                    await asyncio.to_thread(spy_proc.wait, 60)
                await driver.close()
                return c1 - c0, t1 - t0, c1

            cpu, wall, _ = asyncio.run(go())
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ms = round(cpu / n * 1000, 2)
    return {"sandbox_cpu_ms_per_item": ms, "goal_ms": GOAL_MS, "n": n, "concurrency": concurrency,
            "sandbox_cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "items_per_s": round(n / wall, 1)}


def top_entries(raw_path: str, k: int = 15) -> list[tuple[str, float, float]]:
    """From a py-spy ``raw`` (collapsed stacks) file: the ``k`` functions with most own samples, as
    (function, own %, inclusive %) of the busy samples (idle event-loop waits excluded)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in Path(raw_path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # per function, not per line
        leaf = frames[-1]
        if leaf.startswith(("select (", "_run_once (", "run_forever (", "poll (")) or "epoll" in leaf:
            continue
        c = int(count)
        total += c
        own[leaf] = own.get(leaf, 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    if not total:
        return []
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:k]
    return [(f, round(100 * c / total, 1), round(100 * incl[f] / total, 1)) for f, c in ranked]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.sandbox_cpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=int(os.environ.get("BENCH_SANDBOX_N", "300")))
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--profile", default=None, help="py-spy raw (collapsed stacks) output file")
    a = ap.parse_args(argv)
    out = measure(a.n, a.concurrency, a.warmup, a.profile)
    say(f"sandbox CPU per researched item: {out['sandbox_cpu_ms_per_item']} ms (goal ≤ {GOAL_MS}); "
        f"{out['n']} items in {out['wall_s']} s")
    if a.profile:
        for f, own_pct, incl_pct in top_entries(a.profile):
            say(f"  own {own_pct:5.1f} %  incl {incl_pct:5.1f} %  {f}")
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
