"""Vantage settings: one pydantic-settings model per service over one flat environment, read once at start-up.

Every setting is an environment variable ``VANTAGE_<NAME>`` (upper case) unless its field says otherwise:
provider keys keep their vendors' names (``TAVILY_API_KEY``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
``BRIGHTDATA_API_TOKEN``, ``PERPLEXITY_API_KEY``) and the database takes ``DATABASE_URL`` too. A ``.env`` file in
the working directory is read as well. The README's configuration table (which service reads each key) is rendered
from these classes and checked by a test.

Provider addresses: an explicit ``VANTAGE_<PROVIDER>_BASE_URL`` wins; otherwise ``VANTAGE_SANDBOX_URL`` (the offline
emulators) when set; otherwise the provider's real API. Keys are ``SecretStr`` so they never print.

The split (issue 12 item 6). Each process builds only its own model, so it never loads another service's keys:

- :class:`BaseServiceSettings` — what every process reads: bind host and the gRPC ports, gRPC limits, grace,
  deadlines and retry back-off, logging, TLS / mTLS, the bearer token, metrics.
- :class:`SearchSettings`, :class:`InferenceSettings`, :class:`ExtractionSettings`, :class:`OrchestratorSettings`
  (the orchestrator service, ``vantage worker`` and the run limits) — each the base plus the keys of that service
  only, taken from small parts that two models share: :class:`DatabaseSettings` (inference's response cache, the
  orchestrator's store), :class:`ProviderSettings` (sandbox URL, provider timeout, the provider guard: search and
  inference), :class:`ClientSettings` (the addresses of the other services: whoever dials them),
  :class:`SharedSearchSettings` / :class:`SharedInferenceSettings` (limits, defaults and prices of a service that
  its caller, the orchestrator, reads as well: it sizes requests and estimates costs with them). ``python -m services.<name>`` builds its model (:data:`SERVICE_SETTINGS`) and every
  ``build(settings)`` is annotated with it, so mypy refuses a search component that reads ``openai_api_key``.
- :class:`Settings` — the whole configuration, for the CLI and ``vantage up``: the four service models combined.

Why the models are combined by multiple inheritance rather than nested (``settings.inference.openai_api_key``):
the environment names must not change and every model reads the same flat ``VANTAGE_*`` environment, so nesting
buys no new names; what it would cost is a rename of every ``settings.<key>`` read across the services and the CLI
(hundreds of reads in files other people edit) and a second spelling of each key. With inheritance each key is
declared once, in one model; ``Settings`` *is a* ``SearchSettings``, an ``InferenceSettings``… so a caller that
holds the whole configuration (the CLI, a test) passes it to any service's ``build`` unchanged, while a service
process holds only its own model and cannot reach other keys (no attribute; not in ``repr`` or ``model_dump``).
``extra="ignore"`` lets each model start from an environment (or ``.env``) that holds every service's keys.
:meth:`Settings.for_service` gives the one-service view of a whole configuration, and :func:`service_environ` the
environment a local child process gets (other services' secrets removed).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Provider = Literal["tavily", "openai", "anthropic", "brightdata", "perplexity"]

#: Real API roots (see ../shared/reference/providers.md).
REAL_BASE_URLS: dict[str, str] = {
    "tavily": "https://api.tavily.com",
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "brightdata": "https://api.brightdata.com",
    "perplexity": "https://api.perplexity.ai",
}

#: Paths of each provider's emulator under the sandbox root.
SANDBOX_PREFIXES: dict[str, str] = {
    "tavily": "/tavily",
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "brightdata": "/brightdata",
    "perplexity": "/perplexity",
}

DEFAULT_CATEGORIES: list[str] = [
    "Frontier pre-training",
    "Massive in-house inference",
    "AI infrastructure platform",
    "Post-training at scale",
    "Specialized model training",
    "Fine-tuning or API wrapper",
    "No significant AI compute",
]


class VantageEnv(BaseSettings):
    """Where every model reads: the flat ``VANTAGE_*`` environment (vendor aliases on some fields) and ``.env``;
    keys of other models are ignored."""

    model_config = SettingsConfigDict(
        env_prefix="VANTAGE_", env_file=".env", extra="ignore", populate_by_name=True
    )


class BaseServiceSettings(VantageEnv):
    """What every Vantage process reads. Units are in the field names or descriptions."""

    # --- network and processes ---
    host: str = Field("127.0.0.1", description="Address the services bind and dial.")
    orchestrator_port: int = Field(50050, description="gRPC port of the orchestrator.")
    search_port: int = Field(50051, description="gRPC port of the search service.")
    inference_port: int = Field(50052, description="gRPC port of the inference service.")
    extraction_port: int = Field(50053, description="gRPC port of the extraction service.")
    grace_seconds: float = Field(10.0, description="Seconds in-flight RPCs get to finish on SIGTERM.")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="Max gRPC message size, sent and received (bytes).")
    max_concurrent_rpcs: int = Field(2000, description="RPCs a server serves at once before RESOURCE_EXHAUSTED.")
    memory_release_interval_seconds: float = Field(
        30.0, description="Seconds between two returns of freed heap memory to the OS by a service (glibc "
        "malloc_trim); 0 = never."
    )

    # --- deadlines and retry back-off ---
    rpc_timeout_seconds: float = Field(180.0, description="Deadline of an outbound RPC when the caller has none (s).")
    retry_attempts: int = Field(3, description="Attempts of a call that fails with a retryable error.")
    retry_initial_seconds: float = Field(0.5, description="First retry back-off (s); doubles, full jitter.")
    retry_max_seconds: float = Field(8.0, description="Longest retry back-off (s).")

    # --- logging ---
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto = JSON unless stderr is a terminal."
    )

    # --- security and observability ---
    tls_cert_file: str = Field(
        "", description="PEM certificate chain a server presents; set together with tls_key_file to serve TLS."
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file.")
    tls_ca_file: str = Field(
        "",
        description="PEM CA bundle. Servers: client certificates must chain to it (mTLS) unless tls_client_auth "
        "is false. Clients: verifies servers (empty = system roots).",
    )
    tls_client_auth: bool = Field(
        True, description="With tls_ca_file set, servers require a client certificate (mTLS); false = TLS only."
    )
    tls_client_cert_file: str = Field("", description="PEM certificate chain clients present to mTLS servers.")
    tls_client_key_file: str = Field("", description="PEM private key of tls_client_cert_file.")
    tls_server_name: str = Field(
        "", description="Name clients expect in server certificates; empty = the host dialled."
    )
    tls: bool | None = Field(
        None, description="Clients dial over TLS; empty = when any TLS file (cert, CA, client cert) is set."
    )
    auth_token: SecretStr | None = Field(
        None,
        description="Bearer token servers require (`authorization: Bearer …`) and clients send; empty = no auth.",
    )
    auth_allow_health: bool = Field(
        True, description="Health checks and reflection stay open without a token."
    )
    metrics_port: int = Field(
        0,
        description="Prometheus /metrics HTTP port: orchestrator +0, search +1, inference +2, extraction +3, "
        "worker +4; 0 = off.",
    )


class DatabaseSettings(VantageEnv):
    """The database (inference: the response cache; orchestrator: runs, items, events)."""

    database_url: str = Field(
        "sqlite+aiosqlite:///vantage.db",
        validation_alias=AliasChoices("VANTAGE_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; postgresql://… is used through psycopg 3.",
    )


class ProviderSettings(VantageEnv):
    """How a service reaches its providers and guards the calls (search: Tavily; inference: the LLM providers).
    The keys and base URLs are on the service's own model."""

    sandbox_url: str = Field("", description="Root URL of the offline provider sandbox; empty = real providers.")
    provider_timeout_seconds: float = Field(120.0, description="HTTP timeout of one provider call (s).")

    # --- resilience (shared.resilience.ProviderGuard) ---
    provider_max_attempts: int = Field(
        4, description="Attempts of one provider call (429, 5xx, timeouts, connection errors, malformed bodies are "
        "retried with exponential back-off and full jitter within the RPC deadline; gRFC A6 caps this at 5)."
    )
    provider_retry_after_max_seconds: float = Field(
        60.0, description="Longest provider Retry-After waited for inside a call (s); longer goes back to the "
        "caller as RESOURCE_EXHAUSTED with RetryInfo."
    )
    adaptive_concurrency: bool = Field(
        True, description="Adapt each provider's concurrency limit by AIMD (Netflix concurrency-limits) on 429s "
        "and timeouts, below its *_concurrency budget; false = fixed at the budget."
    )
    aimd_backoff_ratio: float = Field(0.9, description="AIMD multiplicative decrease on a 429 or timeout (0.5..1).")
    circuit_failure_threshold: int = Field(
        10, description="Consecutive provider failures (5xx, timeouts, connection errors) that open its circuit; "
        "0 = no circuit breaker."
    )
    circuit_cooldown_seconds: float = Field(
        10.0, description="Seconds an open circuit fails fast (UNAVAILABLE + RetryInfo) before one probe call."
    )
    provider_fair_share: bool = Field(
        True, description="Share each provider's concurrency budget fairly between callers (gRPC peer connections):"
        " while others wait, one caller holds at most ceil(limit / active callers) slots; alone it may use all."
    )

    def base_url(self, provider: Provider) -> str:
        """API root of ``provider``: explicit setting, else the sandbox, else the real API. ``AttributeError`` for a
        provider this service does not call (its ``<provider>_base_url`` is not on the model)."""
        explicit: str = getattr(self, f"{provider}_base_url")
        if explicit:
            return explicit.rstrip("/")
        if self.sandbox_url:
            return self.sandbox_url.rstrip("/") + SANDBOX_PREFIXES[provider]
        return REAL_BASE_URLS[provider]

    def api_key(self, provider: Provider) -> str | None:
        """The provider's key; a dummy key against the sandbox; None when a real provider has no key.
        ``AttributeError`` for a provider this service does not call."""
        key: SecretStr | None = getattr(self, f"{provider}_api_key")
        if key is not None and key.get_secret_value():
            return key.get_secret_value()
        if self.sandbox_url and not getattr(self, f"{provider}_base_url"):
            return "sandbox-key"
        return None


