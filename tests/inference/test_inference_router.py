"""Routing table: first match wins on the lower-cased name, chatgpt before gpt, sonar before gpt, data-driven."""

from __future__ import annotations

import pytest

from services.inference.router import DEFAULT_RULES, PROVIDERS, Router, parse_rules
from shared.config import Settings
from shared.errors import InvalidArgument


@pytest.fixture
def router() -> Router:
    return Router()


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("chatgpt", "brightdata_chatgpt"),
        ("ChatGPT-4o", "brightdata_chatgpt"),
        ("chatgpt-search", "brightdata_chatgpt"),
        ("gpt-4.1", "openai"),
        ("GPT-4.1-mini", "openai"),
        ("gpt-4o", "openai"),
        ("gpt-5-mini", "openai"),
        ("o1", "openai"),
        ("o3", "openai"),
        ("o4-mini", "openai"),
        ("4.1-mini", "openai"),
        ("claude-sonnet-4", "anthropic"),
        ("Claude-Haiku-4-5", "anthropic"),
        ("claude-opus-4.1", "anthropic"),
        ("perplexity", "brightdata_perplexity"),
        ("Perplexity-Search", "brightdata_perplexity"),
        ("sonar", "perplexity"),
        ("sonar-pro", "perplexity"),
        ("sonar-reasoning-pro", "perplexity"),
        ("pplx:fast", "perplexity"),
        ("PPLX:wide-research", "perplexity"),
        ("perplexity/sonar", "perplexity"),
    ],
)
def test_default_routes(router: Router, model: str, provider: str) -> None:
    assert router.route(model).provider.id == provider


def test_chatgpt_is_matched_before_gpt(router: Router) -> None:
    route = router.route("chatgpt")
    assert route.rule.label == "contains 'chatgpt'"
    assert route.provider.capabilities.supports_batching
    assert route.provider.capabilities.max_batch_size == 20
    assert route.provider.name == "Bright Data ChatGPT scraper"


def test_openai_capabilities(router: Router) -> None:
    caps = router.route("gpt-4.1").provider.capabilities
    assert not caps.supports_batching
    assert caps.max_batch_size == 1
    assert caps.supports_web_search and caps.supports_locations


@pytest.mark.parametrize("model", ["llama-3-70b", "mistral-large", "omni", "gemini-2.5-pro"])
def test_unknown_model_is_invalid_argument_listing_rules(router: Router, model: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        router.route(model)
    err = ei.value
    assert err.violations[0][0] == "model"
    assert model in err.message
    for rule in DEFAULT_RULES:
        assert rule.label in err.message
    assert err.reason == "UNKNOWN_MODEL"


@pytest.mark.parametrize("model", ["", "   "])
def test_empty_model_is_invalid_argument(router: Router, model: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        router.route(model)
    assert ei.value.violations[0][0] == "model"


def test_rules_from_settings_replace_the_defaults() -> None:
    settings = Settings(
        routing_rules=[
            {"match": "regex", "pattern": r"^llama", "provider": "openai", "description": "local vLLM"},
            {"match": "prefix", "pattern": "GPT", "provider": "openai"},
        ]
    )
    router = Router.from_settings(settings)
    assert [r.pattern for r in router.rules] == ["^llama", "gpt"]  # prefix/contains patterns are lower-cased
    assert router.route("Llama-3-8B-Instruct").provider.id == "openai"
    assert router.route("gpt-4.1").rule.label == "prefix 'gpt'"
    with pytest.raises(InvalidArgument):
        router.route("claude-sonnet-4")


def test_routing_rules_env_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "VANTAGE_ROUTING_RULES", '[{"match": "contains", "pattern": "qwen", "provider": "openai"}]'
    )
    router = Router.from_settings(Settings())
    assert router.route("Qwen2.5-72B").provider.id == "openai"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"match": "glob", "pattern": "x", "provider": "openai"}, "match must be one of"),
        ({"match": "contains", "pattern": "", "provider": "openai"}, "pattern must not be empty"),
        ({"match": "contains", "pattern": "x", "provider": "nope"}, "provider 'nope' is unknown"),
        ({"match": "regex", "pattern": "(", "provider": "openai"}, "not a valid regex"),
    ],
)
def test_bad_rules_are_refused(entry: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules([entry])


def test_batch_size_follows_settings() -> None:
    router = Router.from_settings(Settings(brightdata_max_batch=5))
    assert router.route("chatgpt").provider.capabilities.max_batch_size == 5
    assert router.route("perplexity").provider.capabilities.max_batch_size == 5
    assert PROVIDERS["brightdata_chatgpt"].capabilities.max_batch_size == 20  # the defaults are untouched
