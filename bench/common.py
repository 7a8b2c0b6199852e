"""Helpers shared by the benchmark parts: CPU pinning, per-process CPU time from ``/proc``, the sandbox's admin API,
the load generator as a pinned child process, and printing.

Units: seconds for durations, milliseconds where a name ends in ``_ms``, calls per second for ``qps``/``rps``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def ncpu() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_pin() -> bool:
    """True when there are two CPUs to split between server and generator (reference/performance.md §1.2)."""
    return hasattr(os, "sched_setaffinity") and ncpu() >= 2


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin ``pid`` to ``cpus`` (None = every CPU); best effort."""
    if not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, cpus if cpus is not None else set(range(os.cpu_count() or 1)))


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (``/proc/<pid>/stat`` fields 14 and 15); NaN when
    it is gone or on a system without ``/proc``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of ``pid`` in MiB; NaN when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every process, every core: ``/proc/stat`` user + nice + system
    + irq + softirq + steal); NaN without ``/proc``. The difference with our processes' CPU over a window is the
    load of *other* processes (on a shared machine, other sessions' test suites)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def sandbox_config(sandbox_url: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a JSON merge-patch to the sandbox's knobs (``POST /_sandbox/config``); returns the new knobs."""
    r = httpx.post(f"{sandbox_url}/_sandbox/config", json=patch, timeout=10)
    r.raise_for_status()
    return r.json()


def sandbox_reset(sandbox_url: str) -> None:
    """Zero the sandbox's counters and drop its snapshots (``POST /_sandbox/reset``)."""
    httpx.post(f"{sandbox_url}/_sandbox/reset", timeout=10).raise_for_status()


def sandbox_stats(sandbox_url: str) -> dict[str, Any]:
    r = httpx.get(f"{sandbox_url}/_sandbox/stats", timeout=10)
    r.raise_for_status()
    return r.json()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of every child: the repo and gen/ importable, warnings-only logs."""
    env = {**os.environ, "VANTAGE_LOG_LEVEL": "WARNING", "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"}
    env.update(extra or {})
    return env


def pinned_cmd(cmd: list[str], cpu: int | None) -> list[str]:
    """``cmd`` under ``taskset -c cpu`` when pinning is possible and taskset exists."""
    if cpu is None or not can_pin() or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


def loadtest(address: str, method: str, data: dict[str, Any] | str, *, cpu: int | None, args: list[str],
             timeout: float = 120.0) -> dict[str, Any]:
    """Run ``python -m services.loadtest ADDRESS METHOD -d DATA ARGS --json`` (pinned to ``cpu``) and return its JSON
    object. Raises RuntimeError with its stderr when it fails."""
    payload = data if isinstance(data, str) else json.dumps(data)
    cmd = pinned_cmd([sys.executable, "-m", "services.loadtest", address, method, "-d", payload, *args, "--json"], cpu)
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"loadtest {method} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Clock:
    """Wall time since the bench started (s), for progress lines."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0


CLOCK = Clock()


def say(msg: str) -> None:
    """A progress line on stderr, stamped with the bench's elapsed time."""
    sys.stderr.write(f"[{CLOCK():6.1f}s] {msg}\n")
    sys.stderr.flush()


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded to 3 places; None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)
