"""The CLI's detached path, as subprocesses against in-process services and the sandbox: ``vantage research
--detach`` and ``vantage evaluate --detach`` print a run id and leave the run queued; ``vantage worker --once``
executes both (a research run and an ORG_EVAL run) and exits 0; ``vantage status`` shows the run and its repeated
paid calls (none here)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from services.orchestrator.store import open_store
from shared.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]


async def vantage(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update({
        "VANTAGE_DATABASE_URL": settings.database_url, "VANTAGE_SANDBOX_URL": settings.sandbox_url,
        "VANTAGE_SEARCH_ADDR": settings.search_addr, "VANTAGE_INFERENCE_ADDR": settings.inference_addr,
        "VANTAGE_EXTRACTION_ADDR": settings.extraction_addr, "VANTAGE_LEASE_SECONDS": "3",
        "VANTAGE_WORKER_POLL_SECONDS": "0.2", "VANTAGE_LOG_LEVEL": "WARNING",
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orchestrator.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dur_detached_research_and_evaluation_run_in_a_worker(services: Settings, tmp_path: Path) -> None:
    settings = services.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'cli.db'}"})
    csv = tmp_path / "companies.csv"
    csv.write_text("company,domain\nAnthropic,anthropic.com\nMistral AI,mistral.ai\nJasper,jasper.ai\n")
    questions = tmp_path / "questions.txt"
    questions.write_text("best GPU cloud for training large models\ncheapest inference API for open models\n")

    code, out, err = await vantage(settings, "research", "--detach", str(csv))
    assert code == 0, err
    research_id = out.strip()
    assert "queued for workers" in err
    code, out, err = await vantage(settings, "evaluate", "--samples", "1", "--detach", "--org", "Together AI", "--domain",
                                   "together.ai", "--questions", str(questions), "--models", "gpt-4.1")
    assert code == 0, err
    eval_id = out.strip()

    store = await open_store(settings.database_url)
    try:
        for run_id in (research_id, eval_id):
            run = await store.get_run(run_id)
            assert run is not None and run.status == "pending" and run.detached
        code, _out, err = await vantage(settings, "worker", "--once")
        assert code == 0, err
        for run_id, n in ((research_id, 3), (eval_id, 2)):
            run = await store.get_run(run_id)
            totals = await store.run_totals(run_id)
            assert run is not None and run.status == "completed", (run_id, run)
            assert totals.counts["done"] == n
    finally:
        await store.close()

    code, out, err = await vantage(settings, "status", research_id[:8])
    assert code == 0, err
    assert "completed" in out and "repeated paid calls: 0 " in out


async def test_dur_cancel_from_the_cli_stops_a_run_in_a_worker_and_resume_detach_hands_it_back(
    services: Settings, tmp_path: Path, knobs
) -> None:
    # 60 items × 0.5 s over 2 slots ≈ 15 s: the run is still going when the `vantage cancel` process has started,
    # even on a loaded machine (20 × 0.3 s could finish first).
    knobs({"endpoints": {"openai.chat_completions": {"latency_s": 0.5}}})
    settings = services.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'cli.db'}"})
    csv = tmp_path / "companies.csv"
    csv.write_text("company,domain\n" + "".join(f"Cancelco {i},c{i}.example\n" for i in range(60)))
    code, out, err = await vantage(settings, "research", "--detach", "--no-cache", str(csv))
    assert code == 0, err
    run_id = out.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update({
        "VANTAGE_DATABASE_URL": settings.database_url, "VANTAGE_SANDBOX_URL": settings.sandbox_url,
        "VANTAGE_SEARCH_ADDR": settings.search_addr, "VANTAGE_INFERENCE_ADDR": settings.inference_addr,
        "VANTAGE_EXTRACTION_ADDR": settings.extraction_addr, "VANTAGE_INFERENCE_CONCURRENCY": "2",
        "VANTAGE_CONTROL_POLL_SECONDS": "0.2", "VANTAGE_WORKER_POLL_SECONDS": "0.2", "VANTAGE_LOG_LEVEL": "WARNING",
    })
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orchestrator.cli", "worker", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    store = await open_store(settings.database_url)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (await store.run_totals(run_id)).counts["done"] < 2:
            assert loop.time() < deadline and worker.returncode is None
            await asyncio.sleep(0.1)
        code, _out, err = await vantage(settings, "cancel", run_id[:8])
        assert code == 0, err
        assert f"resume with: vantage resume {run_id}" in err
        run, totals = await store.get_run(run_id), await store.run_totals(run_id)
        assert run is not None and run.status == "cancelled" and totals.counts["running"] == 0 and totals.unfinished
        code, _out, err = await vantage(settings, "cancel", run_id)
        assert code == 2 and "already cancelled" in err
        code, out, err = await vantage(settings, "resume", "--detach", run_id)
        assert code == 0 and out.strip() == run_id, err
        deadline = loop.time() + 90
        while (await store.get_run(run_id)).status != "completed":  # type: ignore[union-attr]
            assert loop.time() < deadline and worker.returncode is None
            await asyncio.sleep(0.1)
        assert (await store.run_totals(run_id)).counts["done"] == 60
    finally:
        await store.close()
        if worker.returncode is None:
            worker.terminate()
        _out, err_b = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err_b.decode()[-2000:]
