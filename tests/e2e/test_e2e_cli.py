"""The real ``vantage`` CLI as a subprocess against a real stack (sandbox + search + inference + extraction
processes): research prints the table and totals; bad input and unreachable services are one-line errors with
their exit codes; a SIGKILLed run resumes to completion with every company exactly once."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from e2e_kit import ROOT, Cli

from services.orchestrator.store import head_revision

pytestmark = pytest.mark.e2e

COMPANIES = ROOT / "examples" / "companies.csv"
NAMES = ["Together AI", "Anthropic", "Mistral AI", "Cohere", "OpenAI", "Perplexity", "Jasper", "Character.ai",
         "Runway", "Stability AI"]
RUN_ID = re.compile(r"run ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def db_path(cli: Cli) -> Path:
    return Path(cli.env["VANTAGE_DATABASE_URL"].removeprefix("sqlite:///"))


def query(cli: Cli, sql: str, *params: object) -> list[tuple]:
    con = sqlite3.connect(db_path(cli), timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_research_prints_table_and_totals(cli: Cli) -> None:
    r = cli("research", str(COMPANIES))
    assert r.code == 0, r.err
    for header in ("Company", "Tier", "Score", "Category", "Kept/Returned", "Tokens", "Cost USD", "Status"):
        assert header in r.out
    for name in NAMES:
        assert name in r.out
    assert re.search(r"Jasper\s+│\s+COLD", r.out) and re.search(r"Anthropic\s+│\s+HOT", r.out)
    assert "done 10 · failed 0 · success rate 100.0%" in r.out
    credits = int(re.search(r"Tavily credits (\d+)", r.out).group(1))  # type: ignore[union-attr]
    usd = float(re.search(r"total \$([0-9.]+)", r.out).group(1))  # type: ignore[union-attr]
    assert credits > 0 and usd > 0
    assert re.search(r"wall \d+\.\ds", r.out)
    run_id = RUN_ID.search(r.out).group(1)  # type: ignore[union-attr]
    assert "Traceback" not in r.err

    # Machine outputs of the same run.
    exp = cli("export", run_id[:8], "--format", "json")
    assert exp.code == 0, exp.err
    doc = json.loads(exp.out)
    assert doc["run"]["status"] == "completed" and len(doc["items"]) == 10
    assert doc["run"]["cost_usd"] == pytest.approx(usd, abs=5e-5)
    csv_out = cli("export", run_id, "--format", "csv", "--out", "r.csv")
    assert csv_out.code == 0 and (cli.cwd / "r.csv").read_text().count("\n") == 11
    st = cli("status", run_id)
    assert st.code == 0 and "completed" in st.out and "done 10" in st.out
    assert run_id in cli("runs").out


def test_research_json_output_and_lookup(cli: Cli) -> None:
    r = cli("research", str(COMPANIES), "--output", "json", "--quiet")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {i["company"]: i["tier"] for i in doc["items"]}["Jasper"] == "COLD"
    assert doc["run"]["counts"]["done"] == 10
    look = cli("lookup", "Anthropic", "--domain", "anthropic.com")
    assert look.code == 0, look.err
    assert "HOT" in look.out and "Frontier pre-training" in look.out and "anthropic.com" in look.out


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("foo,bar\n1,2\n", "missing header"),
        (None, "no such file"),
    ],
)
def test_bad_input_is_a_one_line_error_exit_2(cli: Cli, content: str | None, needle: str) -> None:
    path = cli.cwd / "in.csv"
    if content is not None:
        path.write_text(content)
    r = cli("research", str(path))
    assert r.code == 2
    assert needle in one_line_error(r.err)
    assert r.out == ""


def test_unknown_run_and_unreachable_services(cli: Cli) -> None:
    r = cli("status", "0123abcd")
    assert r.code == 2 and "not found" in one_line_error(r.err)
    r = cli("research", str(COMPANIES), extra_env={"VANTAGE_SEARCH_ADDR": "127.0.0.1:1"})
    assert r.code == 3
    assert "search service not reachable at 127.0.0.1:1" in one_line_error(r.err)


def test_schema_behind_is_refused_until_db_upgrade(cli: Cli) -> None:
    con = sqlite3.connect(db_path(cli))
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.execute("CREATE TABLE notes (x TEXT)")  # not empty: no silent auto-upgrade
    con.commit()
    con.close()
    r = cli("research", str(COMPANIES))
    assert r.code == 3
    assert f"code needs {head_revision()}: run `vantage db upgrade`" in one_line_error(r.err)
    up = cli("db", "upgrade")
    assert up.code == 0 and head_revision() in up.out
    assert cli("research", "-q", str(COMPANIES)).code == 0


def test_sigkill_mid_run_then_resume_finishes_every_company_once(slow_cli: Cli) -> None:
    """Acceptance: a slow sandbox, SIGKILL about half-way (polling the database), `vantage resume` completes."""
    cli = slow_cli
    slow = {"VANTAGE_INFERENCE_CONCURRENCY": "1"}  # one LLM call at a time: ~0.4 s per company
    proc = cli.popen("research", str(COMPANIES), extra_env=slow)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path(cli).exists():
            try:
                done = query(cli, "SELECT count(*) FROM run_items WHERE status = 'done'")[0][0]
            except sqlite3.OperationalError:  # tables not created yet
                done = 0
            if done >= 5:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    [(run_id, status)] = query(cli, "SELECT id, status FROM runs")
    assert status == "running"  # killed: nobody marked it
    done_before = {c for (c,) in query(cli, "SELECT company FROM run_items WHERE status = 'done'")}
    assert 5 <= len(done_before) < 10

    r = cli("resume", run_id, extra_env=slow)
    assert r.code == 0, r.err
    assert "done 10 · failed 0" in r.out

    assert query(cli, "SELECT status FROM runs WHERE id = ?", run_id) == [("completed",)]
    rows = query(
        cli,
        "SELECT i.company, count(c.id) FROM run_items i LEFT JOIN classifications c ON c.item_id = i.id "
        "GROUP BY i.company",
    )
    assert sorted(rows) == sorted((name, 1) for name in NAMES)  # every company exactly once
    # Companies finished before the kill were not redone: still their first attempt, paid once (one search, one
    # LLM call, both attempt 1).
    for company in done_before:
        [(item_id, attempts)] = query(cli, "SELECT id, attempts FROM run_items WHERE company = ?", company)
        assert attempts == 1, company
        rows = query(cli, "SELECT kind, idempotency_key FROM cost_ledger WHERE item_id = ?", item_id)
        assert sorted(k for k, _ in rows) == ["llm", "search"], company
        assert all(key.split(":")[3] == "1" for _, key in rows), rows
    keys = [k for (k,) in query(cli, "SELECT idempotency_key FROM cost_ledger")]
    assert len(keys) == len(set(keys))


def test_ctrl_c_cancels_the_run_and_resume_completes_it(slow_cli: Cli) -> None:
    """SIGINT: stop cooperatively (exit 130, run cancelled, in-flight items back to pending), then resume.
    --no-cache: the slow stack's caches are warm from the test above."""
    cli = slow_cli
    slow = {"VANTAGE_INFERENCE_CONCURRENCY": "1"}
    proc = cli.popen("research", "--no-cache", str(COMPANIES), extra_env=slow)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db_path(cli).exists() and query(cli, "SELECT count(*) FROM run_items WHERE status = 'done'")[0][0]:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    [(run_id, status)] = query(cli, "SELECT id, status FROM runs")
    assert status == "cancelled"
    assert f"resume with: vantage resume {run_id}" in err
    assert query(cli, "SELECT count(*) FROM run_items WHERE status = 'running'") == [(0,)]

    r = cli("resume", run_id[:8], "--quiet", extra_env=slow)
    assert r.code == 0, r.err
    assert query(cli, "SELECT status FROM runs") == [("completed",)]
    assert query(cli, "SELECT count(DISTINCT item_id), count(*) FROM classifications") == [(10, 10)]
