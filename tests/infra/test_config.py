"""Settings: provider addresses, keys, prices."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.logging import redact_text, register_secret


def test_sandbox_url_routes_every_provider_to_its_emulator():
    s = Settings(sandbox_url="http://127.0.0.1:9/")
    assert s.base_url("tavily") == "http://127.0.0.1:9/tavily"
    assert s.base_url("openai") == "http://127.0.0.1:9/openai/v1"
    assert s.base_url("anthropic") == "http://127.0.0.1:9/anthropic"
    assert s.api_key("openai") == "sandbox-key"


def test_explicit_base_url_wins_and_real_provider_without_key_has_none(monkeypatch):
    for k in ("OPENAI_API_KEY", "VANTAGE_OPENAI_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    s = Settings(sandbox_url="", openai_base_url="http://localhost:11434/v1/")
    assert s.base_url("openai") == "http://localhost:11434/v1"
    assert s.api_key("openai") is None
    assert Settings(sandbox_url="").base_url("tavily") == "https://api.tavily.com"


def test_provider_keys_read_from_vendor_env_names_and_never_printed(monkeypatch):
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-canary-123456789")
    s = Settings()
    assert s.api_key("tavily") == "tvly-canary-123456789"
    assert "tvly-canary" not in repr(s) and "tvly-canary" not in str(s.model_dump())


def test_database_url_alias(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert Settings().database_url == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("model", "prices"),
    [("gpt-4.1", (2.0, 8.0)), ("gpt-4.1-mini-2025-04-14", (0.4, 1.6)), ("GPT-4o-mini", (0.15, 0.6)),
     ("claude-opus-4-5", (5.0, 25.0)), ("gpt-4.1-mini-2025", (2.0, 8.0)), ("mystery", (2.0, 8.0))],
)
def test_token_prices_from_the_catalogue_exact_alias_or_dated_snapshot_else_default(model, prices):
    # Model catalogue (#18): no prefix rule ("gpt-4.1-mini-2025" is no dated snapshot: unknown → the default).
    assert Settings().token_prices(model) == prices


def test_redaction_masks_registered_and_pattern_secrets():
    register_secret("my-very-secret-token")
    text = redact_text("auth Bearer abc.def sk-abcdefghijkl and my-very-secret-token")
    assert "abc.def" not in text and "sk-abcdefghijkl" not in text and "my-very-secret-token" not in text
