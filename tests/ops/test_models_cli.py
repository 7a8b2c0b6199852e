"""`vantage models`: the model catalogue as a table (prices, status, shutdown date, source) or JSON with the same
field names as InferenceService/ListModels; bad options exit 2, an invalid catalogue file exits 3 with one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from services.orchestrator.cli import app
from shared.catalogue import load_catalogue
from shared.config import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_json_lists_every_model_with_the_list_models_field_names() -> None:
    r = runner.invoke(app, ["models", "--output", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [m["model"] for m in rows] == [m.id for m in load_catalogue().models]
    sonnet4 = next(m for m in rows if m["model"] == "claude-sonnet-4")
    assert {k: sonnet4[k] for k in ("status", "shutdown_date", "successor", "checked_on")} == {
        "status": "retired", "shutdown_date": "2026-06-15", "successor": "claude-sonnet-5", "checked_on": "2026-12-02"}
    assert {"input_usd_per_million_tokens", "output_usd_per_million_tokens", "web_search_usd_per_call",
            "source_url"} <= set(sonnet4)


def test_table_shows_prices_status_and_shutdown_dates() -> None:
    r = runner.invoke(app, ["models", "--status", "deprecated"])
    assert r.exit_code == 0, r.output
    assert "gpt-4.1" in r.stdout and "2027-01-14" in r.stdout and "deprecated" in r.stdout
    assert "active" not in r.stdout and "retired" not in r.stdout  # only the deprecated rows


@pytest.mark.parametrize("args", [["models", "--output", "xml"], ["models", "--status", "sunset"]])
def test_bad_options_exit_2_with_one_line(args: list[str]) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output


def test_an_invalid_catalogue_file_exits_3_naming_the_problem(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text('[[model]]\nid = "x"\nstatus = "sunset"\n')
    monkeypatch.setenv("VANTAGE_MODEL_CATALOGUE_PATH", str(bad))
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 3 and "status must be one of" in r.output and "Traceback" not in r.output
