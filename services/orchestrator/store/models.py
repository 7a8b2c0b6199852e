"""Tables of the orchestrator's state (SQLAlchemy Core, one ``MetaData``).

The schema itself is created and changed only by the Alembic migrations in ``migrations/versions``; these
``Table`` objects are what the queries are written against, and the migration test checks that both agree.

Units: ``usd`` / ``cost_usd`` in US dollars, ``credits`` in Tavily credits, token counts in tokens; timestamps are
UTC. Statuses are lower-case strings (see the ``*_STATUSES`` tuples) so that a row reads well in ``psql``/``sqlite3``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# Deterministic constraint names, so that migrations (and SQLite batch mode) can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

RUN_STATUSES = ("pending", "running", "completed", "cancelled", "failed")
#: A run in one of these states is over (it can still be resumed or retried).
TERMINAL_RUN_STATUSES = frozenset({"completed", "cancelled", "failed"})
ITEM_STATUSES = ("pending", "running", "done", "failed", "skipped")
#: Ledger row states: written ``pending`` before a paid call, ``completed`` with its cost after it, ``abandoned`` when
#: the attempt lost its lease before recording the outcome (a possibly-paid call that will be repeated).
LEDGER_STATUSES = ("pending", "completed", "abandoned")

#: USD amounts: up to 10 decimal places (a token costs 1e-7 USD and less); read back as float.
Usd = Numeric(24, 10, asdecimal=False)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # research | org_eval
    Column("status", String(16), nullable=False, index=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("options", JSON, nullable=False),  # ResearchOptions as a dict
    Column("input_path", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("error", Text),
    # Process (host:pid:nonce) that last started executing the run.
    Column("owner", Text),
    # Last sequence number handed out to run_events: bumped with UPDATE … RETURNING, which row-locks the run on
    # PostgreSQL, so events commit in sequence order and a watcher never misses one that commits late.
    Column("event_seq", Integer, nullable=False, server_default="0"),
    # Run-level heartbeat (migration 0004_durable_runs): renewed about once a second by every process executing the
    # run (and by ingest). Older than the lease = nobody executes it: workers may take it over.
    Column("heartbeat_at", DateTime(timezone=True)),
    # CancelRun asked for a stop: executing processes (any worker) see it on their next control tick, stop claiming,
    # cancel in-flight calls and release their items; claims of the run are refused while it is set.
    Column("cancel_requested", Boolean, nullable=False, server_default="0"),
    # Queued for `vantage worker` processes (StartRun/ResumeRun detach, `--detach`): any worker may execute it.
    Column("detached", Boolean, nullable=False, server_default="0"),
    # False while the run's input is being stored (migration 0005, hardening #11): a run left so had its load
    # interrupted; resume and workers refuse it.
    Column("input_complete", Boolean, nullable=False, server_default="1"),
)

run_items = Table(
    "run_items",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    # Input order (the CSV line number, 1 = the header): claims and listings go by seq.
    Column("seq", Integer, nullable=False),
    # Identity of the item within its run: the company name, case-folded and whitespace-collapsed. Skipped rows
    # get a synthetic key ("#<seq>") so that blank and duplicate rows can be recorded too.
    Column("key", Text, nullable=False),
    Column("company", Text, nullable=False, server_default=""),  # as written in the input
    Column("domain", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    # Number of claims so far; the claim's value is its fencing token (a write-back must present it).
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # The LLM context had to be cut (CONTEXT_TOO_LONG) to fit the model.
    Column("truncated", Boolean, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "key", name="uq_run_items_run_id_key"),
    Index("ix_run_items_run_status_seq", "run_id", "status", "seq"),
    Index("ix_run_items_run_seq", "run_id", "seq"),
    # The reaper's scan (running items whose lease expired) and the heartbeat's (items of one owner).
    Index("ix_run_items_status_lease", "status", "lease_expires_at"),
    Index("ix_run_items_lease_owner", "lease_owner"),
)

search_results = Table(
    "search_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("returned_count", Integer, nullable=False),
    Column("kept_count", Integer, nullable=False),
    Column("filtered_out_count", Integer, nullable=False),
    Column("credits", Integer, nullable=False),  # Tavily credits billed for this item's searches
    Column("cost_usd", Usd, nullable=False),
    Column("urls", JSON, nullable=False),  # kept result URLs, best first
    Column("cached", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

classifications = Table(
    "classifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("tier", String(8), nullable=False),  # HOT | WARM | WATCH | COLD
    Column("score", Integer, nullable=False),  # 0..100
    Column("category", Text, nullable=False),
    Column("rationale", Text, nullable=False),
    Column("evidence_urls", JSON, nullable=False),
    Column("model", Text, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost_usd", Usd, nullable=False),  # LLM USD of the attempt that produced this classification
    Column("created_at", DateTime(timezone=True), nullable=False),
)

cost_ledger = Table(
    "cost_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE")),
    Column("provider", String(32), nullable=False),  # tavily | openai | anthropic | …
    Column("kind", String(16), nullable=False),  # search | llm | scrape
    # "<run>:<item>:<provider>:<attempt>" (+ ":<n>" for the n-th billed call of one attempt): a repeated write of
    # the same call is a no-op, a new attempt is a new row (so repeats after a crash stay visible).
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("units", Integer, nullable=False, server_default="0"),
    Column("unit_type", String(16), nullable=False),  # credits | tokens | records
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("usd", Usd, nullable=False, server_default="0"),
    # pending: written before the call; completed: the call answered and its cost is known; abandoned: the attempt
    # that made the call lost its lease (its process died or stalled) before the outcome was recorded — the call may
    # have been paid; it is a repeat once the item is claimed again (see LEDGER_STATUSES).
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The item attempt (fencing token) that made the call (migration 0004_durable_runs); NULL for run-level calls.
    Column("attempt", Integer),
    # The USD is an estimate: the model is missing from the model catalogue (migration 0005_round3, #18).
    Column("cost_estimated", Boolean, nullable=False, server_default="0"),
    # A search row whose outcome its attempt did not record (the attempt's lease expired, or its call ended in a
    # deadline / cancel): since when the reaper settles it from the search service's records (shared/call_records.py;
    # migration 0007_search_outcomes). NULL = nothing to settle. Partial index: rows to settle only.
    Column("unsettled_since", DateTime(timezone=True)),
    Index("ix_cost_ledger_unsettled", "unsettled_since", postgresql_where=text("unsettled_since IS NOT NULL"),
          sqlite_where=text("unsettled_since IS NOT NULL")),
)

run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    # RUN_STARTED | ITEM_STARTED | ITEM_DONE | ITEM_FAILED | RUN_FINISHED | RUN_CANCELLED | PROGRESS
    Column("type", String(24), nullable=False),
    Column("item_id", String(36)),
    Column("item_key", Text),
    Column("message", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
)

# The inference service's response cache (table response_cache) is not the orchestrator's: its model and migrations
# are in services/inference/store/ (own Alembic version table). Migration 0002_response_cache is a no-op now.


# --- AI visibility (org evaluation, migration 0003_org_eval) ----------------------------------------------------
#
# One ORG_EVAL run = questions × models × locations "question runs". Each question run is a ``run_items`` row (key
# ``"<question_id>|<model>|<location>"``; claims, leases, attempts/fencing and events as for research items) plus a
# ``question_runs`` row created with it, which receives the answer (or the provider's failure) when it lands. The
# extraction of an answer lands in ``org_evals`` / ``org_competitors`` / ``org_citations`` (keyed by the item), and
# every Bright Data snapshot the run triggered is in ``provider_batches`` with its members in submission order.

#: provider_batches.status: submitted (triggered, answers not all persisted), ready, failed, cancelled.
BATCH_STATUSES = ("submitted", "ready", "failed", "cancelled")
#: question_runs.status: pending (not answered yet), answered (answer stored), failed (the provider's error stored).
QUESTION_RUN_STATUSES = ("pending", "answered", "failed")

#: An organisation evaluated by ORG_EVAL runs; its name variations are computed once and reused by later runs.
orgs = Table(
    "orgs",
    metadata,
    Column("id", String(36), primary_key=True),
    # "<case-folded, whitespace-collapsed name>|<domain>": the identity of an org across runs.
    Column("key", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("domain", Text, nullable=False, server_default=""),
    Column("name_variations", JSON, nullable=False),  # [str], the name first
    # Model whose suggestions are merged into name_variations; NULL = deterministic variations only (yet).
    Column("variations_model", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

questions = Table(
    "questions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),  # 1-based position in the questions file
    Column("text", Text, nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_questions_run_id_seq"),
)

question_runs = Table(
    "question_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("question_id", String(36), ForeignKey("questions.id", ondelete="CASCADE"), nullable=False),
    Column("model", Text, nullable=False),
    Column("location", String(8), nullable=False, server_default=""),  # ISO 3166-1 alpha-2, "" = none
    Column("status", String(16), nullable=False, server_default="pending"),  # QUESTION_RUN_STATUSES
    Column("provider", String(32)),  # e.g. brightdata_chatgpt, openai
    Column("answer_markdown", Text),
    Column("answer_text", Text),
    Column("citations", JSON),  # provider citations [{url, title}]
    Column("search_queries", JSON),  # [str]
    Column("snapshot_id", Text),  # Bright Data snapshot the question went out in
    Column("error", Text),
    Column("error_code", Text),  # the provider's own code (Bright Data error_code) or the gRPC status name
    Column("cost_usd", Usd, nullable=False, server_default="0"),  # USD of the call that produced the answer
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("web_search_calls", Integer, nullable=False, server_default="0"),
    Column("cached", Boolean, nullable=False, server_default="0"),  # answered from the inference response cache
    Column("answered_at", DateTime(timezone=True)),
    # Bright Data record fields (migration 0005_round3, #18): whether the assistant searched the web (NULL = the
    # provider does not say) and the links it showed without citing them, [{url, title}] (NULL = none reported).
    Column("web_search_triggered", Boolean),
    Column("links_attached", JSON),
    # Samples and sweeps (migration 0006_round4, #14): the repeat of this question × model × location in its run
    # (0-based, < the run's samples); the model version the provider reported for the answer (CompleteResponse.model,
    # NULL = not reported / not answered); and, for an answer copied from an earlier sweep (--reuse-answers,
    # vantage reextract), that sweep's run id (the answer is then cached, cost 0).
    Column("sample", Integer, nullable=False, server_default="0"),
    Column("model_version", Text),
    Column("reused_from_run", String(36)),
    UniqueConstraint("run_id", "question_id", "model", "location", "sample",
                     name="uq_question_runs_run_question_model_loc"),
    Index("ix_question_runs_snapshot_id", "snapshot_id"),
)

provider_batches = Table(
    "provider_batches",
    metadata,
    Column("snapshot_id", Text, primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("model", Text, nullable=False),
    Column("location", String(8), nullable=False, server_default=""),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # BATCH_STATUSES
    Column("member_ids", JSON, nullable=False),  # run_items ids in submission order (record i answers member i)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

org_evals = Table(
    "org_evals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("mentioned", Boolean, nullable=False),
    Column("mention_count", Integer, nullable=False),
    Column("rank", Integer, nullable=False),  # 1 = named first among all organisations; 0 = not named
    Column("first_offset", Integer, nullable=False),  # characters; -1 = not named
    Column("sentiment", String(16), nullable=False),  # POSITIVE | NEUTRAL | NEGATIVE | MIXED | UNSPECIFIED
    Column("evidence", Text, nullable=False, server_default=""),
    Column("owned_citation_count", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

org_competitors = Table(
    "org_competitors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("rank", Integer, nullable=False),  # position among all organisations named (the org included)
    Column("mention_count", Integer, nullable=False),
    # Canonical name across the run's answers ("Lambda Labs" → "Lambda"), set when the run ends; NULL = not merged.
    Column("canonical", Text),
    UniqueConstraint("item_id", "name", name="uq_org_competitors_item_id_name"),
)

org_citations = Table(
    "org_citations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(36), ForeignKey("run_items.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),  # 1-based, after de-duplication
    Column("url", Text, nullable=False),  # normalised
    Column("domain", Text, nullable=False),  # registrable domain
    Column("title", Text, nullable=False, server_default=""),
    Column("source", String(16), nullable=False),  # PROVIDER | INLINE_LINK | BARE_URL
    Column("owned", Boolean, nullable=False),
    Column("competitor", Boolean, nullable=False),
    Column("competitor_name", Text, nullable=False, server_default=""),
    UniqueConstraint("item_id", "url", name="uq_org_citations_item_id_url"),
)


# --- scheduled sweeps (migration 0006_round4, block "schedules", issue 14 item 5) -------------------------------
#
# A schedule starts one ORG_EVAL run (a sweep) per period: period p = floor((now − anchor_at) / every_seconds) is
# due from anchor_at + p × every_seconds. ``vantage worker`` processes claim (schedule_id, period) by inserting its
# ``schedule_sweeps`` row (the primary key makes the start exactly-once whatever the number of workers); only the
# latest due period is ever started (missed periods are not replayed).

schedules = Table(
    "schedules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("org_name", Text, nullable=False),
    Column("org_domain", Text, nullable=False, server_default=""),
    Column("questions", JSON, nullable=False),  # [str]: the questions' text, so that any worker can start a sweep
    Column("models", JSON, nullable=False),  # [str]
    Column("locations", JSON, nullable=False),  # [str] ISO 3166-1 alpha-2; [""] = no location
    Column("samples", Integer),  # asks per question × model × location; NULL = `vantage evaluate`'s default
    Column("every_seconds", Integer, nullable=False),  # the period (s), > 0
    Column("anchor_at", DateTime(timezone=True), nullable=False),  # period 0 is due from here (UTC)
    Column("paused", Boolean, nullable=False, server_default="0"),
    # Why the last due sweep could not be started (e.g. the questions exceed a limit lowered since); NULL = none.
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("every_seconds > 0", name="ck_schedules_every_seconds_positive"),
)

schedule_sweeps = Table(
    "schedule_sweeps",
    metadata,
    Column("schedule_id", String(36), ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False),
    Column("period", Integer, nullable=False),  # 0-based; see above
    # The sweep's ORG_EVAL run; NULL once that run is deleted (the period stays claimed: it is never started again).
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("started_at", DateTime(timezone=True), nullable=False),  # when the claiming worker started it (UTC)
    PrimaryKeyConstraint("schedule_id", "period", name="pk_schedule_sweeps"),
    Index("ix_schedule_sweeps_run_id", "run_id"),
)