class ClientSettings(BaseServiceSettings):
    """A process that dials the Vantage services (the orchestrator, the CLI, the health check): the base plus the
    services' addresses and the channels' retry throttling."""

    # gRPC target URIs (github.com/grpc/grpc/blob/master/doc/naming.md): dns:///name:port re-resolves and yields
    # every A record (a headless Kubernetes Service), ipv4:a:p,b:p is a static list, host:port is dns:///host:port.
    search_addr: str = Field(
        "", description="gRPC target of the search service: host:port, dns:///host:port or ipv4:ip:port,ip:port "
        "(calls spread by grpc_lb_policy); empty = host:search_port."
    )
    inference_addr: str = Field(
        "", description="gRPC target of the inference service (host:port, dns:///…, ipv4:…); empty = host:inference_port."
    )
    extraction_addr: str = Field(
        "", description="gRPC target of the extraction service (host:port, dns:///…, ipv4:…); empty = "
        "host:extraction_port."
    )
    orchestrator_addr: str = Field(
        "", description="gRPC target of the orchestrator (host:port, dns:///…, ipv4:…); empty = host:orchestrator_port."
    )
    grpc_lb_policy: Literal["round_robin", "pick_first"] = Field(
        "round_robin", description="Client-side load balancing over a target's addresses (gRPC service config "
        "loadBalancingConfig); round_robin also health-checks each backend (grpc.health.v1 Watch, healthCheckConfig) "
        "and skips NOT_SERVING ones."
    )
    retry_throttle_max_tokens: float = Field(
        10.0, gt=0, le=1000,
        description="Retry throttling per downstream target (gRFC A6): token bucket size; retries stop while "
        "tokens <= half of it.",
    )
    retry_throttle_token_ratio: float = Field(
        0.1, ge=0.001,
        description="Retry throttling (gRFC A6): tokens a successful call gives back (a failed one takes 1); "
        "3 decimal places.",
    )

    def addr(self, service: str) -> str:
        """gRPC target of ``service`` (search, inference, extraction, orchestrator): ``<service>_addr``, else
        ``host:<service>_port``."""
        explicit = getattr(self, f"{service}_addr")
        return explicit or f"{self.host}:{getattr(self, f'{service}_port')}"


