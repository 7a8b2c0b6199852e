"""Cost formulas and the dated model catalogue (shared/model_catalogue.toml): exact id, explicit alias or dated
snapshot — never a prefix; unknown models are estimated and flagged; retired ones refused; deprecated ones warned."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
import structlog.testing

from services.inference import pricing
from shared.catalogue import CatalogueError, load_catalogue, parse_catalogue
from shared.config import Settings
from shared.errors import FailedPrecondition

TODAY = dt.date(2026, 12, 2)  # the catalogue's checked_on date; lifecycle tests pass their own dates


@pytest.fixture
def settings() -> Settings:  # overrides the sandbox-backed fixture: pure unit tests
    return Settings(default_token_prices=(1.0, 3.0), web_search_call_usd=0.01, brightdata_record_usd=0.0015)


def test_list_prices_of_the_models_a_ledger_must_not_get_wrong(settings: Settings) -> None:
    # providers-2026-12.md "Prices a ledger must not get wrong" (per 1M tokens, input / output).
    expected = {
        "claude-opus-4": (15.0, 75.0), "claude-opus-4-1": (15.0, 75.0), "claude-opus-4-5": (5.0, 25.0),
        "claude-opus-4-8": (5.0, 25.0), "claude-opus-5": (5.0, 25.0), "claude-opus-5-5": (4.0, 20.0),
        "claude-sonnet-5": (2.0, 10.0), "gpt-5.5": (5.0, 30.0), "gpt-5-nano": (0.05, 0.40),
    }
    assert {m: settings.token_prices(m) for m in expected} == expected


def test_no_prefix_matching_a_newer_model_is_not_priced_as_an_older_one(settings: Settings) -> None:
    # The old longest-prefix rule priced claude-opus-4-5 as claude-opus-4 (3x too high) and o3-pro as o3.
    assert pricing.token_cost_usd(settings, "claude-opus-4-5", 1_000_000, 1_000_000) == pytest.approx(30.0)
    assert pricing.model_info(settings, "o3-pro") is None
    assert pricing.token_cost_usd(settings, "o3-pro", 1_000_000, 1_000_000) == pytest.approx(4.0)  # estimate
    assert pricing.model_info(settings, "gpt-4.1-mini-2025") is None  # not a dated snapshot, not gpt-4.1-mini


def test_dated_snapshots_and_aliases_resolve_to_their_model(settings: Settings) -> None:
    cat = load_catalogue()
    assert cat.lookup("gpt-4.1-mini-2025-04-14").id == "gpt-4.1-mini"
    assert cat.lookup("claude-opus-4-5-20251101").id == "claude-opus-4-5"
    assert cat.lookup("claude-opus-4-20250514").id == "claude-opus-4"
    assert cat.lookup("Claude-Opus-4.5").id == "claude-opus-4-5"
    assert cat.lookup("sonar").id == "pplx:fast" and cat.lookup("sonar-pro").id == "pplx:low"
    assert pricing.token_cost_usd(settings, "GPT-5.5-2026-04-23", 1000, 500) == 1000 * 5.0 / 1e6 + 500 * 30.0 / 1e6


def test_unknown_model_is_estimated_and_flagged(settings: Settings) -> None:
    assert pricing.token_cost_usd(settings, "llama-3-70b", 1_000_000, 1_000_000) == pytest.approx(4.0)
    assert pricing.answer_notes("openai", "llama-3-70b", settings, TODAY) == (True, "")
    assert pricing.answer_notes("openai", "gpt-5.5", settings, TODAY) == (False, "")
    # Perplexity Agent API ids are provider/model; Bright Data answers are priced per record, never estimated.
    assert pricing.answer_notes("perplexity", "openai/gpt-5.5", settings, TODAY) == (False, "")
    assert pricing.answer_notes("brightdata_chatgpt", "gpt-mystery", settings, TODAY) == (False, "")


def test_zero_tokens_cost_nothing_and_search_and_record_fees(settings: Settings) -> None:
    assert pricing.token_cost_usd(settings, "gpt-5.5", 0, 0) == 0.0
    assert pricing.web_search_cost_usd(settings, 3) == pytest.approx(0.03)
    assert pricing.web_search_cost_usd(settings, 2, "pplx:fast") == pytest.approx(0.01)  # $5 / 1K
    assert pricing.web_search_cost_usd(settings, 2, "claude-sonnet-5") == pytest.approx(0.02)  # $10 / 1K
    assert pricing.record_cost_usd(settings, 20) == pytest.approx(0.03)


def test_retired_model_is_refused_naming_its_successor(settings: Settings) -> None:
    with pytest.raises(FailedPrecondition) as info:
        pricing.check_lifecycle(settings, "claude-sonnet-4", TODAY)
    err = info.value
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.reason == "MODEL_RETIRED"
    assert "claude-sonnet-5" in err.message and "2026-06-15" in err.message
    assert err.metadata == {"model": "claude-sonnet-4", "successor": "claude-sonnet-5", "shutdown_date": "2026-06-15"}
    with pytest.raises(FailedPrecondition, match=r"use gpt-5\.4-nano"):
        pricing.check_lifecycle(settings, "gpt-4.1-nano-2025-04-14", TODAY)


def test_deprecated_model_runs_with_a_dated_warning(settings: Settings) -> None:
    pricing._warned.discard("gpt-4.1")
    with structlog.testing.capture_logs() as logs:
        assert pricing.check_lifecycle(settings, "gpt-4.1", TODAY).id == "gpt-4.1"
        pricing.check_lifecycle(settings, "gpt-4.1", TODAY)  # logged once per process
    assert [(e["event"], e["model"], e["shutdown_date"]) for e in logs] == [
        ("model_deprecated", "gpt-4.1", "2027-01-14")
    ]
    assert pricing.answer_notes("openai", "gpt-4.1-2025-04-14", settings, TODAY) == (
        False, "gpt-4.1 is deprecated: it shuts down on 2027-01-14; use gpt-5.5")


def test_a_deprecated_model_past_its_shutdown_date_counts_as_retired() -> None:
    gpt5 = load_catalogue().lookup("gpt-5")
    assert gpt5.effective_status(TODAY) == "deprecated"
    assert gpt5.effective_status(dt.date(2026, 12, 11)) == "retired"
    assert gpt5.lifecycle_message(dt.date(2026, 12, 11)) == "gpt-5 was retired on 2026-12-11; use gpt-5.5"


def test_defaults_are_active_catalogued_models() -> None:
    from services.orchestrator.cli.evaluate import DEFAULT_MODELS

    cat, s = load_catalogue(), Settings()
    for model in [s.research_model, *DEFAULT_MODELS.split(",")]:
        info = cat.lookup(model)
        assert info is not None and info.effective_status(TODAY) == "active", model


def test_every_entry_is_dated_sourced_and_deprecations_name_a_listed_successor() -> None:
    cat = load_catalogue()
    for m in cat.models:
        assert m.source_url.startswith("https://") and m.checked_on <= dt.date.today(), m.id
        if m.status != "active":
            assert m.shutdown_date is not None and cat.lookup(m.successor).status == "active", m.id


def test_a_custom_catalogue_file_replaces_the_built_in_one(tmp_path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[[model]]\nid = "house-llm"\nprovider = "openai"\ninput_usd_per_million_tokens = 1\n'
        'output_usd_per_million_tokens = 2\nweb_search_usd_per_call = 0\nstatus = "active"\n'
        'source_url = "https://example.com/prices"\nchecked_on = 2026-12-01\n'
    )
    s = Settings(model_catalogue_path=str(path))
    assert s.token_prices("house-llm") == (1.0, 2.0)
    assert pricing.model_info(s, "gpt-5.5") is None  # the file replaces the built-in list


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('status = "sunset"', "status must be one of"),
        ('status = "retired"', "needs a successor"),
        ('input_usd_per_million_tokens = "cheap"', "input_usd_per_million_tokens must be a number"),
        ('checked_on = "yesterday"', "checked_on must be an ISO date"),
        ('source_url = "http://x"', "source_url must be an https URL"),
        ('aliases = ["m"]', "'m' is already listed"),
    ],
)
def test_a_broken_catalogue_is_refused_naming_the_entry_and_field(entry: str, problem: str) -> None:
    base = {
        "id": '"m"', "provider": '"openai"', "input_usd_per_million_tokens": "1", "output_usd_per_million_tokens": "2",
        "web_search_usd_per_call": "0", "status": '"active"', "source_url": '"https://example.com"',
        "checked_on": "2026-12-01",
    }
    key, value = entry.split(" = ", 1)
    base[key] = value
    text = "[[model]]\n" + "\n".join(f"{k} = {v}" for k, v in base.items()) + "\n"
    with pytest.raises(CatalogueError, match=problem):
        parse_catalogue(text, "t.toml")
