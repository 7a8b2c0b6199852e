"""Full-stack canary: every provider key and the bearer token are canaries while the whole stack (sandbox, search,
inference, extraction, orchestrator as real processes) researches ``examples/companies.csv`` through the
``vantage`` CLI; then none of them may appear in any process's log (DEBUG, JSON), the CLI's output, any row of any
table of the database, or ``vantage export`` (CSV and JSON).

The keys are real configuration here, not decoys: the services send them to the provider emulators, and the token
guards every RPC (the CLI's channels carry it).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shared.procs import start_stack

ROOT = Path(__file__).resolve().parents[2]
CANARIES = {
    "TAVILY_API_KEY": "tvly-CANARYstack1f2e3d4c5b6a",
    "OPENAI_API_KEY": "sk-CANARYstack9a8b7c6d5e4f",
    "ANTHROPIC_API_KEY": "sk-ant-CANARYstack0a1b2c3d",
    "BRIGHTDATA_API_TOKEN": "CANARYbrightdata5e6f7a8b9c",
    "PERPLEXITY_API_KEY": "pplx-CANARYstack3c4d5e6f7a",
    "VANTAGE_AUTH_TOKEN": "CANARYauthtoken2b3c4d5e6f7a",
}


def assert_clean(text: str, where: str) -> None:
    for name, secret in CANARIES.items():
        assert secret not in text, f"{name} leaked into {where}"
        assert secret[-12:] not in text, f"a fragment of {name} leaked into {where}"


def dump_sqlite(path: Path) -> str:
    """Every row of every table, as text."""
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        out = []
        for t in tables:
            for row in con.execute(f'select * from "{t}"'):
                out.append(f"{t}: {row!r}")
        return "\n".join(out)
    finally:
        con.close()


@pytest.mark.integration
def test_no_secret_reaches_logs_database_or_exports(tmp_path: Path):
    db_path = tmp_path / "canary.db"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VANTAGE_", "DATABASE_URL"))}
    env = {
        **base,
        **CANARIES,
        "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "VANTAGE_LOG_LEVEL": "DEBUG",
        "VANTAGE_LOG_FORMAT": "json",
    }
    logs = tmp_path / "logs"
    stack = start_stack(env=env, log_dir=logs)
    try:
        cli_env = {**env, **stack.env()}
        cli = [sys.executable, "-m", "services.orchestrator.cli"]
        research = subprocess.run(
            [*cli, "research", str(ROOT / "examples" / "companies.csv"), "--output", "json"],
            env=cli_env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
        assert research.returncode in (0, 1), research.stderr[-3000:]
        found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", research.stdout + research.stderr)
        assert found, research.stdout[-2000:]
        run_id = found.group(0)
        exports = []
        for fmt in ("csv", "json"):
            target = tmp_path / f"export.{fmt}"
            done = subprocess.run(
                [*cli, "export", run_id, "--format", fmt, "--out", str(target)],
                env=cli_env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            exports.append(target.read_text())
    finally:
        stack.stop(grace=5)
    assert exports[0].count("\n") >= 10, "the run produced results"
    json.loads(exports[1])
    rows = dump_sqlite(db_path)
    assert "Anthropic" in rows and "HOT" in rows, "the database holds the run"
    log_text = "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))
    assert '"rpc"' in log_text, "the services logged their RPCs (DEBUG)"
    assert_clean(research.stdout + research.stderr, "the CLI's output")
    assert_clean(log_text, "the services' logs")
    assert_clean(rows, "the database")
    assert_clean(exports[0], "the CSV export")
    assert_clean(exports[1], "the JSON export")