#: Tavily credits of one search by ``search_depth``: basic / fast / ultra-fast 1, advanced 2
#: (https://docs.tavily.com/documentation/api-credits; reference/providers-2026-12.md, "Prices a ledger must not get
#: wrong"). The search service bills with it when Tavily reports no ``usage.credits``; the orchestrator prices a
#: search's pending ledger row with it before the call.
TAVILY_CREDITS_BY_DEPTH: Mapping[str, int] = MappingProxyType({"basic": 1, "fast": 1, "ultra-fast": 1, "advanced": 2})


class SharedSearchSettings(VantageEnv):
    """Search keys the orchestrator reads too: the context size it asks for, the default depth and the credit price
    it estimates a call's cost with (the run ledger)."""

    context_char_budget: int = Field(60_000, description="Characters of LLM context built from search results.")
    search_depth: str = Field("advanced", description="Tavily search_depth: basic, advanced, fast or ultra-fast.")
    tavily_credit_usd: float = Field(0.008, description="USD per Tavily credit (pay-as-you-go price).")


class SharedInferenceSettings(VantageEnv):
    """Inference keys the orchestrator reads too: the CompleteBatch size limit and the prices (model catalogue,
    defaults) it estimates an answer's cost with."""

    complete_batch_max_items: int = Field(
        1_000, ge=1, le=1_000, description="Items one CompleteBatch request may carry (≤ 1,000); more = INVALID_ARGUMENT."
    )
    model_catalogue_path: str = Field(
        "", description="TOML model catalogue (prices, status, shutdown dates) replacing the built-in "
        "shared/model_catalogue.toml; empty = built-in."
    )
    default_token_prices: tuple[float, float] = Field(
        (2.0, 8.0), description="USD per 1M tokens (input, output) that estimate the cost of a model missing from "
        "the model catalogue (the cost is flagged estimated)."
    )
    web_search_call_usd: float = Field(0.01, description="USD per web-search tool call (OpenAI, Anthropic).")
    brightdata_record_usd: float = Field(0.0015, description="USD per Bright Data scraped record.")

    def token_prices(self, model: str) -> tuple[float, float]:
        """USD per 1M tokens (input, output) of ``model`` from the model catalogue (:mod:`shared.catalogue`: exact
        id, alias or dated snapshot, never a prefix); ``default_token_prices`` (an estimate) for an unknown model."""
        from shared.catalogue import load_catalogue

        info = load_catalogue(self.model_catalogue_path).lookup(model)
        if info is None:
            return self.default_token_prices
        return info.input_usd_per_million_tokens, info.output_usd_per_million_tokens


