"""``python -m bench`` (``make bench``): every performance figure of the issue, measured side by side in one run on
this machine, printed as ratios, then ONE line of JSON holding every figure (the last line on stdout).

Parts (see each module): a. gRPC ceiling (:mod:`bench.ceiling`), c. batched scraping (:mod:`bench.scrape`),
b. pipeline efficiency vs. T_LB and vs. the gather baseline, d. memory, e. our own overhead (:mod:`bench.pipeline`).
The stack (sandbox, search, inference, extraction) is started once with :func:`shared.procs.start_stack`, logs at
WARNING; the sandbox's knobs are switched between parts with ``POST /_sandbox/config``.

Environment knobs:

- ``BENCH_N`` (10000): companies of the large research run. The bench first runs N = 1,000 (the memory reference,
  and a calibration); if the large run and its baseline would not fit the time budget, N is scaled down (in steps of
  500) and the N used is reported. 0 = part b runs b′ (the latency-bound variant) only.
- ``BENCH_BUDGET_S`` (540): wall-time budget of the whole bench (s); the issue's limit is 600.
- ``BENCH_SECONDS`` (5): length of each ceiling measurement (s); ``BENCH_RATE`` (1000): its open-loop rate (calls/s).
- ``BENCH_DB`` (auto): ``postgresql`` (a fresh database on the server at ``VANTAGE_TEST_PG``), ``sqlite``, or auto
  (PostgreSQL when it answers).
- ``BENCH_PARTS`` (a,b,c,p,s): which parts to run (b includes d and e; p = prompt packing, :mod:`bench.packing`,
  against the bench's own inference service, ~10-20 s, run before b so that b's budget accounts for it; s = the
  sandbox's CPU per researched item alone, :mod:`bench.sandbox_cpu`, after the stack has stopped, ``BENCH_SANDBOX_N``
  items, 300 by default, ~30 s).
- The stack's services use a fresh SQLite database in the run's temporary directory (``VANTAGE_DATABASE_URL``), so
  the inference response cache of an earlier run (``./vantage.db``) never answers for this one.
- ``BENCH_LATENCY_BOUND_N`` (1500): items of the latency-bound variant of part b (×1/10 latencies, 8,000-character
  contexts; 0 = skip it). T_LB is the bound for deterministic latencies (reference/performance.md §3.1); with the
  lognormal LLM latencies, zero-overhead streaming itself expects 1.14 × T_LB at N = 600 (12 rounds of the LLM
  budget: the last round's tail) and 1.056 × at N = 1,500 (30 rounds), so 1,500 is the smallest N at which the
  ≤ 1.10 goal measures the pipeline rather than the tail (docs/benchmarks.md, "where the 3 s go").
- ``BENCH_LATENCY_BOUND_BASELINE_N`` (300): N of b′'s streaming-vs-gather comparison (a streaming run and the gather
  baseline at that N; 0 = skip it). Apart from the goal run because the baseline costs ~3 × T_LB (139 s at 1,500),
  which the N = 10,000 run needs more.
- ``BENCH_SCRAPE_N`` (1000), ``BENCH_SCRAPE_CAP`` (10), ``BENCH_SNAPSHOT_S`` (2): part c.
- ``BENCH_TAVILY_RPM`` (0): the search service's ``VANTAGE_TAVILY_RPM`` during the bench. 0 = no limit, which is
  the sandbox's: its Tavily emulator enforces no requests/min limit (services/sandbox/tavily.py; a 429 only when
  injected, ``rate_429`` 0 by default). The 1,000 of the settings is Tavily's production-key limit (providers.md
  §1.5), a courtesy towards the real API; kept in the bench with latencies ×1/100 it made a 6,000-item run wait
  ~5 minutes for the rate, not for anything measured. A value > 0 is kept, and part b's T_LB includes it
  (:func:`bench.pipeline.t_lb`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from bench import ceiling, packing, pipeline, sandbox_cpu, scrape
from bench.common import CLOCK, ROOT, loadavg, machine_cpu_s, ncpu, ratio, sandbox_config, say
from shared.procs import start_stack

#: Bright Data settings of the inference service during the bench (scaled ×1/100 like the latencies).
POLL_S, LINGER_S = 0.05, 0.02

#: Seconds per item of the large ×1/100 research run, and of its gather baseline, over those of the N = 1,000 run
#: (they size N so that the whole bench fits its budget). Measured on 2 cores at N = 10,000 with no Tavily rate
#: limit (2026-12-03, docs/benchmarks.md): 1.60 and 1.86; the baseline's 2.5 of before was its search phase waiting
#: for the 1,000 requests/min limit.
LARGE_RUN_SLOWDOWN = 1.6
BASELINE_SLOWDOWN = 2.0


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python, grpcio, protobuf and uvloop versions."""
    import grpc
    from google.protobuf import __version__ as pb_version

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = None
    return {
        "nproc": os.cpu_count(), "usable_cpus": ncpu(), "cpu_model": model or platform.processor(),
        "python": platform.python_version(), "grpcio": grpc.__version__, "protobuf": pb_version, "uvloop": uv,
    }


