"""Issue acceptance with grpcurl as the client of the orchestrator process (the whole stack as processes):
``StartRun`` then ``WatchRun`` streams progress until the run ends; ``CancelRun`` stops a run that ``ResumeRun``
then completes; invalid ids and states answer NOT_FOUND / FAILED_PRECONDITION with a message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.procs import Stack, start_stack

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
SVC = "vantage.orchestrator.v1.OrchestratorService"
pytestmark = [pytest.mark.integration, pytest.mark.skipif(not Path(GRPCURL).exists(), reason="no grpcurl binary")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    d = tmp_path_factory.mktemp("dur-grpcurl")
    s = start_stack(env={"VANTAGE_LOG_LEVEL": "WARNING", "VANTAGE_DATABASE_URL": f"sqlite:///{d / 'v.db'}",
                         "VANTAGE_WATCH_POLL_SECONDS": "0.2", "VANTAGE_INFERENCE_CONCURRENCY": "2"}, log_dir=d)
    yield s
    s.stop(grace=5)


def call(stack: Stack, method: str, body: dict, *, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([GRPCURL, "-plaintext", "-max-time", "120", "-d", json.dumps(body),
                        stack.children["orchestrator"].address, f"{SVC}/{method}"],
                       capture_output=True, text=True, timeout=150)
    if ok:
        assert p.returncode == 0, f"{method}: {p.stderr}"
    return p


def messages(out: str) -> list[dict]:
    """grpcurl prints each message of a stream as one JSON object after the other."""
    dec, i, found = json.JSONDecoder(), 0, []
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i >= len(out):
            return found
        obj, i = dec.raw_decode(out, i)
        found.append(obj)


def companies(n: int) -> dict:
    return {"companies": [{"company": f"Grpcurl {i} GmbH", "domain": f"g{i}.example"} for i in range(n)]}


def test_dur_grpcurl_start_watch_cancel_resume(stack: Stack) -> None:
    run = json.loads(call(stack, "StartRun", {"kind": "RESEARCH", "research": companies(5), "name": "grpcurl"}).stdout)
    assert run["status"] == "RUNNING"
    events = messages(call(stack, "WatchRun", {"run_id": run["run_id"]}).stdout)  # returns when the run ends
    types = [e["type"] for e in events]
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED" and types.count("ITEM_DONE") == 5
    assert events[-1]["run"]["status"] == "COMPLETED" and events[-1]["run"]["cost_usd"] > 0

    sandbox = stack.env()["VANTAGE_SANDBOX_URL"]
    httpx.post(f"{sandbox}/_sandbox/config", json={"endpoints": {"openai.chat_completions": {"latency_s": 0.5}}},
               timeout=10).raise_for_status()
    try:
        slow = json.loads(call(stack, "StartRun", {"kind": "RESEARCH", "research": companies(12),
                                                   "no_cache": True}).stdout)
        cancelled = json.loads(call(stack, "CancelRun", {"run_id": slow["run_id"]}).stdout)
        assert cancelled["status"] == "CANCELLED" and "running" not in cancelled["counts"]
        again = call(stack, "CancelRun", {"run_id": slow["run_id"]}, ok=False)
        assert again.returncode != 0 and "FailedPrecondition" in again.stderr and "already cancelled" in again.stderr
        resumed = json.loads(call(stack, "ResumeRun", {"run_id": slow["run_id"]}).stdout)
        assert resumed["status"] == "RUNNING"
        events = messages(call(stack, "WatchRun", {"run_id": slow["run_id"]}).stdout)
        assert events[-1]["type"] == "RUN_FINISHED"
        final = json.loads(call(stack, "GetRun", {"run_id": slow["run_id"]}).stdout)
        assert final["status"] == "COMPLETED" and final["counts"]["done"] == 12
    finally:
        httpx.post(f"{sandbox}/_sandbox/config", json={"endpoints": {"openai.chat_completions": None}},
                   timeout=10).raise_for_status()

    missing = call(stack, "GetRun", {"run_id": "3f2a9c1e-0000-4000-8000-000000000000"}, ok=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr and "not found" in missing.stderr
