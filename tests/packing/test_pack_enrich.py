"""``vantage enrich`` as a user runs it (the real CLI as a subprocess against real services and the sandbox), and the
packed-enrichment helpers of services/orchestrator/app/jobs/enrich.py (name variations, competitor merging)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pack_testkit import calls

from services.orchestrator.app.jobs.enrich import group_variants, merge_competitor_variants, name_variations
from shared.config import Settings
from shared.procs import Stack, start_stack
from vantage.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SCHEMA = {
    "type": "object",
    "properties": {
        "canonical_name": {"type": "string"},
        "aliases": {"type": "array", "items": {"type": "string"}},
        "segment": {"type": "string", "enum": ["cloud", "lab", "other"]},
        "employees": {"type": "integer", "minimum": 1, "maximum": 5000},
    },
}
INSTRUCTION = "Give the company's canonical name, its aliases, its segment and its head-count."
FAST = {
    "VANTAGE_LOG_LEVEL": "WARNING",
    "VANTAGE_PROVIDER_MAX_ATTEMPTS": "1",  # calls counted at the sandbox = calls the packer made
    "VANTAGE_CIRCUIT_FAILURE_THRESHOLD": "0",
    "VANTAGE_RETRY_INITIAL_SECONDS": "0.01",
    "VANTAGE_RETRY_MAX_SECONDS": "0.05",
}


@pytest.fixture(scope="module")
def stack(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    """search, inference and extraction as processes, on the session sandbox and a fresh SQLite database."""
    db = tmp_path_factory.mktemp("enrich") / "vantage.db"
    env = {**FAST, "VANTAGE_SANDBOX_URL": sandbox_url, "VANTAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    st = start_stack(("search", "inference", "extraction"), env=env)
    try:
        yield st, {**env, **st.env()}
    finally:
        st.stop(grace=5)


def write_csv(path: Path, n: int, *, prefix: str = "Company") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["company", "domain"])
        for i in range(n):
            w.writerow([f"{prefix} {i} Labs", f"c{i}.example"])
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def enrich(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.orchestrator.cli", "enrich", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def summary(out: str) -> dict[str, str]:
    """The summary lines of ``vantage enrich`` as {label: value}."""
    return {m[1]: m[2] for m in re.finditer(r"^\s+(\S.*?)\s{2,}(\S.*)$", out, re.M)}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    return write_csv(tmp_path / "companies.csv", 150), schema


async def test_150_rows_take_8_calls_and_a_rerun_takes_none(
    stack: tuple[Stack, dict[str, str]], files: tuple[Path, Path], sandbox_admin: httpx.AsyncClient
) -> None:
    _, env = stack
    data, schema = files
    before = await calls(sandbox_admin)
    first = enrich(env, str(data), "--instruction", INSTRUCTION, "--schema", str(schema))
    assert first.returncode == 0, first.stderr
    assert await calls(sandbox_admin) - before == 8
    s = summary(first.stdout)
    assert (s["total"], s["cache hits"], s["newly computed"], s["failed"], s["success rate"], s["LLM calls"]) == (
        "150", "0", "150", "0", "100.0%", "8")
    assert float(s["total USD"].lstrip("$")) > 0

    out = data.with_name("companies.enriched.csv")  # the default --out
    rows = read_rows(out)
    assert len(rows) == 150
    assert list(rows[0]) == ["company", "domain", "canonical_name", "aliases", "segment", "employees", "enrich_error"]
    for i, row in enumerate(rows):  # in input order, each row's own answer
        assert row["company"] == f"Company {i} Labs" and row["canonical_name"] == f"Company {i}"
        assert json.loads(row["aliases"])[0] == row["company"]
        assert row["segment"] in ("cloud", "lab", "other") and 1 <= int(row["employees"]) <= 5000
        assert row["enrich_error"] == ""
    first_output = out.read_text()

    before = await calls(sandbox_admin)
    again = enrich(env, str(data), "--instruction", INSTRUCTION, "--schema", str(schema))
    assert again.returncode == 0, again.stderr
    assert await calls(sandbox_admin) - before == 0
    s = summary(again.stdout)
    assert (s["cache hits"], s["newly computed"], s["LLM calls"], s["total USD"]) == ("150", "0", "0", "$0.0000")
    assert out.read_text() == first_output

    # --no-cache asks again (and refreshes the cache); --batch-size sets the rows per call.
    before = await calls(sandbox_admin)
    fresh = enrich(env, str(data), "-i", INSTRUCTION, "-s", str(schema), "--no-cache", "--batch-size", "50",
                   "--out", str(data.with_name("fresh.csv")))
    assert fresh.returncode == 0, fresh.stderr
    assert summary(fresh.stdout)["LLM calls"] == "3" and await calls(sandbox_admin) - before == 3
    assert data.with_name("fresh.csv").exists()


async def test_failed_rows_are_written_with_their_error(
    stack: tuple[Stack, dict[str, str]], tmp_path: Path, sandbox_knobs, sandbox_admin: httpx.AsyncClient
) -> None:
    _, env = stack
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    data = write_csv(tmp_path / "few.csv", 3, prefix="Failing")
    await sandbox_knobs({"endpoints": {"openai.chat_completions": {"rate_500": 1.0}}})
    before = await calls(sandbox_admin)
    r = enrich(env, str(data), "-i", INSTRUCTION, "-s", str(schema), "--out", str(tmp_path / "few.out.csv"))
    assert r.returncode == 1, r.stderr
    assert await calls(sandbox_admin) - before == 1 + 1 + 3  # pack, retry, one call per row
    s = summary(r.stdout)
    assert (s["failed"], s["success rate"], s["newly computed"]) == ("3", "0.0%", "0")
    rows = read_rows(tmp_path / "few.out.csv")
    assert [row["company"] for row in rows] == [f"Failing {i} Labs" for i in range(3)]  # never dropped
    assert all(row["enrich_error"].startswith("UNAVAILABLE: ") and row["canonical_name"] == "" for row in rows)


def test_bad_input_is_one_line_and_exit_2(stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> None:
    _, env = stack
    good_schema = tmp_path / "s.json"
    good_schema.write_text(json.dumps(SCHEMA))
    data = write_csv(tmp_path / "d.csv", 2)
    not_json = tmp_path / "bad.json"
    not_json.write_text("{oops")
    with_id = tmp_path / "id.json"
    with_id.write_text(json.dumps({"type": "object", "properties": {"id": {"type": "string"}}}))
    dup_header = tmp_path / "dup.csv"
    dup_header.write_text("company,domain,company\nA,a.com,B\n")
    open_quote = tmp_path / "quote.csv"
    open_quote.write_text('company,domain\nA,a.com\n"B Labs,b.com\n')
    cases = [
        ([str(dup_header), "-i", INSTRUCTION, "-s", str(good_schema)], "line 1: the column 'company' appears twice"),
        ([str(open_quote), "-i", INSTRUCTION, "-s", str(good_schema)], "line 3"),
        ([str(tmp_path / "missing.csv"), "-i", INSTRUCTION, "-s", str(good_schema)], "input file not found"),
        ([str(data), "-i", INSTRUCTION, "-s", str(tmp_path / "nope.json")], "schema file not found"),
        ([str(data), "-i", INSTRUCTION, "-s", str(not_json)], "is not valid JSON"),
        ([str(data), "-i", INSTRUCTION, "-s", str(with_id)], 'must not define "id"'),
        ([str(data), "-i", "  ", "-s", str(good_schema)], "--instruction must not be empty"),
    ]
    for args, message in cases:
        r = enrich(env, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "d.enriched.csv").exists()
    assert not (tmp_path / "dup.enriched.csv").exists() and not (tmp_path / "quote.enriched.csv").exists()


def test_formula_like_cells_are_written_escaped(stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> None:
    """OWASP CSV injection guidance (https://owasp.org/www-community/attacks/CSV_Injection): a cell that begins with
    ``=``, ``+``, ``-``, ``@``, tab or CR is exported with a leading quote, so no spreadsheet evaluates it."""
    _, env = stack
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    data = tmp_path / "formula.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["company", "domain"])
        w.writerows([["=HYPERLINK(\"http://x\",\"y\")", "a.com"], ["@SUM(A1)", "b.com"], ["+1+1", "c.com"]])
    out = tmp_path / "formula.out.csv"
    r = enrich(env, str(data), "-i", INSTRUCTION, "-s", str(schema), "--out", str(out))
    assert r.returncode in (0, 1), r.stderr
    companies = [row["company"] for row in read_rows(out)]
    assert companies == ["'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(A1)", "'+1+1"]


def test_unreachable_services_exit_3(tmp_path: Path, sandbox_url: str) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    data = write_csv(tmp_path / "d.csv", 2)
    env = {**FAST, "VANTAGE_SANDBOX_URL": sandbox_url, "VANTAGE_INFERENCE_ADDR": "127.0.0.1:1"}
    r = enrich(env, str(data), "-i", INSTRUCTION, "-s", str(schema))
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "d.enriched.csv").exists()  # no half-written output
    assert not list(tmp_path.glob(".*.tmp"))


# --- helpers for the AI-visibility flow --------------------------------------------------------------------------


async def test_name_variations_of_many_orgs_are_packed_and_cached(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    orgs = ["Lambda Labs", "Mistral AI", "lambda labs", "", *(f"Org {i} Cloud" for i in range(148))]
    before = await calls(sandbox_admin)
    out = await name_variations(stub, orgs, model="gpt-4.1-mini")
    assert await calls(sandbox_admin) - before == 8  # 150 distinct orgs
    assert len(out) == 150 and "lambda labs" not in out and "" not in out
    assert out["Lambda Labs"][:2] == ["Lambda Labs", "Lambda"]  # the name itself first
    assert all(v[0] == org and len({x.casefold() for x in v}) == len(v) for org, v in out.items())
    again = await name_variations(stub, orgs, model="gpt-4.1-mini")
    assert again == out and await calls(sandbox_admin) - before == 8  # all hits


async def test_competitor_variants_merge_into_one_name(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    names = ["Lambda", "Lambda Labs", "Lambda Cloud", "lambda labs", "Mistral AI", "Mistral", "CoreWeave"]
    before = await calls(sandbox_admin)
    merged = await merge_competitor_variants(stub, names, model="gpt-4.1-mini")
    assert await calls(sandbox_admin) - before == 1  # 6 distinct names, one pack
    assert merged == {
        "Lambda": "Lambda", "Lambda Labs": "Lambda", "Lambda Cloud": "Lambda", "lambda labs": "Lambda",
        "Mistral AI": "Mistral", "Mistral": "Mistral", "CoreWeave": "CoreWeave",
    }
    assert group_variants(merged) == {
        "Lambda": ["Lambda", "Lambda Labs", "Lambda Cloud", "lambda labs"],
        "Mistral": ["Mistral AI", "Mistral"],
        "CoreWeave": ["CoreWeave"],
    }


async def test_more_names_than_one_batch_takes_are_sent_in_several_requests(
    stub: pb_grpc.InferenceServiceStub, sandbox_admin: httpx.AsyncClient
) -> None:
    """The inference service refuses a CompleteBatch over ``complete_batch_max_items``: the merge splits its names
    into requests of at most that many instead of failing as a whole."""
    names = [f"Split {i} Cloud" for i in range(7)]
    settings = Settings(complete_batch_max_items=3, retry_attempts=1)
    merged = await merge_competitor_variants(stub, names, model="gpt-4.1-mini", settings=settings)
    assert set(merged) == set(names) and all(merged[n] for n in names)
