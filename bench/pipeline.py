"""Parts b, d and e — pipeline efficiency, memory, and our own overhead.

``vantage research FILE.csv`` (the orchestrator, executing in its own process: :mod:`bench.research_child`) runs
N generated companies through the real search, inference and extraction services, with the sandbox at the latencies
scaled ×1/100 (search 20 ms; LLM lognormal, mean 150 ms, CV 0.5) and budgets search 50 / inference 50. From the same
runs:

- b. makespan (the run's execution window: first claim → run completed) / T_LB, with
  T_LB = max_i(⌈N/c_i⌉·L_i + Σ_{j≠i} L_j) over the provider stages (reference/performance.md §3.1; the extraction
  stage has no provider latency, L ≈ 0); and the baseline (:mod:`bench.baseline`: all searches, then gathered LLM
  batches) on a fresh set of N companies, with our speedup over it;
- d. peak RSS of the orchestrator process at N = 1,000 and at the large N;
- e. orchestrator CPU ms per item and database statements / transactions per item in the execution window (and,
  on PostgreSQL, ``pg_stat_database`` row and commit deltas over the whole command).

Every stack process's CPU time over the window is recorded too: their sum / makespan says how many of the
machine's cores the run kept busy, which tells a CPU-bound run from a latency-bound one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, child_env, machine_cpu_s, ncpu, proc_cpu_s, ratio, say
from shared.config import InferenceSettings, SearchSettings

#: Scaled provider latencies (s) and budgets of the pipeline benchmark (the issue's figures).
SEARCH_LATENCY_S, LLM_LATENCY_S, LLM_CV = 0.020, 0.150, 0.5
SEARCH_BUDGET, INFERENCE_BUDGET = 50, 50
PG_ADMIN_URL = os.environ.get("VANTAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def t_lb(n: int, stages: list[tuple[int, float]], rpms: tuple[float, ...] = ()) -> float:
    """Flow-shop lower bound on the makespan (s) of ``n`` items through ``stages`` = [(budget c_i, latency L_i s)]:
    max_i(⌈n/c_i⌉·L_i + Σ_{j≠i} L_j) (reference/performance.md §3.1). ``rpms[i]`` > 0: stage i is also held to that
    many requests per minute by a leaky bucket of that capacity (aiolimiter ``AsyncLimiter(rpm, 60)``, how our
    services keep a provider's rate limit: shared/resilience.py), so its n-th call cannot start before
    (n − rpm) · 60 / rpm s and the stage's term is max(⌈n/c_i⌉·L_i, (n − rpm)·60/rpm + L_i) + Σ_{j≠i} L_j — §3.1's
    "limited by rate R_i instead of concurrency", with the bucket's first-minute burst."""
    total = sum(lat for _, lat in stages)
    terms = []
    for i, (c, lat) in enumerate(stages):
        own = math.ceil(n / c) * lat
        rpm = rpms[i] if i < len(rpms) else 0
        if rpm > 0:
            own = max(own, max(0.0, n - rpm) * 60.0 / rpm + lat)
        terms.append(own + total - lat)
    return max(terms)


def stream_makespan(n: int, stages: list[tuple[int, list[float]]]) -> float:
    """Makespan (s) of ideal streaming — zero overhead, greedy: an item enters stage i the moment it left stage
    i − 1 and a slot of that stage is free, the k-th call to start at a stage lasting that stage's k-th latency —
    of ``n`` items all available at t = 0 through ``stages`` = [(budget c_i, latencies in start order)]. With the
    latencies a run actually drew this is the makespan no non-clairvoyant scheduler beats on them (list scheduling,
    reference/performance.md §3.1–3.2). It is ≥ :func:`t_lb` on the same latencies, and equal to it with the bench's
    fixed latencies (tests/loadtest/test_bench_bounds.py)."""
    import heapq

    ready = [0.0] * n
    for c, lats in stages:
        slots = [0.0] * c
        out = []
        for k, t in enumerate(sorted(ready)):
            start = max(t, heapq.heappop(slots))
            end = start + lats[k % len(lats)]
            heapq.heappush(slots, end)
            out.append(end)
        ready = out
    return max(ready) if ready else 0.0


def expected_stream_makespan(n: int, profile: Profile, reps: int = 200, seed: int = 16) -> dict[str, float]:
    """Mean and 10th / 90th percentiles (s) of :func:`stream_makespan` over ``reps`` seeded draws of the profile's
    latencies (lognormal with the profile's mean and CV, as the sandbox draws them: services/sandbox/state.py) — the
    makespan ideal streaming *expects* at this N. Above :func:`t_lb` (which takes every latency at its mean) by
    the tail of the last rounds: ≈ 14 % at N = 600, c = 50, CV 0.5 (12 rounds), ≈ 1 % at N = 10,000 (§3.2)."""
    import random

    rng = random.Random(seed)

    def draws(mean: float, cv: float) -> list[float]:
        if cv <= 0:
            return [mean] * n
        s2 = math.log(1 + cv * cv)
        return [rng.lognormvariate(math.log(mean) - s2 / 2, math.sqrt(s2)) for _ in range(n)]

    (cs, _), (cl, _) = profile.stages()
    xs = sorted(stream_makespan(n, [(cs, draws(profile.search_s, 0.0)), (cl, draws(profile.llm_s, profile.llm_cv))])
                for _ in range(reps))
    return {"mean_s": round(sum(xs) / reps, 3), "p10_s": round(xs[reps // 10], 3), "p90_s": round(xs[reps * 9 // 10], 3)}


def breakdown(timeline: list[list[Any]], t0: float, t1: float, budgets: dict[str, int]) -> dict[str, Any]:
    """Where a run's window [t0, t1] (monotonic s) went, from :mod:`bench.research_child`'s timeline (kind, asked,
    start, end): when the first search and the first LLM call started, when the LLM budget was first full, how
    long the last LLM call ran after the last one started, what came after it (parse, the last write-back, then the
    run's completion); the inference slots' mean occupancy; and ``stream_s`` = :func:`stream_makespan` replayed on the
    search and LLM durations this run measured (slot holds, in start order) — the makespan of an ideal streaming
    scheduler on the same latencies, so ``makespan / stream_s`` is what the orchestrator itself adds."""
    by: dict[str, list[tuple[float, float, float]]] = {}
    for kind, asked, start, end in timeline:
        by.setdefault(kind, []).append((asked - t0, start - t0, end - t0))
    for v in by.values():
        v.sort(key=lambda x: x[1])
    llm, srch = by.get("inference", []), by.get("search", [])
    if not llm or not srch:
        return {}
    c_llm = budgets["inference"]
    events = sorted([(s, 1) for _, s, _ in llm] + [(e, -1) for _, _, e in llm])
    in_use, full_at = 0, None
    for t, d in events:
        in_use += d
        if in_use >= c_llm and full_at is None:
            full_at = t
    span = max(e for *_, e in llm) - llm[0][1]
    writes = by.get("complete_item", []) + by.get("fail_item", [])
    n = len(writes) or len(llm)
    stream = stream_makespan(n, [(budgets["search"], [e - s for _, s, e in srch]),
                                 (c_llm, [e - s for _, s, e in llm])])
    last_llm_end = max(e for *_, e in llm)
    r = lambda x: round(x, 3)  # noqa: E731
    return {
        "first_claim_end_s": r(min(e for *_, e in by.get("claim_items", [(0, 0, 0)]))),
        "first_search_start_s": r(srch[0][1]),
        "first_llm_start_s": r(llm[0][1]),
        "llm_budget_full_s": r(full_at) if full_at is not None else None,
        "last_llm_start_s": r(llm[-1][1]),
        "last_llm_end_s": r(last_llm_end),
        "last_write_back_end_s": r(max(e for *_, e in writes)) if writes else None,
        "after_last_llm_s": r((t1 - t0) - last_llm_end),
        "llm_calls": len(llm),
        "llm_mean_s": r(sum(e - s for _, s, e in llm) / len(llm)),
        "llm_max_s": r(max(e - s for _, s, e in llm)),
        "llm_occupancy": r(sum(e - s for _, s, e in llm) / (c_llm * span)) if span > 0 else None,
        "llm_wait_mean_s": r(sum(s - a for a, s, _ in llm) / len(llm)),
        "search_mean_s": r(sum(e - s for _, s, e in srch) / len(srch)),
        "claims": len(by.get("claim_items", [])),
        "write_back_mean_s": r(sum(e - s for _, s, e in writes) / len(writes)) if writes else None,
        "stream_s": r(stream),
        "makespan_over_stream": ratio(t1 - t0, stream),
    }


@dataclass(frozen=True)
class Profile:
    """Provider latencies (s) of one pipeline run; ``context_chars`` = 0 keeps the default LLM context budget."""

    search_s: float = SEARCH_LATENCY_S
    llm_s: float = LLM_LATENCY_S
    llm_cv: float = LLM_CV
    context_chars: int = 0

    def stages(self) -> list[tuple[int, float]]:
        return [(SEARCH_BUDGET, self.search_s), (INFERENCE_BUDGET, self.llm_s)]

    def sandbox_patch(self) -> dict[str, Any]:
        """Knobs (``POST /_sandbox/config``) for these latencies."""
        return {
            "endpoints": {
                "tavily.search": {"latency_s": self.search_s, "latency_cv": 0.0},
                "openai.chat_completions": {"latency_s": self.llm_s, "latency_cv": self.llm_cv},
            }
        }

    def env(self) -> dict[str, str]:
        return {"VANTAGE_CONTEXT_CHAR_BUDGET": str(self.context_chars)} if self.context_chars else {}


#: The issue's profile: latencies ×1/100 (search 20 ms, LLM 150 ms), default 60,000-character contexts.
SCALED_100 = Profile()
#: A latency-bound profile this 2-core box can feed: ×1/10 (search 200 ms, LLM 1.5 s), 8,000-character contexts, so
#: the providers' emulator (one single-threaded process) is not the bottleneck the way it is at ×1/100.
SCALED_10 = Profile(search_s=0.200, llm_s=1.500, context_chars=8_000)


def _bases() -> list[tuple[str, str]]:
    with open(ROOT / "examples" / "companies.csv", newline="") as f:
        rows = [(r["company"], r.get("domain", "")) for r in csv.DictReader(f)]
    return rows or [("Example AI", "example.ai")]


def write_companies(path: Path, n: int, tag: str) -> None:
    """``n`` distinct companies (``"<name> <tag><i>"``, cycling over examples/companies.csv), so no two runs share a
    search or LLM cache entry."""
    bases = _bases()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["company", "domain"])
        for i in range(n):
            name, domain = bases[i % len(bases)]
            w.writerow([f"{name} {tag}{i:05d}", domain])


# --- databases ----------------------------------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database for one research run: its SQLAlchemy URL, and how to read its write statistics."""

    url: str
    kind: str  # "postgresql" | "sqlite"
    pg_name: str = ""

    def pg_stats(self) -> dict[str, int] | None:
        """``pg_stat_database`` counters of this database (commits, rows inserted/updated/deleted)."""
        if self.kind != "postgresql":
            return None
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute("select pg_stat_clear_snapshot()")
            row = conn.execute(
                "select xact_commit, tup_inserted, tup_updated, tup_deleted from pg_stat_database where datname=%s",
                (self.pg_name,),
            ).fetchone()
        if row is None:
            return None
        return {"xact_commit": row[0], "tup_inserted": row[1], "tup_updated": row[2], "tup_deleted": row[3]}

    def item_counts(self) -> dict[str, int]:
        """run_items by status (done, failed, …) over every run in the database."""
        from sqlalchemy import create_engine, text

        url = self.url.replace("sqlite+aiosqlite", "sqlite")
        eng = create_engine(url)
        try:
            with eng.connect() as conn:
                rows = conn.execute(text("select status, count(*) from run_items group by status")).all()
        finally:
            eng.dispose()
        return {str(s): int(c) for s, c in rows}

    def drop(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


def pg_reachable() -> str | None:
    """None when the PostgreSQL at VANTAGE_TEST_PG answers, else the reason."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
        return None
    except Exception as e:  # any failure to connect means "not reachable"
        return f"{type(e).__name__}: {str(e).strip()[:120]}"


def new_database(tmp: Path, prefer: str) -> Database:
    """A fresh PostgreSQL database when ``prefer`` allows and one answers, else a fresh SQLite file."""
    if prefer in ("auto", "postgresql") and pg_reachable() is None:
        import psycopg

        name = f"vantage_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return Database(f"{base}/{name}", "postgresql", name)
    if prefer == "postgresql":
        raise RuntimeError(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    return Database(f"sqlite+aiosqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}", "sqlite")


# --- runs ---------------------------------------------------------------------------------------------------------


def _rpms(env: dict[str, str]) -> tuple[float, float]:
    """Requests/min the stack holds the search and the LLM stage to (``VANTAGE_TAVILY_RPM``, ``VANTAGE_OPENAI_RPM``;
    0 = none), for :func:`t_lb`. Unset = the settings' defaults (shared/config.py)."""
    return (float(env.get("VANTAGE_TAVILY_RPM", SearchSettings.model_fields["tavily_rpm"].default)),
            float(env.get("VANTAGE_OPENAI_RPM", InferenceSettings.model_fields["openai_rpm"].default)))


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: proc_cpu_s(pid) for name, pid in pids.items()}


def research(n: int, tag: str, *, stack_env: dict[str, str], pids: dict[str, int], tmp: Path,
             db_prefer: str, profile: Profile = SCALED_100, tree: Path | None = None,
             wrap: list[str] | None = None, timeline: bool = False) -> dict[str, Any]:
    """Run ``vantage research`` on ``n`` fresh companies in a child process; return its figures (seconds, MiB,
    CPU ms per item, statements per item). ``tree``: run the orchestrator from that source tree instead of this
    one (an older commit's, for a side-by-side before/after: :mod:`bench.overhead`); ``wrap``: a command prefix for
    the child (a sampling profiler, e.g. ``py-spy record … --``); ``timeline``: record the run's budget slots,
    claims and write-backs and report where its makespan went (:func:`breakdown`)."""
    path = tmp / f"companies-{tag}.csv"
    write_companies(path, n, tag)
    out = tmp / f"research-{tag}.json"
    db = new_database(tmp, db_prefer)
    env = child_env({
        **stack_env,
        **profile.env(),
        "VANTAGE_DATABASE_URL": db.url,
        "VANTAGE_SEARCH_CONCURRENCY": str(SEARCH_BUDGET),
        "VANTAGE_INFERENCE_CONCURRENCY": str(INFERENCE_BUDGET),
    })
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}:{tree / 'gen'}"
    if timeline:
        env["BENCH_TIMELINE"] = "1"
    cmd = [*(wrap or []), sys.executable, "-m", "bench.research_child", str(out), "research", str(path), "--quiet",
           "-o", "csv", "--name", f"bench-{tag}"]
    for attempt in (1, 2):
        try:
            return _research_once(n, cmd, env, out, db, pids, profile, cwd=tree or ROOT)
        except _NoWindow as e:
            # The command stopped before executing the run (exit 1 is also "internal error" in the CLI): say why,
            # and try once more on a fresh database (a transient start-up failure should not cost the figure).
            say(f"  research N={n:,} attempt {attempt} failed before its run started: {e}")
            if attempt == 2:
                raise RuntimeError(f"vantage research failed twice before its run started: {e}") from None
            db = new_database(tmp, db_prefer)
            env = {**env, "VANTAGE_DATABASE_URL": db.url}
    raise AssertionError("unreachable")


class _NoWindow(Exception):
    """The research command ended without executing a run."""


def _research_once(n: int, cmd: list[str], env: dict[str, str], out: Path, db: Database, pids: dict[str, int],
                   profile: Profile, *, cwd: Path = ROOT) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    try:
        pg0 = db.pg_stats()
        cpu0 = _cpu(pids)
        m0 = machine_cpu_s()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=3600)
        wall = time.monotonic() - t0
        cpu1 = _cpu(pids)
        m1 = machine_cpu_s()
        child = json.loads(out.read_text()) if out.exists() else {}
        win = child.get("window", {})
        if not win.get("start") or not win.get("end"):
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise _NoWindow(f"exit {proc.returncode}: {tail[-600:]}")
        time.sleep(0.5)  # PostgreSQL flushes a backend's statistics at its exit; give it a moment
        pg1 = db.pg_stats()
        items = db.item_counts()
    finally:
        db.drop()
    start, end = win["start"], win["end"]
    makespan = end["t"] - start["t"]
    counts = {k: end["counts"].get(k, 0) - start["counts"].get(k, 0) for k in end["counts"]}
    stack_cpu = {k: round((cpu1[k] - cpu0[k]) * 1000 / n, 2) for k in pids}
    orch_cpu_ms = (end["cpu"] - start["cpu"]) * 1000 / n
    res: dict[str, Any] = {
        "n": n,
        "db": db.kind,
        "makespan_s": round(makespan, 3),
        "command_wall_s": round(wall, 2),
        "done": items.get("done", 0),
        "failed": items.get("failed", 0),
        "orchestrator_cpu_ms_per_item": round(orch_cpu_ms, 3),
        "orchestrator_process_cpu_s": round(child["cpu_s"], 2),
        "orchestrator_peak_rss_mib": round(child["max_rss_mib"], 1),
        "db_statements_per_item": round(sum(v for k, v in counts.items() if k.isupper() and k != "COMMIT") / n, 2),
        "db_write_statements_per_item": round(counts.get("write_statements", 0) / n, 2),
        "db_rows_written_per_item": round(counts.get("write_rows_sent", 0) / n, 2),
        "db_commits_per_item": round(counts.get("COMMIT", 0) / n, 2),
        "db_checkouts_per_item": round(counts.get("db_checkouts", 0) / n, 2),
        "db_connections_opened": counts.get("db_connections_opened", 0),
        "db_statements_by_verb": {k: v for k, v in counts.items() if k.isupper() and v},
        "stack_cpu_ms_per_item": stack_cpu,
    }
    total_cpu_s = sum(cpu1[k] - cpu0[k] for k in pids) + (end["cpu"] - start["cpu"])
    res["cores_busy"] = round(total_cpu_s / makespan, 2) if makespan > 0 else None
    # Whole command (start-up and ingest included): the machine's busy cores, and the share not ours (other
    # processes: PostgreSQL's backends, and on a shared machine other sessions).
    ours_cmd = sum(cpu1[k] - cpu0[k] for k in pids) + child["cpu_s"]
    res["machine_cores_busy"] = round((m1 - m0) / wall, 2) if wall > 0 else None
    res["other_processes_cores_busy"] = round((m1 - m0 - ours_cmd) / wall, 2) if wall > 0 else None
    if pg0 and pg1:
        rows = sum(pg1[k] - pg0[k] for k in ("tup_inserted", "tup_updated", "tup_deleted"))
        res["pg_rows_written_per_item"] = round(rows / n, 2)
        res["pg_commits_per_item"] = round((pg1["xact_commit"] - pg0["xact_commit"]) / n, 2)
    lb = t_lb(n, profile.stages(), _rpms(env))
    res["t_lb_s"] = round(lb, 3)
    # The CPU bound: every process's CPU over the window, spread over the machine's cores (one event loop each).
    res["t_cpu_s"] = round(total_cpu_s / max(1, ncpu()), 3)
    res["latencies_s"] = {"search": profile.search_s, "llm": profile.llm_s, "llm_cv": profile.llm_cv}
    res["context_chars"] = profile.context_chars or None
    res["makespan_over_t_lb"] = ratio(makespan, lb)
    if child.get("timeline"):
        budgets = {"search": SEARCH_BUDGET, "inference": INFERENCE_BUDGET}
        res["breakdown"] = breakdown(child["timeline"], start["t"], end["t"], budgets)
        res["t_stream_expected"] = expected_stream_makespan(n, profile)
        say(f"  where the makespan went: {res['breakdown']}; ideal streaming expects {res['t_stream_expected']}")
    say(f"  research N={n:,} ({db.kind}): makespan {makespan:.1f} s, T_LB {lb:.2f} s → {res['makespan_over_t_lb']}×; "
        f"{res['done']} done / {res['failed']} failed; orchestrator {orch_cpu_ms:.2f} CPU ms/item, "
        f"peak RSS {res['orchestrator_peak_rss_mib']} MiB, {res['db_write_statements_per_item']} writes/item, "
        f"{res['db_commits_per_item']} commits/item; cores busy: ours {res['cores_busy']}, other processes "
        f"{res['other_processes_cores_busy']}")
    return res


def baseline(n: int, tag: str, *, stack_env: dict[str, str], pids: dict[str, int], tmp: Path,
             profile: Profile = SCALED_100) -> dict[str, Any]:
    """Run :mod:`bench.baseline` on ``n`` fresh companies; return its figures (seconds)."""
    path = tmp / f"companies-{tag}.csv"
    write_companies(path, n, tag)
    out = tmp / f"baseline-{tag}.json"
    env = child_env({
        **stack_env,
        **profile.env(),
        "VANTAGE_SEARCH_CONCURRENCY": str(SEARCH_BUDGET),
        "VANTAGE_INFERENCE_CONCURRENCY": str(INFERENCE_BUDGET),
    })
    cpu0 = _cpu(pids)
    m0, t0 = machine_cpu_s(), time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench.baseline", str(path), str(out)], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
    cpu1 = _cpu(pids)
    m1, wall = machine_cpu_s(), time.monotonic() - t0
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"baseline failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    res = json.loads(out.read_text())
    res["stack_cpu_ms_per_item"] = {k: round((cpu1[k] - cpu0[k]) * 1000 / n, 2) for k in pids}
    total_cpu = sum(cpu1[k] - cpu0[k] for k in pids) + res["cpu_s"]
    res["cores_busy"] = round(total_cpu / res["makespan_s"], 2) if res["makespan_s"] > 0 else None
    res["other_processes_cores_busy"] = round((m1 - m0 - total_cpu) / wall, 2) if wall > 0 else None
    lb = t_lb(n, profile.stages(), _rpms(env))
    res["makespan_over_t_lb"] = ratio(res["makespan_s"], lb)
    say(f"  baseline N={n:,}: makespan {res['makespan_s']:.1f} s (searches {res['search_phase_s']:.1f} s, "
        f"gathered LLM batches of {res['batch']} {res['llm_phase_s']:.1f} s) → {res['makespan_over_t_lb']}× T_LB; "
        f"{res['done']} done / {res['failed']} failed; cores busy: ours {res['cores_busy']}, other processes "
        f"{res['other_processes_cores_busy']}")
    return res