class SearchSettings(BaseServiceSettings, ProviderSettings, SharedSearchSettings):
    """The search service: Tavily's key and limits, the query, the context built from the results, the cache."""

    tavily_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TAVILY_API_KEY", "VANTAGE_TAVILY_API_KEY"),
        description="Tavily API key (tvly-…); not needed against the sandbox.",
    )
    tavily_base_url: str = Field("", description="Tavily API root; empty = sandbox or https://api.tavily.com.")
    tavily_extra_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers sent with every Tavily request, as JSON (a proxy's, or the sandbox's X-Sandbox-Fault).",
    )
    tavily_concurrency: int = Field(50, description="Concurrent calls to Tavily.")
    tavily_rpm: int = Field(1000, description="Tavily requests per minute (production key 1,000; development 100); 0 = unlimited.")
    search_database_url: str = Field(
        "",
        description="The orchestrator's database (its DATABASE_URL, ideally as a role limited to the search tables), "
        "where the search service records the outcome of each keyed call for the reaper: a killed worker's searches "
        "are then counted exactly in the ledger; empty = not recorded (counted at their known price).",
    )

    # --- search ---
    company_query_template: str = Field(
        "{company} GPU compute infrastructure machine learning training inference funding employees",
        description="Tavily query for SearchCompany; {company} and {domain} are filled in.",
    )
    search_max_results: int = Field(20, description="Tavily max_results (0..20).")
    search_min_score: float = Field(0.4, description="Results with a Tavily score below this are dropped (0..1).")
    search_include_raw_content: bool = Field(True, description="Ask Tavily for each page's raw content.")
    context_source_char_cap: int = Field(15_000, description="Characters one source may take of the context.")
    search_cache_ttl_seconds: float = Field(86_400.0, description="Seconds a cached search result stays fresh.")
    search_cache_entries: int = Field(10_000, description="Search results kept in the in-memory cache.")
    search_cache_max_bytes: int = Field(
        256 * 1024 * 1024, description="Bytes of memory the search cache may hold (the cached pages' deep size: "
        "text, URLs, objects); least recently used pages go first. 0 = bounded by entries only."
    )


