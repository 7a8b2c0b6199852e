"""Start Vantage processes (services, sandbox) as children and wait until they are ready.

Used by ``vantage up``, the demo and the integration tests. A child is started with ``--port 0 --ready-file F``
(or a fixed port) and is ready when it has written F: no sleeps, a poll with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import service_environ

SERVICE_NAMES = ("sandbox", "search", "inference", "extraction", "orchestrator")


@dataclass
class Child:
    """A started child process and the address it reported."""

    name: str
    proc: subprocess.Popen[bytes]
    address: str = ""
    port: int = 0
    log_path: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None


def module_for(name: str) -> str:
    """Python module that runs service ``name`` (``python -m <module>``)."""
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}")
    return f"services.{name}"


def start_child(
    name: str,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = 60.0,
) -> Child:
    """Start service ``name`` on ``host:port`` and wait until it has written its ready file.

    Raises ``RuntimeError`` with the tail of the child's log when it exits or is not ready within ``ready_timeout``
    seconds.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"vantage-{name}-"))
    ready = tmp / "ready.json"
    log_path = (log_dir or tmp) / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "ab")
    cmd = [sys.executable, "-m", module_for(name), "--host", host, "--port", str(port), "--ready-file", str(ready)]
    # The child gets no other service's secrets (shared.config.service_environ), like a Deployment its own Secret.
    child_env = service_environ(name, {**os.environ, **(env or {})})
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env, start_new_session=True)
    logf.close()
    child = Child(name, proc, log_path=log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            child.port = int(info["port"])
            child.address = f"{host}:{child.port}"
            return child
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    stop_child(child, grace=1.0)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise RuntimeError(f"{name} did not become ready (exit={proc.poll()}):\n{tail}")


def stop_child(child: Child, grace: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Send ``sig`` and wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
    if child.proc.poll() is None:
        try:
            child.proc.send_signal(sig)
            child.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    return child.proc.returncode


@dataclass
class Stack:
    """Every service of a local stack, started in dependency order."""

    children: dict[str, Child] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment that points a client (the CLI, a test) at this stack."""
        out: dict[str, str] = {}
        for name, c in self.children.items():
            if name == "sandbox":
                out["VANTAGE_SANDBOX_URL"] = f"http://{c.address}"
            else:
                out[f"VANTAGE_{name.upper()}_ADDR"] = c.address
        return out

    def stop(self, grace: float = 10.0) -> None:
        for c in reversed(list(self.children.values())):
            stop_child(c, grace)


def start_stack(
    names: tuple[str, ...] = SERVICE_NAMES,
    *,
    env: dict[str, str] | None = None,
    ports: dict[str, int] | None = None,
    log_dir: Path | None = None,
) -> Stack:
    """Start ``names`` (in order; the sandbox first so the others can be pointed at it). On failure every child
    started so far is stopped and the error is re-raised."""
    stack = Stack()
    base_env = dict(env or {})
    try:
        for name in names:
            child_env = {**base_env, **stack.env()}
            stack.children[name] = start_child(
                name, port=(ports or {}).get(name, 0), env=child_env, log_dir=log_dir
            )
    except BaseException:
        stack.stop(grace=2.0)
        raise
    return stack
