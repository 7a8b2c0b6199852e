"""``python -m bench.overhead``: part e of ``make bench`` alone (issue 16 items 1 and 2) — the orchestrator's CPU per
researched item and its database statements / commits per item — optionally side by side with an older commit, and
with sampling profiles of the orchestrator process.

It starts the stack like ``make bench`` (sandbox, search, inference, extraction; logs at WARNING; the sandbox at the
×1/100 latencies of part b: search 20 ms, LLM lognormal mean 150 ms CV 0.5), then runs ``vantage research`` on N fresh
companies (:func:`bench.pipeline.research`: a fresh PostgreSQL database when one answers at ``VANTAGE_TEST_PG``,
else SQLite) and reports, per run, the figures part e reports (``orchestrator_cpu_ms_per_item`` over the execution
window, ``db_statements_per_item``, ``db_commits_per_item``, the stack's CPU ms per item, makespan).

Options:

- ``--n N`` (default 1000) companies per run;
- ``--before REV``: also run the orchestrator of commit ``REV`` (``git archive`` into a temporary tree; or a
  directory holding such a tree), on the same stack, alternating before / after ``--rounds`` times (default 1), so that both are measured in one run on the
  same machine state;
- ``--before-services NAMES`` (comma-separated, of search, inference, extraction): the "before" runs also use
  these services of the ``--before`` tree (a second process each, started from that tree on the same sandbox,
  whose CPU is reported under the same names), so that a service's CPU per item is compared side by side too;
- ``--profile DIR``: after the measured runs, one more run per tree under ``py-spy record`` (sampling, on-CPU only,
  ``--rate 250``), writing the collapsed stacks to ``DIR/<tree>.txt`` and the top functions by own and by inclusive
  samples to ``DIR/<tree>-top.txt`` (profiled runs are not used for the figures: the sampler takes CPU too).

The last line on stdout is one JSON object: ``{"n": …, "runs": {"before": [...], "after": [...]}, "profiles": …}``
(progress goes to stderr). Units: ms per item, statements and commits per item, seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench import pipeline
from bench.common import ROOT, sandbox_config, say
from shared.procs import start_child, start_stack

#: The figures of a run that part e reports (and the makespan, to see the run was comparable).
FIELDS = ("orchestrator_cpu_ms_per_item", "db_statements_per_item", "db_write_statements_per_item",
          "db_commits_per_item", "db_checkouts_per_item", "db_statements_by_verb", "stack_cpu_ms_per_item",
          "makespan_s", "done", "failed", "db", "cores_busy")


def export_tree(rev: str, dest: Path) -> Path:
    """The source tree of commit ``rev`` (``git archive``) under ``dest``. Raises CalledProcessError for a bad rev."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def top_functions(collapsed: Path, k: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top ``k`` functions of a py-spy collapsed-stack file (``frame;frame;… count`` lines) by own samples and by
    inclusive samples, each as (``function (file)``, percent of all samples). The inclusive list leaves out the
    frames under which half the samples or more sit (the interpreter's and the CLI's entry points, the event loop)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    pct = 100.0 / max(1, total)
    return {
        "samples": [("total", float(total))],
        "own": [(f, round(c * pct, 1)) for f, c in own.most_common(k)],
        "inclusive": [(f, round(c * pct, 1)) for f, c in incl.most_common() if c * 2 < total][:k],
    }