class InferenceSettings(BaseServiceSettings, DatabaseSettings, ProviderSettings, SharedInferenceSettings):
    """The inference service: the LLM and scraper providers' keys, addresses and budgets, routing, prices,
    batching and packing, the response cache."""

    # --- providers ---
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "VANTAGE_OPENAI_API_KEY"),
        description="OpenAI (or OpenAI-compatible endpoint) API key; not needed against the sandbox.",
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "VANTAGE_ANTHROPIC_API_KEY"),
        description="Anthropic API key; not needed against the sandbox.",
    )
    brightdata_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("BRIGHTDATA_API_TOKEN", "BRIGHTDATA_API_KEY", "VANTAGE_BRIGHTDATA_API_KEY"),
        description="Bright Data API token (ChatGPT / Perplexity scrapers); not needed against the sandbox.",
    )
    perplexity_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("PERPLEXITY_API_KEY", "VANTAGE_PERPLEXITY_API_KEY"),
        description="Perplexity API key; not needed against the sandbox.",
    )
    openai_base_url: str = Field("", description="OpenAI-compatible API root (vLLM, Ollama, …); empty = sandbox or OpenAI.")
    anthropic_base_url: str = Field("", description="Anthropic API root; empty = sandbox or Anthropic.")
    brightdata_base_url: str = Field("", description="Bright Data API root; empty = sandbox or Bright Data.")
    perplexity_base_url: str = Field("", description="Perplexity API root; empty = sandbox or Perplexity.")
    openai_concurrency: int = Field(50, description="Concurrent calls to the OpenAI-compatible API.")
    anthropic_concurrency: int = Field(20, description="Concurrent calls to Anthropic.")
    perplexity_concurrency: int = Field(20, description="Concurrent calls to Perplexity.")
    openai_rpm: int = Field(0, description="OpenAI-compatible API requests per minute (your tier's limit); 0 = unlimited.")
    openai_tpm: int = Field(0, description="OpenAI-compatible API tokens per minute (prompt estimate + max output); 0 = unlimited.")
    anthropic_rpm: int = Field(0, description="Anthropic requests per minute; 0 = unlimited.")
    anthropic_tpm: int = Field(0, description="Anthropic tokens per minute (prompt estimate + max output); 0 = unlimited.")
    perplexity_rpm: int = Field(0, description="Perplexity requests per minute; 0 = unlimited.")
    perplexity_tpm: int = Field(0, description="Perplexity tokens per minute (prompt estimate + max output); 0 = unlimited.")

    # --- inference ---
    routing_rules: list[dict[str, str]] = Field(
        default_factory=list,
        description="Model → provider routing table as JSON [{match: contains|prefix|regex, pattern, provider, "
        "description}], first match wins; empty = the built-in table.",
    )
    batch_linger_seconds: float = Field(2.0, description="Seconds a partial provider batch waits for more items.")
    brightdata_max_batch: int = Field(20, description="Prompts per Bright Data snapshot (≤ 20).")
    brightdata_max_in_flight: int = Field(100, description="Bright Data snapshots in flight per dataset.")
    brightdata_poll_seconds: float = Field(5.0, description="Initial Bright Data progress poll interval (s).")
    brightdata_timeout_seconds: float = Field(1800.0, description="Give up on a snapshot after this long (s).")
    # Bright Data 429 budget, one per token (docs.brightdata.com/products/scrapers/error-codes: ≥ 25 429s in 5 min
    # block the IP; ≥ 10 means "close to the block"). services/inference/providers/brightdata.py RateLimitBudget.
    brightdata_429_budget: int = Field(10, ge=1, description="Most Bright Data 429s per window and token.")
    brightdata_429_warn_at: int = Field(5, ge=1, description="429s in the window that log a warning.")
    brightdata_429_window_seconds: float = Field(300.0, gt=0, description="Sliding window of the 429 budget (s).")
    brightdata_429_backoff_seconds: float = Field(2.0, ge=0, description="Pause after a 429 without Retry-After (s).")
    brightdata_429_backoff_max_seconds: float = Field(32.0, ge=0, description="Longest pause after 429s (s).")
    brightdata_429_retries: int = Field(8, ge=0, description="Re-sends of one Bright Data call answered 429.")
    brightdata_unknown_status_seconds: float = Field(
        120.0, gt=0, description="A snapshot reporting an undocumented progress status fails after this long (s)."
    )
    brightdata_output_fields: str = Field(
        "url|prompt|answer_text|answer_text_markdown|citations|links_attached|web_search_triggered|"
        "web_search_query|model|index|input|error|error_code",
        description="custom_output_fields sent with triggers (pipe-separated; empty = all fields).",
    )
    max_output_tokens: int = Field(1_024, description="Default max output tokens of a completion.")
    stream_max_pending_items: int = Field(
        2000, description="Items one CompleteStream admits before the answers come back (backpressure)."
    )
    stream_max_messages: int = Field(
        1_000_000, ge=1, description="Messages (items and resumes) one CompleteStream accepts (an org evaluation sends a "
        "whole run, up to max_run_items, on one stream); later ones fail one by one."
    )
    max_prompt_chars: int = Field(
        2_000_000, ge=1, description="Characters of message content one completion request may carry (all messages)."
    )
    web_search_max_uses: int = Field(5, description="Most web searches one Anthropic call may run (max_uses).")
    pack_max_items: int = Field(
        20, description="Items per packed LLM call (CompleteBatch packing mode); a request's max_items_per_call wins."
    )
    pack_max_input_tokens: int = Field(
        8_000,
        description="Estimated prompt tokens (characters / 4) of one packed call; a pack closes before exceeding it.",
    )
    pack_output_tokens_per_item: int = Field(
        256, description="Output tokens a packed call may use per item (its max_output_tokens = this × items)."
    )
    response_cache_enabled: bool = Field(
        True, description="Serve repeated inference requests from the database table response_cache (hits cost $0)."
    )
    response_cache_ttl_seconds: float = Field(
        0.0, description="Seconds a cached inference answer stays valid; 0 = it never expires."
    )
    response_cache_purge_interval_seconds: float = Field(
        3600.0, ge=0,
        description="Seconds between the inference service's background purges of expired response_cache rows "
        "(at most 1000 per purge); 0 = never (use `vantage db prune-cache`).",
    )