def _missing(module: str) -> str | None:
    """None when ``services/<module>/server.py`` exists, else why the figures that need it are null."""
    if (ROOT / "services" / module / "server.py").exists():
        return None
    return f"services/{module}/server.py does not exist yet"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def main() -> int:
    n_target = _env_int("BENCH_N", 10_000)
    budget = _env_float("BENCH_BUDGET_S", 540.0)
    seconds = _env_float("BENCH_SECONDS", 5.0)
    rate = _env_float("BENCH_RATE", 1000.0)
    parts = {p.strip() for p in os.environ.get("BENCH_PARTS", "a,b,c,p,s").split(",") if p.strip()}
    db_prefer = os.environ.get("BENCH_DB", "auto")
    scrape_n = _env_int("BENCH_SCRAPE_N", 1000)
    scrape_cap = _env_int("BENCH_SCRAPE_CAP", 10)
    snapshot_s = _env_float("BENCH_SNAPSHOT_S", 2.0)

    tmp = Path(tempfile.mkdtemp(prefix="vantage-bench-"))
    logs = tmp / "logs"
    info = machine()
    say(f"machine: {info['nproc']} CPUs ({info['cpu_model']}), Python {info['python']}, grpcio {info['grpcio']}; "
        f"logs in {logs}")
    out: dict[str, Any] = {"machine": info, "null_reasons": {}}
    info["loadavg_at_start"] = loadavg()
    m0 = machine_cpu_s()
    nulls: dict[str, str] = out["null_reasons"]

    names = ["sandbox", "search", "inference", "extraction"]
    for svc in ("search", "inference", "extraction"):
        reason = _missing(svc)
        if reason:
            names.remove(svc)
            nulls[svc] = reason
    stack_env = {
        "VANTAGE_LOG_LEVEL": "WARNING",
        "VANTAGE_SANDBOX_LOG_LEVEL": "warning",
        "VANTAGE_BRIGHTDATA_MAX_IN_FLIGHT": str(scrape_cap),
        "VANTAGE_BRIGHTDATA_POLL_SECONDS": str(POLL_S),
        "VANTAGE_BATCH_LINGER_SECONDS": str(LINGER_S),
        "VANTAGE_TAVILY_CONCURRENCY": str(pipeline.SEARCH_BUDGET),
        "VANTAGE_OPENAI_CONCURRENCY": str(pipeline.INFERENCE_BUDGET),
        # The sandbox's rate limit (none), not the production key's: see BENCH_TAVILY_RPM above.
        "VANTAGE_TAVILY_RPM": str(_env_int("BENCH_TAVILY_RPM", 0)),
        # A fresh database per run: the inference response cache must not carry answers over from earlier runs.
        "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'stack.db'}",
    }
    out["tavily_rpm"] = int(stack_env["VANTAGE_TAVILY_RPM"])
    say(f"starting {', '.join(names)}")
    stack = start_stack(tuple(names), env=stack_env, log_dir=logs)
    sandbox_url = f"http://{stack.children['sandbox'].address}"
    addrs = {k: c.address for k, c in stack.children.items()}
    pids = {k: c.proc.pid for k, c in stack.children.items()}
    try:
        # --- a. gRPC ceiling ---------------------------------------------------------------------------------------
        if "a" in parts and "search" in addrs:
            try:
                out["a"] = ceiling.run(addrs, pids, logs, seconds=seconds, rate=rate,
                                       extraction_missing=nulls.get("extraction"))
            except Exception as e:
                traceback.print_exc()
                nulls["a"] = f"{type(e).__name__}: {e}"

        # --- c. batched scraping -----------------------------------------------------------------------------------
        if "c" in parts:
            if "inference" not in addrs:
                nulls["c"] = nulls["inference"]
            else:
                try:
                    sandbox_config(sandbox_url, {"brightdata_duration_s": snapshot_s})
                    out["c"] = scrape.run(addrs["inference"], n=scrape_n, cap=scrape_cap, snapshot_s=snapshot_s,
                                          poll_s=POLL_S)
                except Exception as e:
                    traceback.print_exc()
                    nulls["c"] = f"{type(e).__name__}: {e}"

        # --- p. prompt packing (bench.packing against this stack; restores the sandbox's chat latency) -----------
        if "p" in parts:
            if "inference" not in addrs:
                nulls["p"] = nulls["inference"]
            else:
                try:
                    say("p. prompt packing")
                    out["p"] = packing.run(addrs["inference"], sandbox_url)
                    say("  " + packing.summary_line(out["p"]))
                except Exception as e:
                    traceback.print_exc()
                    nulls["p"] = f"{type(e).__name__}: {e}"

        # --- b, d, e. pipeline -------------------------------------------------------------------------------------
        if "b" in parts:
            missing = [s for s in ("search", "inference", "extraction") if s not in addrs]
            if missing:
                nulls["b"] = "; ".join(nulls[s] for s in missing)
            else:
                try:
                    # The runs' T_LB reads the rate limit the search service keeps (pipeline.t_lb).
                    bench_env = {**stack.env(), "VANTAGE_TAVILY_RPM": stack_env["VANTAGE_TAVILY_RPM"]}
                    out.update(_pipeline(sandbox_url, bench_env, pids, tmp, n_target, budget, db_prefer,
                                         _env_int("BENCH_LATENCY_BOUND_N", 1500),
                                         _env_int("BENCH_LATENCY_BOUND_BASELINE_N", 300)))
                except Exception as e:
                    traceback.print_exc()
                    nulls["b"] = f"{type(e).__name__}: {e}"
    finally:
        stack.stop(grace=5)
    # --- s. the sandbox's CPU per researched item, alone (bench.sandbox_cpu: its own sandbox, after the stack) ---
    if "s" in parts:
        try:
            say("s. sandbox CPU per researched item")
            out["s"] = sandbox_cpu.measure(n=_env_int("BENCH_SANDBOX_N", 300))
            say(f"  {out['s']['sandbox_cpu_ms_per_item']} ms of sandbox CPU per item (goal <= {sandbox_cpu.GOAL_MS})")
        except Exception as e:
            traceback.print_exc()
            nulls["s"] = f"{type(e).__name__}: {e}"
    out["wall_s"] = round(CLOCK(), 1)
    info["loadavg_at_end"] = loadavg()
    info["machine_cores_busy"] = round((machine_cpu_s() - m0) / CLOCK(), 2)
    summary = flatten(out)
    if "s" in out:  # issue 16 item 6, reported apart from the stack's figures
        summary["sandbox_cpu_ms_per_item"] = out["s"]["sandbox_cpu_ms_per_item"]
        summary["s_sandbox_cpu"] = out["s"]
    print_summary(summary)
    sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
    return 0


