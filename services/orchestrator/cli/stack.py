"""``vantage serve``, ``vantage up`` and ``vantage demo``: run services as separate processes on loopback.

``up`` starts the sandbox (optional) and the four services in dependency order, waits until each answers
``grpc.health.v1.Health/Check`` with SERVING, prints their addresses, and stops them all (SIGTERM, then SIGKILL
after the grace period) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.config import Settings
from shared.procs import SERVICE_NAMES, Stack, start_stack

GRPC_SERVICES = ("search", "inference", "extraction", "orchestrator")


def wait_serving(address: str, timeout: float = 30.0) -> None:
    """Poll ``grpc.health.v1.Health/Check`` on ``address`` until SERVING; raise ``RuntimeError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = ""
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            except grpc.RpcError as e:
                last = e.code().name
            time.sleep(0.05)
    raise RuntimeError(f"{address} is not SERVING after {timeout:.0f}s (last: {last})")


def bring_up(
    settings: Settings, *, sandbox: bool, ephemeral: bool, log_dir: Path | None = None, env: dict[str, str] | None = None
) -> Stack:
    """Start the stack and wait until every gRPC service is SERVING. Ports come from settings unless ``ephemeral``."""
    names = tuple(n for n in SERVICE_NAMES if sandbox or n != "sandbox")
    ports = {} if ephemeral else {n: getattr(settings, f"{n}_port") for n in names}
    stack = start_stack(names, env=env, ports=ports, log_dir=log_dir)
    try:
        for name in GRPC_SERVICES:
            wait_serving(stack.children[name].address)
    except BaseException:
        stack.stop(grace=2.0)
        raise
    return stack


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def run_demo(settings: Settings, csv_path: Path, extra_args: list[str]) -> int:
    """Start the whole stack against the sandbox on free ports, run ``vantage research`` on ``csv_path`` as its own
    process (so it is the same command a user types), print its output, stop the stack. Returns its exit code."""
    log_dir = Path(tempfile.mkdtemp(prefix="vantage-demo-"))
    db = log_dir / "demo.db"
    env = {"VANTAGE_LOG_LEVEL": os.environ.get("VANTAGE_LOG_LEVEL", "WARNING"), "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    print(f"starting sandbox, search, inference, extraction, orchestrator (logs in {log_dir}) …", flush=True)
    stack = bring_up(settings, sandbox=True, ephemeral=True, log_dir=log_dir, env=env)
    try:
        for name, child in stack.children.items():
            print(f"  {name:<13} {child.address}  pid {child.proc.pid}", flush=True)
        cmd = [sys.executable, "-m", "services.orchestrator.cli", "research", str(csv_path), *extra_args]
        return subprocess.call(cmd, env={**os.environ, **env, **stack.env()})
    finally:
        stack.stop()
        print("stack stopped", flush=True)


#: Settings of the evaluation demo's stack: a short linger (the questions of a (model, location) group arrive
#: together anyway) and quick Bright Data polls (sandbox snapshots take VANTAGE_SANDBOX_BRIGHTDATA_DURATION_S = 1 s).
DEMO_EVAL_ENV = {
    "VANTAGE_BATCH_LINGER_SECONDS": "0.3",
    "VANTAGE_BRIGHTDATA_POLL_SECONDS": "0.5",
}
DEMO_EVAL_ARGS = (
    "--org", "Together AI", "--domain", "together.ai", "--models", "chatgpt,perplexity,gpt-5.5,claude-sonnet-5",
    "--locations", "US,GB", "--competitors", "CoreWeave,Lambda",
)


def run_demo_eval(settings: Settings, questions_path: Path, extra_args: list[str] | None = None) -> int:
    """Start the whole stack against the sandbox on free ports, run ``vantage evaluate`` for Together AI on
    ``questions_path`` × 4 models × 2 locations as its own process, print its output (the visibility report) and the
    path of its HTML report (``report.html`` next to the logs), stop the stack. Returns its exit code."""
    log_dir = Path(tempfile.mkdtemp(prefix="vantage-demo-eval-"))
    db = log_dir / "demo.db"
    env = {
        "VANTAGE_LOG_LEVEL": os.environ.get("VANTAGE_LOG_LEVEL", "WARNING"),
        "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        **DEMO_EVAL_ENV,
    }
    print(f"starting sandbox, search, inference, extraction, orchestrator (logs in {log_dir}) …", flush=True)
    started = time.monotonic()
    stack = bring_up(settings, sandbox=True, ephemeral=True, log_dir=log_dir, env=env)
    try:
        for name, child in stack.children.items():
            print(f"  {name:<13} {child.address}  pid {child.proc.pid}", flush=True)
        html_path = log_dir / "report.html"
        cmd = [sys.executable, "-m", "services.orchestrator.cli", "evaluate", *DEMO_EVAL_ARGS,
               "--questions", str(questions_path), "--html", str(html_path), *(extra_args or [])]
        code = subprocess.call(cmd, env={**os.environ, **env, **stack.env()})
        print(f"demo-eval: {time.monotonic() - started:.1f}s wall, stack start-up included", flush=True)
        if html_path.exists():
            print(f"HTML report: {html_path}", flush=True)
        return code
    finally:
        stack.stop()
        print("stack stopped", flush=True)
