"""Vantage settings: one pydantic-settings class, read once at start-up.

Every setting is an environment variable ``VANTAGE_<NAME>`` (upper case) unless its field says otherwise:
provider keys keep their vendors' names (``TAVILY_API_KEY``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
``BRIGHTDATA_API_TOKEN``, ``PERPLEXITY_API_KEY``) and the database takes ``DATABASE_URL`` too. A ``.env`` file in
the working directory is read as well. The README's configuration table is checked against this class by a test.

Provider addresses: an explicit ``VANTAGE_<PROVIDER>_BASE_URL`` wins; otherwise ``VANTAGE_SANDBOX_URL`` (the offline
emulators) when set; otherwise the provider's real API. Keys are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

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


class Settings(BaseSettings):
    """All of Vantage's configuration. Units are in the field names or descriptions."""

    model_config = SettingsConfigDict(
        env_prefix="VANTAGE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- network and processes ---
    host: str = Field("127.0.0.1", description="Address the services bind and dial.")
    orchestrator_port: int = Field(50050, description="gRPC port of the orchestrator.")
    search_port: int = Field(50051, description="gRPC port of the search service.")
    inference_port: int = Field(50052, description="gRPC port of the inference service.")
    extraction_port: int = Field(50053, description="gRPC port of the extraction service.")
    sandbox_port: int = Field(8080, description="HTTP port of the provider sandbox (`vantage up --sandbox`).")
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
    grace_seconds: float = Field(10.0, description="Seconds in-flight RPCs get to finish on SIGTERM.")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="Max gRPC message size, sent and received (bytes).")
    max_concurrent_rpcs: int = Field(2000, description="RPCs a server serves at once before RESOURCE_EXHAUSTED.")
    memory_release_interval_seconds: float = Field(
        30.0, description="Seconds between two returns of freed heap memory to the OS by a service (glibc "
        "malloc_trim); 0 = never."
    )
    rpc_timeout_seconds: float = Field(180.0, description="Deadline of an outbound RPC when the caller has none (s).")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto = JSON unless stderr is a terminal."
    )

    # --- state ---
    database_url: str = Field(
        "sqlite+aiosqlite:///vantage.db",
        validation_alias=AliasChoices("VANTAGE_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; postgresql://… is used through psycopg 3.",
    )

    # --- providers ---
    sandbox_url: str = Field("", description="Root URL of the offline provider sandbox; empty = real providers.")
    tavily_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TAVILY_API_KEY", "VANTAGE_TAVILY_API_KEY"),
        description="Tavily API key (tvly-…); not needed against the sandbox.",
    )
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
    tavily_base_url: str = Field("", description="Tavily API root; empty = sandbox or https://api.tavily.com.")
    openai_base_url: str = Field("", description="OpenAI-compatible API root (vLLM, Ollama, …); empty = sandbox or OpenAI.")
    anthropic_base_url: str = Field("", description="Anthropic API root; empty = sandbox or Anthropic.")
    brightdata_base_url: str = Field("", description="Bright Data API root; empty = sandbox or Bright Data.")
    perplexity_base_url: str = Field("", description="Perplexity API root; empty = sandbox or Perplexity.")
    provider_timeout_seconds: float = Field(120.0, description="HTTP timeout of one provider call (s).")

    # --- search ---
    company_query_template: str = Field(
        "{company} GPU compute infrastructure machine learning training inference funding employees",
        description="Tavily query for SearchCompany; {company} and {domain} are filled in.",
    )
    search_max_results: int = Field(20, description="Tavily max_results (0..20).")
    search_depth: str = Field("advanced", description="Tavily search_depth: basic, advanced, fast or ultra-fast.")
    search_min_score: float = Field(0.4, description="Results with a Tavily score below this are dropped (0..1).")
    search_include_raw_content: bool = Field(True, description="Ask Tavily for each page's raw content.")
    context_char_budget: int = Field(60_000, description="Characters of LLM context built from search results.")
    context_source_char_cap: int = Field(15_000, description="Characters one source may take of the context.")
    tavily_credit_usd: float = Field(0.008, description="USD per Tavily credit (pay-as-you-go price).")
    search_cache_ttl_seconds: float = Field(86_400.0, description="Seconds a cached search result stays fresh.")
    search_cache_entries: int = Field(10_000, description="Search results kept in the in-memory cache.")
    search_cache_max_bytes: int = Field(
        256 * 1024 * 1024, description="Bytes of memory the search cache may hold (the cached pages' deep size: "
        "text, URLs, objects); least recently used pages go first. 0 = bounded by entries only."
    )
    tavily_extra_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers sent with every Tavily request, as JSON (a proxy's, or the sandbox's X-Sandbox-Fault).",
    )

    # --- inference ---
    research_model: str = Field("gpt-5.4-mini", description="Model that classifies companies.")
    routing_rules: list[dict[str, str]] = Field(
        default_factory=list,
        description="Model → provider routing table as JSON [{match: contains|prefix|regex, pattern, provider, "
        "description}], first match wins; empty = the built-in table.",
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
    llm_max_input_tokens: int = Field(120_000, description="Prompt tokens the research prompt is trimmed to fit.")
    max_output_tokens: int = Field(1_024, description="Default max output tokens of a completion.")
    openai_concurrency: int = Field(50, description="Concurrent calls to the OpenAI-compatible API.")
    anthropic_concurrency: int = Field(20, description="Concurrent calls to Anthropic.")
    perplexity_concurrency: int = Field(20, description="Concurrent calls to Perplexity.")
    stream_max_pending_items: int = Field(
        2000, description="Items one CompleteStream admits before the answers come back (backpressure)."
    )
    stream_max_messages: int = Field(
        1_000_000, ge=1, description="Messages (items and resumes) one CompleteStream accepts (an org evaluation sends a "
        "whole run, up to max_run_items, on one stream); later ones fail one by one."
    )
    complete_batch_max_items: int = Field(
        1_000, ge=1, le=1_000, description="Items one CompleteBatch request may carry (≤ 1,000); more = INVALID_ARGUMENT."
    )
    max_prompt_chars: int = Field(
        2_000_000, ge=1, description="Characters of message content one completion request may carry (all messages)."
    )
    web_search_max_uses: int = Field(5, description="Most web searches one Anthropic call may run (max_uses).")
    tavily_concurrency: int = Field(50, description="Concurrent calls to Tavily.")
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

    # --- extraction ---
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

    # --- orchestrator ---
    search_concurrency: int = Field(50, description="Budget of concurrent calls to the search service.")
    inference_concurrency: int = Field(10, description="Budget of concurrent calls to the inference service.")
    extraction_concurrency: int = Field(20, description="Budget of concurrent calls to the extraction service.")
    retry_attempts: int = Field(3, description="Attempts of a call that fails with a retryable error.")
    retry_initial_seconds: float = Field(0.5, description="First retry back-off (s); doubles, full jitter.")
    retry_max_seconds: float = Field(8.0, description="Longest retry back-off (s).")
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

    # --- resilience ---
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
    tavily_rpm: int = Field(1000, description="Tavily requests per minute (production key 1,000; development 100); 0 = unlimited.")
    openai_rpm: int = Field(0, description="OpenAI-compatible API requests per minute (your tier's limit); 0 = unlimited.")
    openai_tpm: int = Field(0, description="OpenAI-compatible API tokens per minute (prompt estimate + max output); 0 = unlimited.")
    anthropic_rpm: int = Field(0, description="Anthropic requests per minute; 0 = unlimited.")
    anthropic_tpm: int = Field(0, description="Anthropic tokens per minute (prompt estimate + max output); 0 = unlimited.")
    perplexity_rpm: int = Field(0, description="Perplexity requests per minute; 0 = unlimited.")
    perplexity_tpm: int = Field(0, description="Perplexity tokens per minute (prompt estimate + max output); 0 = unlimited.")

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

    def addr(self, service: str) -> str:
        """host:port of ``service`` (search, inference, extraction, orchestrator)."""
        explicit = getattr(self, f"{service}_addr")
        return explicit or f"{self.host}:{getattr(self, f'{service}_port')}"

    def base_url(self, provider: Provider) -> str:
        """API root of ``provider``: explicit setting, else the sandbox, else the real API."""
        explicit: str = getattr(self, f"{provider}_base_url")
        if explicit:
            return explicit.rstrip("/")
        if self.sandbox_url:
            return self.sandbox_url.rstrip("/") + SANDBOX_PREFIXES[provider]
        return REAL_BASE_URLS[provider]

    def api_key(self, provider: Provider) -> str | None:
        """The provider's key; a dummy key against the sandbox; None when a real provider has no key."""
        key: SecretStr | None = getattr(self, f"{provider}_api_key")
        if key is not None and key.get_secret_value():
            return key.get_secret_value()
        if self.sandbox_url and not getattr(self, f"{provider}_base_url"):
            return "sandbox-key"
        return None

    def token_prices(self, model: str) -> tuple[float, float]:
        """USD per 1M tokens (input, output) of ``model`` from the model catalogue (:mod:`shared.catalogue`: exact
        id, alias or dated snapshot, never a prefix); ``default_token_prices`` (an estimate) for an unknown model."""
        from shared.catalogue import load_catalogue

        info = load_catalogue(self.model_catalogue_path).lookup(model)
        if info is None:
            return self.default_token_prices
        return info.input_usd_per_million_tokens, info.output_usd_per_million_tokens


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