def _pipeline(sandbox_url: str, stack_env: dict[str, str], pids: dict[str, int], tmp: Path, n_target: int,
              budget: float, db_prefer: str, latency_bound_n: int, latency_bound_baseline_n: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if latency_bound_n > 0:
        # b'. The same comparison where this box's CPU is not the binding constraint (see pipeline.SCALED_10).
        p10 = pipeline.SCALED_10
        sandbox_config(sandbox_url, p10.sandbox_patch())
        say(f"b'. latency-bound pipeline: search {p10.search_s * 1000:g} ms, LLM lognormal mean {p10.llm_s * 1000:g} ms "
            f"CV {p10.llm_cv}, {p10.context_chars:,}-character contexts, N = {latency_bound_n}")
        res["b_latency_bound"] = pipeline.research(latency_bound_n, "l", stack_env=stack_env, pids=pids, tmp=tmp,
                                                   db_prefer=db_prefer, profile=p10, timeline=True)
        pair_n = latency_bound_baseline_n
        if pair_n > 0:
            # The streaming-vs-gather comparison at a smaller N: the gather baseline costs ~3 x T_LB, 139 s at 1,500.
            if pair_n != latency_bound_n:
                say(f"b'. streaming vs gather at N = {pair_n}")
                res["b_latency_bound_pair"] = pipeline.research(pair_n, "j", stack_env=stack_env, pids=pids,
                                                                tmp=tmp, db_prefer=db_prefer, profile=p10)
            res["b_latency_bound_baseline"] = pipeline.baseline(pair_n, "k", stack_env=stack_env, pids=pids,
                                                                tmp=tmp, profile=p10)
    if n_target <= 0:  # BENCH_N=0: b′ only
        return res
    sandbox_config(sandbox_url, pipeline.SCALED_100.sandbox_patch())
    say(f"b. pipeline: search {pipeline.SEARCH_LATENCY_S * 1000:g} ms, LLM lognormal mean "
        f"{pipeline.LLM_LATENCY_S * 1000:g} ms CV {pipeline.LLM_CV}, budgets search {pipeline.SEARCH_BUDGET} / "
        f"inference {pipeline.INFERENCE_BUDGET}")
    small_n = min(1000, n_target)
    small = pipeline.research(small_n, "m", stack_env=stack_env, pids=pids, tmp=tmp, db_prefer=db_prefer)
    res.update(b_small=small)
    n = n_target
    if n_target > small_n:
        # Calibrate on the run just made and what is left of the budget. Per item, the large run costs up to ~1.6×
        # the N = 1,000 run (a bigger database and sandbox state) and the gather baseline ~2× (its all-searches-first
        # phase saturates the single-process sandbox): LARGE_RUN_SLOWDOWN, BASELINE_SLOWDOWN.
        per_item = (LARGE_RUN_SLOWDOWN + BASELINE_SLOWDOWN) * (small["command_wall_s"] + 1.0) / small_n
        left = budget - CLOCK() - 20.0
        fit = int(left / per_item) // 500 * 500
        if fit < n_target:
            say(f"  at {per_item * 1000:.1f} ms/item (run + baseline) N = {n_target:,} would not fit the {budget:g} s "
                f"budget: N scaled down to {max(fit, small_n):,}")
        n = max(small_n, min(n_target, fit))
    if n > small_n:
        big = pipeline.research(n, "big", stack_env=stack_env, pids=pids, tmp=tmp, db_prefer=db_prefer)
    else:
        big = small
    big_base = pipeline.baseline(n, "y", stack_env=stack_env, pids=pids, tmp=tmp)
    res.update(b_large=big, b_large_baseline=big_base, n_requested=n_target)
    return res


def flatten(out: dict[str, Any]) -> dict[str, Any]:
    """The headline figures (ratios first), with the raw measurements under ``detail``."""
    a, c = out.get("a"), out.get("c")
    big, base = out.get("b_large"), out.get("b_large_baseline")
    small = out.get("b_small")
    s: dict[str, Any] = {"bench": "vantage", "wall_s": out.get("wall_s"), "machine": out["machine"]}
    ext = (a or {}).get("extraction") or {}
    s["a_grpc_ceiling"] = None if a is None else {
        "search_cache_hit_vs_echo_qps": a["search_vs_echo"], "goal_search": 0.70,
        "extraction_vs_echo_qps": a["extraction_vs_echo"], "goal_extraction": 0.40,
        "search_cache_hit_vs_echo_same_size_qps": a.get("search_vs_echo_same_size"),
        "echo_same_size_vs_echo_qps": a.get("echo_same_size_vs_echo"),
        "echo_qps": a["echo"]["qps"], "search_cache_hit_qps": a["search_cache_hit"]["qps"],
        "echo_same_size_qps": (a.get("echo_same_size") or {}).get("qps"),
        "search_answer_bytes": a["search_cache_hit"]["response_bytes"],
        "extraction_qps": ext.get("qps"),
        "open_loop_rate": a["echo"]["open_rate"],
        "echo_open_p99_ms": a["echo"]["open_p99_ms"],
        "search_open_p99_ms": a["search_cache_hit"]["open_p99_ms"],
        "extraction_open_p99_ms": ext.get("open_p99_ms"),
        "p99_ms_at_60pct_of_own_qps": {"echo": a["echo"]["p99_ms_at_60pct"],
                                       "search": a["search_cache_hit"]["p99_ms_at_60pct"],
                                       "extraction": ext.get("p99_ms_at_60pct")},
        "server_cpu_us_per_call": {"echo": a["echo"]["server_cpu_us_per_call"],
                                   "search": a["search_cache_hit"]["server_cpu_us_per_call"],
                                   "extraction": ext.get("server_cpu_us_per_call"),
                                   "echo_same_size": (a.get("echo_same_size") or {}).get("server_cpu_us_per_call")},
        "other_processes_cores_busy": {k: (a.get(k) or {}).get("other_processes_cores_busy")
                                       for k in ("echo", "search_cache_hit", "echo_same_size", "extraction")},
        "pinned": a["pinned"],
    }
    s["b_pipeline"] = None if big is None else {
        "n": big["n"], "n_requested": out.get("n_requested"), "db": big["db"],
        "makespan_over_t_lb": big["makespan_over_t_lb"], "goal": 1.10,
        "makespan_s": big["makespan_s"], "t_lb_s": big["t_lb_s"],
        "baseline_makespan_s": base["makespan_s"], "baseline_over_t_lb": base["makespan_over_t_lb"],
        "speedup_vs_baseline": ratio(base["makespan_s"], big["makespan_s"]),
        "done": big["done"], "failed": big["failed"], "cores_busy": big["cores_busy"],
        "baseline_cores_busy": base["cores_busy"],
        "other_processes_cores_busy": big.get("other_processes_cores_busy"),
        "db_connections_opened": big.get("db_connections_opened"),
        "t_cpu_s": big.get("t_cpu_s"), "makespan_over_t_cpu": ratio(big["makespan_s"], big.get("t_cpu_s")),
        "sandbox_cpu_ms_per_item": big["stack_cpu_ms_per_item"].get("sandbox"),
        "n1000_makespan_over_t_lb": small["makespan_over_t_lb"] if small else None,
        "tavily_rpm": out.get("tavily_rpm"),  # the search service's requests/min limit in T_LB (0 = none)
    }
    lb, lbb = out.get("b_latency_bound"), out.get("b_latency_bound_baseline") or {}
    pair = out.get("b_latency_bound_pair") or lb
    s["b_latency_bound"] = None if lb is None else {
        "n": lb["n"], "latencies_s": lb["latencies_s"], "context_chars": lb["context_chars"],
        "makespan_over_t_lb": lb["makespan_over_t_lb"], "goal": 1.10, "makespan_s": lb["makespan_s"],
        "t_lb_s": lb["t_lb_s"],
        # Streaming vs the gather baseline, both at baseline_n (BENCH_LATENCY_BOUND_BASELINE_N).
        "baseline_n": lbb.get("n"), "pair_makespan_s": pair["makespan_s"] if lbb else None,
        "pair_makespan_over_t_lb": pair["makespan_over_t_lb"] if lbb else None,
        "baseline_makespan_s": lbb.get("makespan_s"), "baseline_over_t_lb": lbb.get("makespan_over_t_lb"),
        "speedup_vs_baseline": ratio(lbb.get("makespan_s"), pair["makespan_s"]) if lbb else None,
        "done": lb["done"], "failed": lb["failed"], "cores_busy": lb["cores_busy"],
        # Ideal streaming on the latencies this run drew (bench.pipeline.breakdown), and what it expects at this N.
        "makespan_over_t_stream": (lb.get("breakdown") or {}).get("makespan_over_stream"),
        "t_stream_s": (lb.get("breakdown") or {}).get("stream_s"),
        "t_stream_expected_s": (lb.get("t_stream_expected") or {}).get("mean_s"),
        "t_stream_expected_over_t_lb": ratio((lb.get("t_stream_expected") or {}).get("mean_s"), lb["t_lb_s"]),
    }
    s["c_batched_scraping"] = None if c is None else {
        "makespan_over_bound": c["makespan_over_bound"], "makespan_s": c["makespan_s"], "bound_s": c["bound_s"],
        "n": c["n"], "in_flight_cap": c["in_flight_cap"], "snapshot_s": c["snapshot_s"],
        "snapshots": c["snapshots"], "answers": c["answers"], "errors": c["errors"],
        "round_starts_s": c["round_starts_s"],
    }
    s["p_packing"] = out.get("p")
    same_n = big is not None and small is not None and big["n"] <= small["n"]
    if same_n:
        out["null_reasons"]["d"] = f"the large run did not fit the time budget (N = {big['n']:,} only)"
    s["d_memory"] = None if big is None or small is None else {
        "rss_ratio": None if same_n else ratio(big["orchestrator_peak_rss_mib"], small["orchestrator_peak_rss_mib"]),
        "goal": 1.3,
        "peak_rss_mib_n1000": small["orchestrator_peak_rss_mib"], "peak_rss_mib_large": big["orchestrator_peak_rss_mib"],
        "n_large": big["n"],
    }
    s["e_overhead"] = None if big is None else {
        "orchestrator_cpu_ms_per_item": big["orchestrator_cpu_ms_per_item"],
        "db_write_statements_per_item": big["db_write_statements_per_item"],
        "db_rows_written_per_item": big["db_rows_written_per_item"],
        "db_commits_per_item": big["db_commits_per_item"],
        "db_checkouts_per_item": big.get("db_checkouts_per_item"),
        "db_connections_opened": big.get("db_connections_opened"),
        "db_statements_per_item": big["db_statements_per_item"],
        "pg_rows_written_per_item": big.get("pg_rows_written_per_item"),
        "pg_commits_per_item": big.get("pg_commits_per_item"),
        "stack_cpu_ms_per_item": big["stack_cpu_ms_per_item"],
    }
    s["null_reasons"] = out["null_reasons"]
    s["detail"] = {k: out.get(k) for k in ("a", "c", "b_small", "b_large",
                                            "b_large_baseline", "b_latency_bound", "b_latency_bound_pair",
                                            "b_latency_bound_baseline")}
    return s


def _fmt(v: Any, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    return f"{v}{unit}"


def print_summary(s: dict[str, Any]) -> None:
    """The ratios, one per line, before the JSON line."""
    lines = ["", f"=== vantage bench ({s['wall_s']} s) ==="]
    a = s["a_grpc_ceiling"]
    if a:
        lines += [
            f"a. search cache hit / echo QPS     {_fmt(a['search_cache_hit_vs_echo_qps'])}  (goal ≥ 0.70; "
            f"{a['search_cache_hit_qps']} vs {a['echo_qps']} QPS @50 in flight)",
            f"a. search / echo of the same size  {_fmt(a['search_cache_hit_vs_echo_same_size_qps'])}  (echo answering "
            f"{a['search_answer_bytes']} B: {a['echo_same_size_qps']} QPS = {a['echo_same_size_vs_echo_qps']}× echo)",
            f"a. extraction / echo QPS           {_fmt(a['extraction_vs_echo_qps'])}  (goal ≥ 0.40; "
            f"{_fmt(a['extraction_qps'])} QPS)",
            f"a. open loop {a['open_loop_rate']:g}/s p99           echo {a['echo_open_p99_ms']} ms, search "
            f"{a['search_open_p99_ms']} ms, extraction {_fmt(a['extraction_open_p99_ms'])} ms",
            "a. p99 at 60 % of own QPS          " + ", ".join(
                f"{k} {_fmt(v)} ms" for k, v in a["p99_ms_at_60pct_of_own_qps"].items()),
        ]
    b = s["b_pipeline"]
    if b:
        lines += [
            f"b. makespan / T_LB                 {_fmt(b['makespan_over_t_lb'])}  (goal ≤ 1.10; {b['makespan_s']} s vs "
            f"{b['t_lb_s']} s, N = {b['n']:,}, {b['db']}, cores busy {b['cores_busy']})",
            f"b. speedup over gather baseline    {_fmt(b['speedup_vs_baseline'])}×  (baseline {b['baseline_makespan_s']} s "
            f"= {b['baseline_over_t_lb']}× T_LB)",
            f"b. makespan / CPU bound            {_fmt(b['makespan_over_t_cpu'])}  (Σ CPU of every process / "
            f"{s['machine']['usable_cpus']} cores = {b['t_cpu_s']} s; sandbox {b['sandbox_cpu_ms_per_item']} CPU ms/item)",
        ]
    lb = s["b_latency_bound"]
    if lb:
        lines += [
            f"b'. latency-bound makespan / T_LB  {_fmt(lb['makespan_over_t_lb'])}  ({lb['makespan_s']} s vs "
            f"{lb['t_lb_s']} s, N = {lb['n']:,}, ×1/10 latencies, cores busy {lb['cores_busy']})",
            f"b'. speedup over gather baseline   {_fmt(lb['speedup_vs_baseline'])}×  (N = {lb['baseline_n']}: "
            f"streaming {lb['pair_makespan_s']} s = {lb['pair_makespan_over_t_lb']}× T_LB, baseline "
            f"{lb['baseline_makespan_s']} s = {lb['baseline_over_t_lb']}× T_LB)",
            f"b'. makespan / ideal streaming     {_fmt(lb['makespan_over_t_stream'])}  (on this run's latencies: "
            f"{_fmt(lb['t_stream_s'])} s; at this N it expects {_fmt(lb['t_stream_expected_s'])} s = "
            f"{_fmt(lb['t_stream_expected_over_t_lb'])}× T_LB)",
        ]
    c = s["c_batched_scraping"]
    if c:
        lines.append(f"c. scraping makespan / bound       {_fmt(c['makespan_over_bound'])}  ({c['makespan_s']} s vs "
                     f"{c['bound_s']} s; {c['answers']} answers, {c['snapshots']} snapshots)")
    d = s["d_memory"]
    if d:
        lines.append(f"d. peak RSS N={d['n_large']:,} / N=1,000     {_fmt(d['rss_ratio'])}  (goal ≤ 1.3; "
                     f"{d['peak_rss_mib_large']} vs {d['peak_rss_mib_n1000']} MiB)")
    e = s["e_overhead"]
    if e:
        lines.append(f"e. orchestrator                    {e['orchestrator_cpu_ms_per_item']} CPU ms/item, "
                     f"{e['db_write_statements_per_item']} write statements/item, {e['db_commits_per_item']} "
                     f"commits/item")
    for k, v in s["null_reasons"].items():
        lines.append(f"null: {k}: {v}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
