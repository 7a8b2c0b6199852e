"""The response cache of the inference service: an answer is paid for once, then served from the database.

**Key.** The sha256 (hex) of the canonical JSON (sorted keys, no whitespace) of everything that determines an answer:
for a completion (:func:`request_key`) the provider, model, messages, JSON schema (+ its name), parameters
(``web_search``, the effective ``max_output_tokens``), location and the extra HTTP headers (only the sandbox's
fault header is ever set: a forced fault must not be answered from the cache); for an item of a packed batch
(:func:`services.inference.packing.item_key`) the provider, model, instruction, item schema, the item's input and
its parameters — so packed items hit whatever pack they land in. :data:`CACHE_VERSION` is part of every key: bump it
when the meaning of a stored answer changes.

**Store.** Table ``response_cache`` of the inference service's own schema (:mod:`services.inference.store`: its
models and Alembic chain, version table ``alembic_version_inference``): ``key`` → ``response`` (the answer as
JSON: :func:`result_to_json`), ``provider``, ``model``, ``created_at``, ``expires_at`` (NULL = never; set from
``settings.response_cache_ttl_seconds``). Hits are read back with one ``SELECT … WHERE key IN (…)`` per 500 keys;
stores are upserts (a fresh answer replaces an expired or bypassed one). The database is a cache here, never a
dependency: a failed read is a miss, a failed write is logged, and the call's answer is returned either way.

**Hits** are :class:`CachedResult`: ``cached`` true, ``cost_usd`` 0, token counts and web-search calls 0 (nothing
was billed), everything else as first answered.

**Concurrency.** Identical misses in one process are single-flighted (:class:`shared.concurrency.SingleFlight`): the first caller pays,
callers that arrive while it is in flight wait for its answer and get it as a hit ($0); if it fails they get the same
error. Across processes (several replicas) identical misses may each call the provider; the last store wins.

``no_cache`` skips the lookup (and the single-flight) — the fresh answer still refreshes the entry.

**Purging.** Expired rows are never served, and are deleted by :func:`purge` in bounded batches (one short
transaction of at most :data:`PURGE_BATCH` rows each): by ``vantage db prune-cache`` (every expired row, or with
``--older-than`` also every row stored more than that many seconds ago), and by the inference service in the
background, one batch every ``settings.response_cache_purge_interval_seconds`` (:func:`purge_periodically`) — never
on the path of a call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inference.providers import Citation, CompletionRequest, CompletionResult, Outcome, Provider
from services.inference.store import CHAIN
from services.inference.store.models import response_cache
from shared.concurrency import SingleFlight
from shared.config import InferenceSettings
from shared.db import create_engine, display_url
from shared.grpc_client import Deadline
from shared.logging import first_line

log = structlog.get_logger("vantage.inference.cache")

#: Part of every key: bump when the meaning of a stored answer changes (prompt templates, result shape).
CACHE_VERSION = 1
#: Keys per ``SELECT … IN (…)`` (below SQLite's bound-parameter limit).
_READ_CHUNK = 500
#: Seconds the start-up schema check may take before the service gives up on the cache (and serves without it).
SCHEMA_CHECK_TIMEOUT_S = 30.0
#: Rows deleted per purge transaction.
PURGE_BATCH = 1000


# --- keys -------------------------------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no whitespace, UTF-8 kept (so equal values give equal text)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_key(value: Any) -> str:
    """sha256 (64 hex characters) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def request_key(provider: str, req: CompletionRequest, settings: InferenceSettings) -> str:
    """The cache key of one completion ``req`` answered by ``provider`` (see the module docstring). A non-empty
    ``req.cache_scope`` is part of the key (answers are shared within a scope only: an evaluation sweep); the empty
    scope adds nothing, so global keys are those stored before scopes existed."""
    scope = {"scope": req.cache_scope} if req.cache_scope else {}
    return content_key(
        {
            **scope,
            "v": CACHE_VERSION,
            "kind": "complete",
            "provider": provider,
            "model": req.model,
            "messages": [[m.role, m.content] for m in req.messages],
            "schema": req.json_schema,
            "schema_name": req.schema_name if req.json_schema is not None else "",
            "params": {
                "web_search": req.web_search,
                # The effective limit: a changed default changes what the provider was asked.
                "max_output_tokens": req.max_output_tokens or settings.max_output_tokens,
            },
            "location": req.location,
            "headers": sorted((k.lower(), v) for k, v in req.extra_headers.items()),
        }
    )


# --- stored answers ----------------------------------------------------------------------------------------------


@dataclass
class CachedResult(CompletionResult):
    """An answer served from the cache (or shared by a concurrent identical call): nothing billed, so
    ``cost_usd``, token counts and ``web_search_calls`` are 0."""

    cached: bool = True


