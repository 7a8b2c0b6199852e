"""Model → provider routing: a pure, ordered table of rules; the first rule that matches the lower-cased model name
wins (ARCHITECTURE.md, "Provider routing").

Order matters and is the point of the table:

1. contains ``chatgpt``   → ``brightdata_chatgpt`` (Bright Data ChatGPT scraper; before ``gpt``, so that "chatgpt"
   is never sent to the OpenAI API)
2. prefix ``perplexity/``  → ``perplexity`` (an Agent API model id such as ``perplexity/sonar``; before rule 4)
3. prefix ``pplx:``       → ``perplexity`` (an Agent API preset: ``pplx:fast`` … ``pplx:wide-research``)
4. contains ``perplexity`` → ``brightdata_perplexity`` (Bright Data Perplexity scraper)
5. prefix ``sonar``       → ``perplexity`` (legacy Sonar ids, each sent to the Agent API as its preset:
   ``sonar`` → ``fast``; Sonar Chat Completions was retired on 2026-09-27, providers-2026-12.md)
6. contains ``gpt``       → ``openai``
7. regex ``^o\\d``         → ``openai`` (o1, o3, o4-mini)
8. contains ``claude``    → ``anthropic``
9. contains ``4.1``       → ``openai`` (gpt-4.1 spelled without "gpt", e.g. "4.1-mini")

Rule 8 sits before rule 9 (the architecture lists "4.1" with the OpenAI rules) so that a name such as
"claude-opus-4.1" reaches Anthropic: no model whose name says "claude" is served by OpenAI. Nothing else changes,
since rule 9 only matters for names that contain neither "gpt" nor "claude".

The table is data: ``settings.routing_rules`` (JSON) replaces it. Providers' capabilities are data too
(:data:`PROVIDERS`); the Bright Data batch size follows ``settings.brightdata_max_batch``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from services.inference.providers import Capabilities
from shared.config import InferenceSettings
from shared.errors import InvalidArgument

MatchKind = Literal["contains", "prefix", "regex"]
MATCH_KINDS: tuple[str, ...] = ("contains", "prefix", "regex")


@dataclass(frozen=True)
class ProviderSpec:
    """A provider id, its human name and what it can do."""

    id: str
    name: str
    capabilities: Capabilities


#: Every provider the service knows, in display order. Bright Data batches hold ≤ 20 prompts (providers.md §2.7).
PROVIDERS: dict[str, ProviderSpec] = {
    p.id: p
    for p in (
        ProviderSpec(
            "openai",
            "OpenAI API (or any OpenAI-compatible endpoint)",
            Capabilities(supports_web_search=True, supports_locations=True),
        ),
        ProviderSpec(
            "anthropic",
            "Anthropic Messages API",
            Capabilities(supports_web_search=True, supports_locations=True),
        ),
        ProviderSpec(
            "brightdata_chatgpt",
            "Bright Data ChatGPT scraper",
            Capabilities(supports_batching=True, max_batch_size=20, supports_web_search=True, supports_locations=True),
        ),
        ProviderSpec(
            "brightdata_perplexity",
            "Bright Data Perplexity scraper",
            Capabilities(supports_batching=True, max_batch_size=20, supports_web_search=True, supports_locations=True),
        ),
        ProviderSpec(
            "perplexity",
            "Perplexity Agent API (web_search forced)",
            Capabilities(supports_web_search=True, supports_locations=True),
        ),
    )
}


@dataclass(frozen=True)
class Rule:
    """One routing rule. ``pattern`` is compared with the lower-cased model name (``contains``: substring,
    ``prefix``: starts with, ``regex``: ``re.search``)."""

    match: MatchKind
    pattern: str
    provider: str
    description: str = ""

    def matches(self, name: str) -> bool:
        """True when the lower-cased model ``name`` matches this rule."""
        if self.match == "contains":
            return self.pattern in name
        if self.match == "prefix":
            return name.startswith(self.pattern)
        return re.search(self.pattern, name) is not None

    @property
    def label(self) -> str:
        """Short human form, e.g. "contains 'chatgpt'"."""
        return f"{self.match} {self.pattern!r}"


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("contains", "chatgpt", "brightdata_chatgpt", "ChatGPT answers scraped through Bright Data (before 'gpt')"),
    Rule("prefix", "perplexity/", "perplexity", "Perplexity Agent API model id (perplexity/sonar, ...)"),
    Rule("prefix", "pplx:", "perplexity", "Perplexity Agent API preset (pplx:fast, pplx:low, ... pplx:high)"),
    Rule("contains", "perplexity", "brightdata_perplexity", "Perplexity answers scraped through Bright Data"),
    Rule("prefix", "sonar", "perplexity", "Perplexity Agent API, legacy Sonar ids as presets (sonar = fast)"),
    Rule("contains", "gpt", "openai", "OpenAI GPT models (gpt-4.1, gpt-4o, gpt-5, ...)"),
    Rule("regex", r"^o\d", "openai", "OpenAI reasoning models (o1, o3, o4-mini)"),
    Rule("contains", "claude", "anthropic", "Anthropic Claude models"),
    Rule("contains", "4.1", "openai", "GPT-4.1 family named without 'gpt'"),
)


@dataclass(frozen=True)
class Route:
    """Where ``model`` goes: the provider (with capabilities) and the rule that sent it there."""

    model: str
    provider: ProviderSpec
    rule: Rule


def parse_rules(raw: Iterable[Mapping[str, str]], providers: Mapping[str, ProviderSpec] = PROVIDERS) -> list[Rule]:
    """Rules from their JSON form (``[{match, pattern, provider, description}]``).

    Raises ``ValueError`` naming the bad entry: unknown match kind, empty pattern, bad regex, unknown provider.
    """
    rules: list[Rule] = []
    for i, entry in enumerate(raw):
        match = str(entry.get("match", "")).strip().lower()
        pattern = str(entry.get("pattern", ""))
        provider = str(entry.get("provider", "")).strip()
        if match not in MATCH_KINDS:
            raise ValueError(f"routing_rules[{i}].match must be one of {', '.join(MATCH_KINDS)}, not {match!r}")
        if not pattern:
            raise ValueError(f"routing_rules[{i}].pattern must not be empty")
        if provider not in providers:
            raise ValueError(f"routing_rules[{i}].provider {provider!r} is unknown; known: {', '.join(providers)}")
        if match == "regex":
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"routing_rules[{i}].pattern is not a valid regex: {e}") from None
        else:
            pattern = pattern.lower()  # names are compared lower-cased
        rules.append(Rule(match, pattern, provider, str(entry.get("description", ""))))  # type: ignore[arg-type]
    return rules


class Router:
    """The routing table: ordered rules over a set of provider specs."""

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES, providers: Mapping[str, ProviderSpec] = PROVIDERS):
        unknown = [r.provider for r in rules if r.provider not in providers]
        if unknown:
            raise ValueError(f"routing rules name unknown providers: {', '.join(unknown)}")
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.providers: dict[str, ProviderSpec] = dict(providers)

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> Router:
        """The table from ``settings.routing_rules`` (empty = :data:`DEFAULT_RULES`), with the Bright Data batch
        size capped by ``settings.brightdata_max_batch``."""
        rules = parse_rules(settings.routing_rules) if settings.routing_rules else list(DEFAULT_RULES)
        batch = max(1, min(20, settings.brightdata_max_batch))
        providers = {
            pid: dataclasses.replace(
                spec, capabilities=dataclasses.replace(spec.capabilities, max_batch_size=batch)
            )
            if spec.capabilities.supports_batching
            else spec
            for pid, spec in PROVIDERS.items()
        }
        return cls(rules, providers)

    def route(self, model: str) -> Route:
        """The route of ``model``. Raises ``InvalidArgument`` (field ``model``) when it is empty or no rule
        matches; the message lists the known rules."""
        name = model.strip().lower()
        if not name:
            raise InvalidArgument("model is required", field="model", reason="MODEL_REQUIRED")
        for rule in self.rules:
            if rule.matches(name):
                return Route(model, self.providers[rule.provider], rule)
        known = "; ".join(f"{r.label} → {r.provider}" for r in self.rules)
        raise InvalidArgument(
            f"no provider serves model {model!r}; known rules (first match wins): {known}",
            field="model",
            reason="UNKNOWN_MODEL",
        )