class ExtractionSettings(BaseServiceSettings):
    """The extraction service: the workload categories and the name-finding rules."""

    categories: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORIES), description="Workload categories, as JSON."
    )
    extraction_common_word_zipf: float = Field(
        3.0,
        description="Names made of words at least this frequent (wordfreq Zipf, English) count only when "
        "capitalised in brand context (the 'cash runway' rule).",
    )
    extraction_generic_terms: list[str] = Field(
        default_factory=list, description="Extra words/phrases never taken for organisation names, as JSON."
    )
    extraction_max_answer_chars: int = Field(200_000, description="Longest answer_markdown Extract accepts (chars).")
    extraction_cache_max_bytes: int = Field(
        48 * 1024 * 1024,
        ge=0,
        description="Total budget (bytes, estimated) of the extraction service's memo caches, split evenly among "
        "them; 0 = no memoisation.",
    )


class OrchestratorSettings(ClientSettings, DatabaseSettings, SharedSearchSettings, SharedInferenceSettings):
    """The orchestrator service, ``vantage worker`` and the CLI's own keys: budgets towards the services, leases
    and polls, run input limits, the research model."""

    sandbox_port: int = Field(8080, description="HTTP port of the provider sandbox (`vantage up --sandbox`).")
    research_model: str = Field("gpt-5.4-mini", description="Model that classifies companies.")
    llm_max_input_tokens: int = Field(120_000, description="Prompt tokens the research prompt is trimmed to fit.")

    # --- orchestrator ---
    search_concurrency: int = Field(50, description="Budget of concurrent calls to the search service.")
    inference_concurrency: int = Field(10, description="Budget of concurrent calls to the inference service.")
    extraction_concurrency: int = Field(20, description="Budget of concurrent calls to the extraction service.")
    max_items_in_flight: int = Field(
        0, description="Items a run holds in memory at once (admission bound); 0 = the sum of the three budgets."
    )
    claim_batch_size: int = Field(20, description="Items claimed from the database per claim transaction.")
    lease_seconds: float = Field(
        60.0, description="Lease of a claimed item (s); renewed every third of it while the item runs."
    )
    watch_poll_seconds: float = Field(0.5, description="How often WatchRun re-reads run events from the database (s).")
    control_poll_seconds: float = Field(
        1.0, description="How often a process executing runs renews their run heartbeat and checks for CancelRun (s)."
    )
    worker_poll_seconds: float = Field(1.0, description="How often an idle `vantage worker` looks for runs (s).")
    worker_max_runs: int = Field(4, description="Runs one `vantage worker` executes at once (sharing its budgets).")
    input_dir: str = Field(
        "", description="Directory StartRun may read input_path files from (resolved paths, symlinks followed, must "
        "stay inside); empty = StartRun reads no server path (PERMISSION_DENIED: clients send the content)."
    )
    max_input_bytes: int = Field(
        32 * 1024 * 1024, ge=1, description="Largest run input one StartRun may bring: input_csv, questions_text, "
        "an UploadInput upload or an input_dir file (bytes)."
    )
    upload_ttl_seconds: float = Field(
        600.0, gt=0, description="Seconds an UploadInput upload waits for the StartRun that consumes it."
    )
    max_run_items: int = Field(
        200_000, ge=1, description="Items one run may have: companies, or questions × models × locations."
    )
    max_name_chars: int = Field(
        300, ge=1, description="Longest run name, org name, company name, competitor or name variation (chars)."
    )
    max_questions: int = Field(10_000, ge=1, description="Questions one ORG_EVAL run may have.")
    max_question_chars: int = Field(2_000, ge=1, description="Longest question of an ORG_EVAL run (chars).")
    max_models: int = Field(20, ge=1, description="Models one ORG_EVAL run may ask.")
    max_known_competitors: int = Field(500, ge=0, description="Known competitors one ORG_EVAL run may name.")
    max_name_variations: int = Field(100, ge=0, description="Extra name variations one ORG_EVAL run may give.")


