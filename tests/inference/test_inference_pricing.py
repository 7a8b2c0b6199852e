"""Cost formulas: tokens × USD per 1M tokens, exact name → longest prefix → default."""

from __future__ import annotations

import pytest

from services.inference import pricing
from shared.config import Settings


@pytest.fixture
def settings() -> Settings:  # overrides the sandbox-backed fixture: pure unit tests
    return Settings(
        model_prices={"gpt-4.1": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6), "o3": (2.0, 8.0)},
        default_token_prices=(1.0, 3.0),
        web_search_call_usd=0.01,
        brightdata_record_usd=0.0015,
    )


def test_exact_model_price(settings: Settings) -> None:
    assert pricing.token_cost_usd(settings, "gpt-4.1", 1_000_000, 1_000_000) == pytest.approx(10.0)
    assert pricing.token_cost_usd(settings, "gpt-4.1", 1000, 500) == 1000 * 2.0 / 1e6 + 500 * 8.0 / 1e6


def test_longest_prefix_wins(settings: Settings) -> None:
    # "gpt-4.1-mini-2025-04-14" starts with both "gpt-4.1" and "gpt-4.1-mini": the longer one prices it.
    cost = pricing.token_cost_usd(settings, "gpt-4.1-mini-2025-04-14", 1_000_000, 0)
    assert cost == pytest.approx(0.4)


def test_case_insensitive(settings: Settings) -> None:
    assert pricing.token_cost_usd(settings, "GPT-4.1", 1_000_000, 0) == pytest.approx(2.0)


def test_unknown_model_uses_default(settings: Settings) -> None:
    assert pricing.token_cost_usd(settings, "llama-3-70b", 1_000_000, 1_000_000) == pytest.approx(4.0)


def test_zero_tokens_cost_nothing(settings: Settings) -> None:
    assert pricing.token_cost_usd(settings, "gpt-4.1", 0, 0) == 0.0


def test_default_price_table_covers_the_research_model() -> None:
    s = Settings()
    assert s.token_prices(s.research_model) == (2.0, 8.0)


def test_web_search_and_record_costs(settings: Settings) -> None:
    assert pricing.web_search_cost_usd(settings, 3) == pytest.approx(0.03)
    assert pricing.record_cost_usd(settings, 20) == pytest.approx(0.03)
