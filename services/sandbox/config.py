"""Sandbox settings and runtime knobs.

Everything tunable lives in :class:`Knobs` so that the same model validates the environment
(``VANTAGE_SANDBOX_*``), the CLI and ``POST /_sandbox/config`` (a JSON merge-patch applied at
runtime). :class:`SandboxSettings` adds the process-level settings (host, port, logging).

Endpoint knobs are resolved in three layers, later ones winning field by field:
``default`` → ``endpoints["<provider>"]`` → ``endpoints["<provider>.<endpoint>"]``, e.g.
``endpoints = {"tavily": {"latency_s": 0.2}, "openai.chat_completions": {"rate_429": 0.1}}``.

Environment examples::

    VANTAGE_SANDBOX_SEED=7
    VANTAGE_SANDBOX_DEFAULT='{"latency_s": 0.05, "latency_cv": 0.5}'
    VANTAGE_SANDBOX_ENDPOINTS='{"brightdata": {"rate_500": 0.02}}'
    VANTAGE_SANDBOX_BRIGHTDATA_DURATION_S=5
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Provider names, also the first path segment of each emulator (``/tavily/...``).
PROVIDERS = ("tavily", "openai", "anthropic", "perplexity", "brightdata")

#: Endpoint names used in knobs and stats. Keys are ``<provider>.<endpoint>``.
ENDPOINTS = (
    "tavily.search",
    "openai.chat_completions",
    "openai.responses",
    "openai.models",
    "anthropic.messages",
    "perplexity.chat_completions",
    "perplexity.agent",
    "brightdata.trigger",
    "brightdata.scrape",
    "brightdata.progress",
    "brightdata.snapshot",
    "brightdata.cancel",
    "brightdata.snapshots",
    "brightdata.parts",
)

CHATGPT_DATASET_ID = "gd_m7aof0k82r803d5bjm"
PERPLEXITY_DATASET_ID = "gd_m7dhdot1vw9a7gc1n"


def base_urls(root: str) -> dict[str, str]:
    """Map provider → base URL to hand to its official SDK, from a sandbox root URL.

    ``root`` is e.g. ``"http://127.0.0.1:8080"`` (a trailing slash is tolerated). The values are
    what each SDK expects as its base (see providers.md §1.6, §3.4, §4.3, §5.1):
    ``AsyncTavilyClient(api_base_url=...)``, ``AsyncOpenAI(base_url=...)`` (includes ``/v1``),
    ``AsyncAnthropic(base_url=...)`` (no ``/v1``), the Perplexity root (its Agent API is ``/v1/agent`` and
    ``/v1/responses`` under it: ``AsyncOpenAI(base_url=root + "/v1")``), and a Bright Data base to which
    ``/datasets/v3/...`` is appended.
    """
    root = root.rstrip("/")
    return {
        "tavily": f"{root}/tavily",
        "openai": f"{root}/openai/v1",
        "anthropic": f"{root}/anthropic",
        "perplexity": f"{root}/perplexity",
        "brightdata": f"{root}/brightdata",
    }


class EndpointKnobs(BaseModel):
    """Latency and fault knobs for one endpoint (all rates are probabilities in 0..1)."""

    model_config = ConfigDict(extra="forbid")

    latency_s: float = Field(0.0, ge=0, description="mean added latency in seconds")
    latency_cv: float = Field(
        0.0, ge=0, description="coefficient of variation; 0 = fixed latency, >0 = lognormal"
    )
    rate_429: float = Field(0.0, ge=0, le=1)
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_503: float = Field(0.0, ge=0, le=1)
    rate_hang: float = Field(0.0, ge=0, le=1, description="hang until the client disconnects")
    rate_reset: float = Field(0.0, ge=0, le=1, description="abort the TCP connection")
    rate_malformed: float = Field(0.0, ge=0, le=1, description="answer 200 with a body that is not JSON")
    rate_truncated: float = Field(0.0, ge=0, le=1, description="answer 200 with the body cut mid-way")
    rate_oversize: float = Field(
        0.0, ge=0, le=1, description="answer the provider's 400 'request too large / context length exceeded'"
    )
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After sent with injected 429s")


class Knobs(BaseModel):
    """Everything that can be changed at runtime through ``POST /_sandbox/config``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = Field(1234, description="seed of the fault/latency RNGs (re-seeded on reset)")
    fault_draws: Literal["stream", "request"] = Field(
        "stream", description="how a fault is drawn: 'stream' = the next draw of the endpoint's seeded sequence "
        "(which request gets it depends on arrival order); 'request' = from the seed, the request body and how many "
        "times that body was seen (a run replays the same faults on the same calls whatever the interleaving)",
    )
    require_auth: bool = Field(True, description="reject requests without an API key")
    suppress_sdk_retries: bool = Field(
        True, description="send x-should-retry: false on injected errors so SDKs do not retry"
    )
    hang_max_s: float = Field(300.0, gt=0, description="an injected hang gives up after this long (then 504)")
    default: EndpointKnobs = Field(default_factory=EndpointKnobs)
    endpoints: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="partial EndpointKnobs per provider or endpoint"
    )

    # OpenAI / Anthropic / Perplexity
    openai_max_input_tokens: int = Field(128_000, gt=0)
    anthropic_max_input_tokens: int = Field(200_000, gt=0)
    perplexity_max_input_tokens: int = Field(127_000, gt=0)
    anthropic_pause_turns: int = Field(
        0, ge=0, description="the next N Anthropic web-search turns stop with pause_turn (counts down)"
    )
    openai_incomplete_times: int = Field(
        0, ge=0, description="the next N OpenAI answers end incomplete at max_output_tokens (counts down)"
    )

    # Bright Data (providers.md §2)
    brightdata_duration_s: float = Field(1.0, ge=0, description="time from trigger to ready for one snapshot")
    brightdata_starting_fraction: float = Field(
        0.2, ge=0, le=1, description="share of the duration reported as 'starting'"
    )
    brightdata_error_rate: float = Field(
        0.0, ge=0, le=1, description="share of inputs that come back as error records"
    )
    brightdata_drop_records: int = Field(
        0, ge=0, description="records silently missing from each ready snapshot"
    )
    brightdata_fail_rate: float = Field(0.0, ge=0, le=1, description="share of snapshots that end 'failed'")
    brightdata_max_running: int = Field(
        100, ge=0, description="running snapshots per dataset before trigger returns 429"
    )
    brightdata_scrape_timeout_s: float = Field(
        60.0, ge=0, description="/scrape hands off to a snapshot (202) after this long"
    )
    # The 429 IP block (docs.brightdata.com/products/scrapers/error-codes): ≥ N 429s in the window → 403 on every
    # Bright Data call until POST /_sandbox/reset (Bright Data: until support unblocks it). 0 = never block.
    brightdata_block_after_429s: int = Field(25, ge=0, description="429s within the block window that block the IP")
    brightdata_block_window_s: float = Field(300.0, gt=0, description="window of the 429 IP block (s)")
    brightdata_answer_html_bytes: int = Field(
        0, ge=0, le=8_000_000, description="pad each ChatGPT record's answer_html to this size (live: 2-3 MB)"
    )
    brightdata_trigger_output_fields: bool = Field(
        True, description="/trigger accepts custom_output_fields (False: 400 validation_error naming it)"
    )
    brightdata_progress_status: str = Field(
        "", max_length=40, description="progress reports this status instead of starting/running ('' = real)"
    )
    # Synthetic answers (services/sandbox/answers.py): the probability that a vendor is named in an answer, by
    # vendor name (case-insensitive), e.g. {"Together AI": 0.3}, or for one model only, e.g.
    # {"Together AI@gpt-5.5": 0.3} (wins over the vendor's entry); unlisted vendors keep the corpus's own odds. A
    # sandbox-only knob that lets a test change an org's true mention probability between two sweeps (issue 14).
    answer_mention_probability: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, max_length=50,
        description="vendor name (or 'vendor@model') -> probability (0..1) that an answer names it ({} = the "
                    "corpus's own odds)",
    )

    # Packed enrichment prompts (services/sandbox/packing.py): corrupt the next N packs answered
    pack_fault: Literal["", "pack_wrong_count", "pack_missing_id", "pack_duplicate_id", "pack_not_array"] = Field(
        "", description="how the next pack_fault_times packed answers are corrupted ('' = never)"
    )
    pack_fault_times: int = Field(
        0, ge=0, description="packed answers still to corrupt with pack_fault (counts down by one per pack)"
    )

    def endpoint(self, name: str) -> EndpointKnobs:
        """Effective knobs for ``name`` (``provider.endpoint``), merging the three layers."""
        merged = self.default.model_dump()
        provider = name.split(".", 1)[0]
        for key in (provider, name):
            merged.update(self.endpoints.get(key, {}))
        return EndpointKnobs.model_validate(merged)

    def merged(self, patch: dict[str, Any]) -> Knobs:
        """Return a new validated Knobs with a JSON merge-patch (RFC 7396) applied."""
        current = self.model_dump()
        return Knobs.model_validate(_merge_patch(current, patch))


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class SandboxSettings(Knobs, BaseSettings):
    """Process settings: the knobs plus host/port/logging, read from ``VANTAGE_SANDBOX_*``."""

    model_config = SettingsConfigDict(
        env_prefix="VANTAGE_SANDBOX_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_assignment=True,
    )

    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"

    def knobs(self) -> Knobs:
        """The runtime knobs part of these settings."""
        return Knobs.model_validate(self.model_dump(include=set(Knobs.model_fields)))
