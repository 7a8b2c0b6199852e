"""`vantage runs` / `vantage status` machine output (--output json) and their usage errors, on a fresh database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def vantage(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "VANTAGE_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "services.orchestrator.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_runs_json_on_an_empty_database_is_an_empty_list(tmp_path: Path) -> None:
    p = vantage(tmp_path / "v.db", "runs", "--output", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_unknown_output_format_and_unknown_run_are_usage_errors(tmp_path: Path) -> None:
    p = vantage(tmp_path / "v.db", "runs", "--output", "xml")
    assert p.returncode == 2 and "xml" in p.stderr and "Traceback" not in p.stderr
    p = vantage(tmp_path / "v.db", "status", "no-such-run", "--output", "json")
    assert p.returncode == 2 and "no-such-run" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