def _frame(raw: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``: one entry per function, not per line."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--before", default="", help="commit to measure side by side with the working tree")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--before-services", default="",
                    help="services (search,inference,extraction) the before runs take from the --before tree")
    ap.add_argument("--profile", type=Path, default=None, help="directory for py-spy profiles")
    ap.add_argument("--profile-n", type=int, default=600)
    args = ap.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        print("bench.overhead: --n and --rounds must be ≥ 1", file=sys.stderr)
        return 2
    before_services = [s for s in args.before_services.split(",") if s]
    if before_services and (not args.before or set(before_services) - {"search", "inference", "extraction"}):
        print("bench.overhead: --before-services needs --before and names of search, inference, extraction",
              file=sys.stderr)
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.profile is not None and not Path(spy).exists():
        print("bench.overhead: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="vantage-overhead-"))
    trees: dict[str, Path | None] = {}
    if args.before:
        given = Path(args.before)
        trees["before"] = given.resolve() if given.is_dir() else export_tree(args.before, tmp / "before")
    trees["after"] = None
    stack_env = {
        "VANTAGE_LOG_LEVEL": "WARNING",
        "VANTAGE_SANDBOX_LOG_LEVEL": "warning",
        "VANTAGE_TAVILY_CONCURRENCY": str(pipeline.SEARCH_BUDGET),
        "VANTAGE_OPENAI_CONCURRENCY": str(pipeline.INFERENCE_BUDGET),
        "VANTAGE_TAVILY_RPM": "0",  # the sandbox's limit (none), as in make bench (bench/__main__.py)
        "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'stack.db'}",
    }
    say(f"starting the stack; {args.n} companies per run, trees {list(trees)}, {args.rounds} round(s)")
    stack = start_stack(("sandbox", "search", "inference", "extraction"), env=stack_env, log_dir=tmp / "logs")
    sandbox_url = f"http://{stack.children['sandbox'].address}"
    pids = {k: c.proc.pid for k, c in stack.children.items()}
    bench_env = {**stack.env(), "VANTAGE_TAVILY_RPM": stack_env["VANTAGE_TAVILY_RPM"]}  # T_LB reads the limit
    envs = {name: bench_env for name in trees}
    run_pids = {name: pids for name in trees}
    out: dict[str, Any] = {"n": args.n, "before": args.before or None, "runs": {k: [] for k in trees},
                           "profiles": {}}
    try:
        for svc in before_services:
            tree = trees["before"]
            assert tree is not None
            # ``python -m`` puts the working directory first on sys.path: the child runs the tree's code.
            with contextlib.chdir(tree):
                old = start_child(svc, env={**stack_env, "VANTAGE_SANDBOX_URL": sandbox_url,
                                            # its own database: two services' caches on one SQLite file lock
                                            "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'before.db'}",
                                            "PYTHONPATH": f"{tree}:{tree / 'gen'}"}, log_dir=tmp / "logs-before")
            stack.children[f"{svc}-before"] = old
            envs["before"] = {**envs["before"], f"VANTAGE_{svc.upper()}_ADDR": old.address}
            run_pids["before"] = {**run_pids["before"], svc: old.proc.pid}
        sandbox_config(sandbox_url, pipeline.SCALED_100.sandbox_patch())
        # Warm-up (caches of the services, first connections), not measured.
        for name in trees:
            pipeline.research(100, f"w{name[0]}", stack_env=envs[name], pids=run_pids[name], tmp=tmp,
                              db_prefer="auto")
        order = list(trees)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else reversed(order):
                say(f"{name}, round {r + 1}")
                res = pipeline.research(args.n, f"{name[0]}{r}", stack_env=envs[name], pids=run_pids[name],
                                        tmp=tmp, db_prefer="auto", tree=trees[name])
                out["runs"][name].append({k: res.get(k) for k in FIELDS})
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, tree in trees.items():
                raw = args.profile / f"{name}.txt"
                wrap = [spy, "record", "--rate", "250", "--format", "raw", "--output", str(raw), "--"]
                say(f"{name}, profiled (py-spy)")
                pipeline.research(args.profile_n, f"p{name[0]}", stack_env=envs[name], pids=run_pids[name], tmp=tmp,
                                  db_prefer="auto", tree=tree, wrap=wrap)
                top = top_functions(raw)
                lines = [f"py-spy, {name}: {int(top['samples'][0][1])} samples (on-CPU), N = {args.profile_n}",
                         "", "own %   function"]
                lines += [f"{p:5.1f}   {f}" for f, p in top["own"]]
                lines += ["", "incl %  function"] + [f"{p:5.1f}   {f}" for f, p in top["inclusive"]]
                (args.profile / f"{name}-top.txt").write_text("\n".join(lines) + "\n")
                out["profiles"][name] = {"own": top["own"][:10], "inclusive": top["inclusive"][:10]}
    finally:
        stack.stop(grace=5)
    for name, runs in out["runs"].items():
        for res in runs:
            say(f"{name}: orchestrator {res['orchestrator_cpu_ms_per_item']} CPU ms/item, "
                f"{res['db_statements_per_item']} statements/item, {res['db_commits_per_item']} commits/item, "
                f"makespan {res['makespan_s']} s ({res['db']})")
    sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
