"""The ``python -m services.sandbox`` entry point: ready file, serving, graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.sandbox import base_urls

ROOT = Path(__file__).resolve().parents[2]


def test_base_urls() -> None:
    assert base_urls("http://127.0.0.1:8080/") == {
        "tavily": "http://127.0.0.1:8080/tavily",
        "openai": "http://127.0.0.1:8080/openai/v1",
        "anthropic": "http://127.0.0.1:8080/anthropic",
        "perplexity": "http://127.0.0.1:8080/perplexity",
        "brightdata": "http://127.0.0.1:8080/brightdata",
    }


def test_cli_ready_file_and_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {**os.environ, "VANTAGE_SANDBOX_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(ready),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no ready file within 20 s"
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid and info["port"] > 0
        r = httpx.get(f"http://127.0.0.1:{info['port']}/healthz", timeout=5)
        assert r.json() == {"status": "ok"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