class Settings(OrchestratorSettings, SearchSettings, InferenceSettings, ExtractionSettings):
    """All of Vantage's configuration (the CLI, ``vantage up``, tests): every service's model in one object, with
    the same flat attributes. A service process builds only its own model (:data:`SERVICE_SETTINGS`)."""

    def for_service(self, name: str) -> BaseServiceSettings:
        """The settings of service ``name`` (a key of :data:`SERVICE_SETTINGS`) with this object's values and
        nothing else: no other service's keys. ``KeyError`` for an unknown name."""
        cls = SERVICE_SETTINGS[name]
        return cls.model_validate({field: getattr(self, field) for field in cls.model_fields})


#: The model each service process builds (``python -m services.<name>``).
SERVICE_SETTINGS: dict[str, type[BaseServiceSettings]] = {
    "search": SearchSettings,
    "inference": InferenceSettings,
    "extraction": ExtractionSettings,
    "orchestrator": OrchestratorSettings,
}


def readers(field: str) -> list[str]:
    """Names of the services whose model has ``field`` (in :data:`SERVICE_SETTINGS` order); ``[]`` for a key only
    the CLI reads."""
    return [name for name, cls in SERVICE_SETTINGS.items() if field in cls.model_fields]


def env_names(cls: type[BaseSettings], field: str) -> list[str]:
    """Environment names that set ``field`` of ``cls``: its validation aliases, else ``VANTAGE_<FIELD>``."""
    alias = cls.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{cls.model_config.get('env_prefix', '')}{field}".upper()]


def service_environ(name: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the secrets (``SecretStr`` fields: provider keys) of services other than ``name``: the
    environment a local child process of service ``name`` is started with (``shared.procs``), the counterpart of a
    Kubernetes Deployment that mounts only its own Secret keys. Names are matched case-insensitively, as
    pydantic-settings reads them. A name that is not a service (the sandbox) gets ``environ`` unchanged."""
    own = SERVICE_SETTINGS.get(name)
    if own is None:
        return dict(environ)
    foreign: set[str] = set()
    for field, info in Settings.model_fields.items():
        if field not in own.model_fields and "SecretStr" in repr(info.annotation):
            foreign.update(env.upper() for env in env_names(Settings, field))
    return {k: v for k, v in environ.items() if k.upper() not in foreign}


S = TypeVar("S", bound=BaseServiceSettings)
_READ: dict[type[BaseServiceSettings], BaseServiceSettings] = {}


def settings_of(cls: type[S]) -> S:
    """The process's ``cls`` settings (a service's own model, :data:`SERVICE_SETTINGS`), read from the environment
    once: ``python -m services.<name>`` and code of that service that has no settings object at hand share it."""
    found = _READ.get(cls)
    if not isinstance(found, cls):
        found = _READ[cls] = cls()
    return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The whole configuration (CLI), read once. A service process reads only its own model
    (:func:`settings_of`)."""
    return Settings()