def is_cached(outcome: Outcome) -> bool:
    return bool(getattr(outcome, "cached", False))


#: The fields of a stored answer (those of :class:`CompletionResult`: a :class:`CachedResult`'s ``cached`` is not
#: stored) and, among them, the lists of :class:`Citation`.
_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(CompletionResult))
_CITATION_FIELDS = frozenset({"citations", "links_attached"})


def result_to_json(r: CompletionResult) -> str:
    """The stored form of an answer (every field, the original cost and tokens included, for inspection): a JSON
    object with sorted keys, citations as ``{"title", "url"}`` objects — what ``dataclasses.asdict`` +
    :func:`canonical_json` gave, built without asdict's deep copy and encoded by orjson (issue 16: this runs once
    per fresh answer). Text orjson refuses (a lone surrogate) falls back to :func:`canonical_json`."""
    data = {name: getattr(r, name) for name in _RESULT_FIELDS}
    for name in _CITATION_FIELDS:
        data[name] = [{"title": c.title, "url": c.url} for c in data[name]]
    data["search_queries"] = list(data["search_queries"])
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return canonical_json(data)


def result_from_json(text: str) -> CompletionResult:
    """The answer stored by :func:`result_to_json`; unknown fields (from newer code) are ignored. Raises
    ``ValueError`` for text that is not JSON."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson refuses and json reads (NaN), as stored by older code
        data = json.loads(text)
    fields = {f.name for f in dataclasses.fields(CompletionResult)}
    kwargs = {k: v for k, v in data.items() if k in fields}
    kwargs["citations"] = [Citation(c.get("url", ""), c.get("title", "")) for c in kwargs.get("citations") or []]
    kwargs["links_attached"] = [Citation(c.get("url", ""), c.get("title", ""))
                                for c in kwargs.get("links_attached") or []]
    return CompletionResult(**kwargs)


def as_hit(r: CompletionResult) -> CachedResult:
    """``r`` as served without a provider call: cached, $0, no tokens billed."""
    data = {f.name: getattr(r, f.name) for f in dataclasses.fields(CompletionResult)}
    data.update(cost_usd=0.0, input_tokens=0, output_tokens=0, web_search_calls=0)
    data["citations"] = list(r.citations)
    data["links_attached"] = list(r.links_attached)
    data["search_queries"] = list(r.search_queries)
    return CachedResult(**data)


@dataclass(frozen=True)
class Entry:
    """One row to store: ``response`` is :func:`result_to_json` of the answer."""

    key: str
    provider: str
    model: str
    response: str


@dataclass
class CacheStats:
    """Counters of one :class:`ResponseCache` (keys looked up, found, stored; database errors)."""

    lookups: int = 0
    hits: int = 0
    stores: int = 0
    errors: int = 0


class ResponseCache:
    """``response_cache`` rows through ``engine``. ``ttl_seconds`` > 0 gives each stored row an ``expires_at``;
    ``clock`` returns Unix seconds (tests move it)."""

    def __init__(
        self, engine: AsyncEngine, *, ttl_seconds: float = 0.0, clock: Callable[[], float] = time.time,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        self.table = response_cache
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.stats = CacheStats()
        self._owns_engine = owns_engine
        # Statements built once (issue 16: building and cache-keying a SELECT / upsert per call was ~5 % of the
        # service's CPU): one key by equality, several through one expanding IN, the upsert per dialect.
        t = self.table
        cols = (t.c.key, t.c.response, t.c.expires_at)
        self._select_one = select(*cols).where(t.c.key == bindparam("key"))
        self._select_in = select(*cols).where(t.c.key.in_(bindparam("keys", expanding=True)))
        self._upserts: dict[str, Any] = {}

    @classmethod
    async def open(cls, settings: InferenceSettings) -> ResponseCache | None:
        """The cache on ``settings.database_url`` — the inference service's own tables are created or migrated
        (:data:`services.inference.store.CHAIN`; no other service's table is touched), a revision newer than this
        code is left alone — or None (logged) when it is disabled or the database cannot serve it: the service then
        answers every call from its provider."""
        if not settings.response_cache_enabled:
            return None
        engine = create_engine(settings.database_url, pool_size=5)
        try:
            # Bounded: an unreachable database must not hold the service's start-up.
            async with asyncio.timeout(SCHEMA_CHECK_TIMEOUT_S):
                await CHAIN.ensure_schema(engine)
        except Exception as e:  # the cache is an optimisation: serve without it rather than not at all
            log.error(
                "response_cache_disabled",
                database=display_url(settings.database_url),
                error=first_line(e),
            )
            await engine.dispose()
            return None
        return cls(engine, ttl_seconds=settings.response_cache_ttl_seconds, owns_engine=True)

    async def aclose(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def get_many(self, keys: Iterable[str]) -> dict[str, CompletionResult]:
        """The live (unexpired) stored answers among ``keys``; a database error counts as misses."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        self.stats.lookups += len(wanted)
        now = self._now()
        found: dict[str, CompletionResult] = {}
        try:
            async with self.engine.connect() as conn:
                for i in range(0, len(wanted), _READ_CHUNK):
                    chunk = wanted[i : i + _READ_CHUNK]
                    if len(chunk) == 1:
                        rows = await conn.execute(self._select_one, {"key": chunk[0]})
                    else:
                        rows = await conn.execute(self._select_in, {"keys": chunk})
                    for key, response, expires_at in rows:
                        if expires_at is not None and _utc(expires_at) <= now:
                            continue
                        try:
                            found[key] = result_from_json(response)
                        except (ValueError, TypeError, AttributeError):
                            log.warning("response_cache_unreadable_row", key=key)
        except Exception as e:  # a cache read never fails a call
            self.stats.errors += 1
            log.warning("response_cache_read_failed", error=f"{type(e).__name__}: {e}"[:300])
            return {}
        self.stats.hits += len(found)
        return found

    async def purge_expired(self, *, max_batches: int | None = None, batch: int = PURGE_BATCH) -> int:
        """Delete the rows expired by now (:func:`purge`); returns how many. Raises the database's errors."""
        return await purge(self.engine, now=self._now(), batch=batch, max_batches=max_batches)

    async def get(self, key: str) -> CompletionResult | None:
        return (await self.get_many([key])).get(key)

    async def put_many(self, entries: Sequence[Entry]) -> None:
        """Upsert ``entries`` (a newer answer replaces the stored one); errors are logged, never raised."""
        if not entries:
            return
        now = self._now()
        expires = now + timedelta(seconds=self.ttl_seconds) if self.ttl_seconds > 0 else None
        rows = [
            {"key": e.key, "provider": e.provider, "model": e.model, "response": e.response,
             "created_at": now, "expires_at": expires}
            for e in {e.key: e for e in entries}.values()
        ]
        try:
            async with self.engine.begin() as conn:
                await conn.execute(self._upsert(conn.dialect.name), rows)
        except Exception as e:  # a failed store costs a future call, never this one
            self.stats.errors += 1
            log.warning("response_cache_write_failed", rows=len(rows), error=f"{type(e).__name__}: {e}"[:300])
            return
        self.stats.stores += len(rows)

    async def put(self, key: str, provider: str, model: str, result: CompletionResult) -> None:
        await self.put_many([Entry(key, provider, model, result_to_json(result))])

    def _upsert(self, dialect: str) -> Any:
        """The dialect's ``INSERT … ON CONFLICT (key) DO UPDATE`` of every column but the key, built once."""
        stmt = self._upserts.get(dialect)
        if stmt is None:
            stmt = self._upserts[dialect] = self._build_upsert(dialect)
        return stmt

    def _build_upsert(self, dialect: str) -> Any:
        t = self.table
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(t)
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(t)  # type: ignore[assignment]
        else:  # pragma: no cover - only PostgreSQL and SQLite are supported
            raise RuntimeError(f"response cache: unsupported database {dialect}")
        return stmt.on_conflict_do_update(
            index_elements=[t.c.key],
            set_={c: stmt.excluded[c] for c in ("provider", "model", "response", "created_at", "expires_at")},
        )


async def purge(
    engine: AsyncEngine, *, now: datetime, older_than_seconds: float | None = None, batch: int = PURGE_BATCH,
    max_batches: int | None = None,
) -> int:
    """Delete the ``response_cache`` rows expired at ``now`` (``expires_at`` ≤ ``now``; rows without an expiry never
    expire) and, when ``older_than_seconds`` (≥ 0) is given, every row stored at least that many seconds before
    ``now``. Works in transactions of at most ``batch`` rows until none is left or ``max_batches`` transactions ran.
    Returns the number of rows deleted. Raises the database's errors (SQLAlchemy ``DBAPIError`` …), ``ValueError``
    for a negative ``older_than_seconds`` or a ``batch`` < 1."""
    t = response_cache
    if batch < 1:
        raise ValueError("batch must be ≥ 1")
    cond = t.c.expires_at <= now
    if older_than_seconds is not None:
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must be ≥ 0")
        cond = or_(cond, t.c.created_at <= now - timedelta(seconds=older_than_seconds))
    total = done = 0
    while max_batches is None or done < max_batches:
        async with engine.begin() as conn:
            keys = select(t.c.key).where(cond).limit(batch)
            n = (await conn.execute(delete(t).where(t.c.key.in_(keys)))).rowcount or 0
        total += n
        done += 1
        if n < batch:
            break
    return total


async def purge_periodically(cache: ResponseCache, interval_seconds: float) -> None:
    """Forever: wait ``interval_seconds``, then delete one batch of expired rows (:data:`PURGE_BATCH`); errors are
    logged and the next round tries again. Run as a background task of the service (cancel it to stop)."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            n = await cache.purge_expired(max_batches=1)
        except Exception as e:  # the cache is an optimisation: a failed purge is retried next round
            log.warning("response_cache_purge_failed", error=f"{type(e).__name__}: {e}"[:300])
            continue
        if n:
            log.info("response_cache_purged", rows=n)


def _utc(ts: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


# --- the provider wrapper ----------------------------------------------------------------------------------------


class CachedProvider:
    """A :class:`~services.inference.providers.Provider` whose ``complete`` goes through the cache; everything else
    (capabilities, budget, ``check``, …) is the wrapped provider's. ``inner`` is the provider itself, for callers
    that cache at another grain (packing caches per item)."""

    def __init__(self, inner: Provider, cache: ResponseCache, settings: InferenceSettings, flights: SingleFlight[str, CompletionResult]) -> None:
        self.inner = inner
        self.cache = cache
        self._settings = settings
        self._flights = flights
        self.name = inner.name
        self.capabilities = inner.capabilities

    @property
    def available(self) -> bool:
        return self.inner.available

    def __getattr__(self, attr: str) -> Any:  # only called for attributes this wrapper does not define
        return getattr(self.inner, attr)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        """The stored answer to ``req`` when there is one (unless ``req.no_cache``), else the provider's, stored."""
        key = request_key(self.name, req, self._settings)
        if getattr(req, "no_cache", False):
            return await self._fresh(key, req, deadline)
        hit = await self.cache.get(key)
        if hit is not None:
            return as_hit(hit)
        result, shared = await self._flights.do(key, lambda: self._fresh(key, req, deadline))
        return as_hit(result) if shared else result

    async def _fresh(self, key: str, req: CompletionRequest, deadline: Deadline | None) -> CompletionResult:
        result = await self.inner.complete(req, deadline=deadline)
        await self.cache.put(key, self.name, req.model, result)
        return result


class CachedBatchProvider(CachedProvider):
    """:class:`CachedProvider` for a batch provider (Bright Data): ``complete`` is cached; the batch methods are the
    wrapped provider's — the ``CompleteStream`` / explicit ``CompleteBatch`` path caches their items one by one, under
    the same :func:`request_key` (:mod:`services.inference.streaming`)."""

    async def submit_batch(self, reqs: Sequence[CompletionRequest], *, deadline: Deadline | None = None) -> str:
        return await self.inner.submit_batch(reqs, deadline=deadline)  # type: ignore[attr-defined]

    async def collect_batch(
        self, job_id: str, count: int, *, prompts: Sequence[str] | None = None, model: str = "",
        deadline: Deadline | None = None,
    ) -> list[Outcome]:
        return await self.inner.collect_batch(  # type: ignore[attr-defined]
            job_id, count, prompts=prompts, model=model, deadline=deadline
        )

    async def complete_batch(
        self, reqs: Sequence[CompletionRequest], *, deadline: Deadline | None = None
    ) -> list[Outcome]:
        return await self.inner.complete_batch(reqs, deadline=deadline)  # type: ignore[attr-defined]

    async def cancel_batch(self, job_id: str) -> bool:
        return await self.inner.cancel_batch(job_id)  # type: ignore[attr-defined]

    def release_batch(self, job_id: str) -> None:
        self.inner.release_batch(job_id)  # type: ignore[attr-defined]


def wrap_providers(
    providers: Mapping[str, Provider], cache: ResponseCache | None, settings: InferenceSettings
) -> dict[str, Provider]:
    """``providers`` with every ``complete`` going through ``cache`` (unchanged when ``cache`` is None)."""
    if cache is None:
        return dict(providers)
    from services.inference.providers import BatchProvider

    flights: SingleFlight[str, CompletionResult] = SingleFlight()
    out: dict[str, Provider] = {}
    for pid, p in providers.items():
        cls = CachedBatchProvider if isinstance(p, BatchProvider) else CachedProvider
        out[pid] = cls(p, cache, settings, flights)
    return out


def unwrap(provider: Provider) -> Provider:
    """The provider under a cache wrapper (or ``provider`` itself)."""
    return provider.inner if isinstance(provider, CachedProvider) else provider
