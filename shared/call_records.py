"""Outcomes of keyed search calls, written by the search service and read by the orchestrator's reaper (issue 17).

Why: the orchestrator commits a search's pending ledger row before the call (issue 16: the rows of a claim share one
transaction), so when a worker is SIGKILLed its rows cannot say whether their call reached Tavily. The search service
knows: every call that carries an ``idempotency_key`` (``SearchRequest`` / ``SearchCompanyRequest``) ends in one
record here — what Tavily billed, or that it was never sent — and every search replica keeps a row with its
**watermark**: every keyed call that *started* at that replica before the watermark (Unix seconds, the replica's
clock) has its record written. The watermark advances with each flush, held back by the calls still in flight, so a
replica that dies leaves its watermark before the calls whose outcome it took with it.

The contract (this module is the only place either side knows it; the search service's Alembic chain,
``services/search/store``, creates the tables from :data:`metadata`):

``search_call_records``
    one row per keyed RPC that reached a search replica (a key may have several: a transport retry reaching
    another replica): ``state`` (:data:`STATES`), ``credits`` / ``usd`` billed by that RPC (0 for a cache hit, a
    coalesced call, a failure or a call never sent), ``uncertain`` = Tavily requests it sent whose outcome is
    unknown (cut by a timeout: Tavily may have billed them), ``started_at`` / ``finished_at``.
``search_replicas``
    one row per search process: ``started_at``, ``seen_at`` (its last flush or heartbeat, every
    :data:`HEARTBEAT_SECONDS`), ``watermark``, ``stopped_at`` (set by its last flush on a clean stop: every call it
    took is recorded).

:func:`decide` turns a ledger row of unknown outcome into a settlement. The row carries ``begun_at`` (when its
attempt wrote it) and ``due_at``: a time after which its attempt can no longer start a call — the reaper's clock
when it abandoned the row (the attempt's lease had expired, ≥ ⅔ of a lease after the attempt's last renewal) or the
write-back that left it pending. Then:

* every search replica that may have taken the call (started by ``due_at``, alive after ``begun_at``) has a
  watermark past ``due_at`` (+ :data:`CLOCK_SLACK_SECONDS`) or stopped cleanly → the records are complete: the row
  costs the sum of its records (no record: the call never reached a search replica → 0);
* one of them is alive but not yet past → wait (the next reaper pass looks again), at most
  :data:`MAX_WAIT_SECONDS`;
* one of them died (no heartbeat for :data:`DEAD_AFTER_SECONDS`) before getting past → the outcome cannot be known:
  the upper bound, the records' sum plus the row's estimate (one search at its known price), flagged estimated.

Clocks: replicas and reapers compare Unix times of different processes, so their clocks must agree within
:data:`CLOCK_SLACK_SECONDS` (NTP on every node; on one machine they share the clock).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

#: A replica flushes its finished records at least this often while it has some (s); a caller gone away (the
#: reaper will want to know soon) flushes at once.
FLUSH_SECONDS = 0.25
#: A replica writes its row (``seen_at``, ``watermark``) at least this often, records or not (s).
HEARTBEAT_SECONDS = 1.0
#: A replica whose row was not written for this long is dead (s): its unflushed calls are lost.
DEAD_AFTER_SECONDS = 15.0
#: Clocks of the search replicas and of the reapers agree within this (s).
CLOCK_SLACK_SECONDS = 2.0
#: A row whose replicas stay alive without getting past it for this long is settled at its upper bound (s).
MAX_WAIT_SECONDS = 600.0
#: Records and replica rows older than this are deleted by the search service at start-up (s).
RETENTION_SECONDS = 7 * 86_400.0

#: ``answered``: Tavily answered (``credits`` billed; 0 = a cache hit or a call coalesced onto another);
#: ``failed``: the call failed (nothing billed but ``uncertain`` requests); ``not_sent``: the caller went away
#: before the Tavily request was sent (nothing billed).
STATES = ("answered", "failed", "not_sent")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

search_call_records = Table(
    "search_call_records",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("idempotency_key", Text, nullable=False),
    Column("replica", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("credits", Integer, nullable=False),
    Column("usd", Float, nullable=False),
    Column("uncertain", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Index("ix_search_call_records_key", "idempotency_key"),
    Index("ix_search_call_records_finished_at", "finished_at"),
)

search_replicas = Table(
    "search_replicas",
    metadata,
    Column("replica", String(255), primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("watermark", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
)


@dataclass(frozen=True, slots=True)
class Replica:
    """A search replica's row (Unix seconds)."""

    replica: str
    started_at: float
    seen_at: float
    watermark: float
    stopped_at: float | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One keyed RPC's outcome at one replica: Tavily ``credits`` and ``usd`` it billed, ``uncertain`` requests."""

    credits: int
    usd: float
    uncertain: int = 0


class Verdict(enum.Enum):
    EXACT = "exact"  # the records are complete: ``units`` / ``usd`` are what was billed (0: drop the row)
    UPPER_BOUND = "upper_bound"  # the outcome cannot be known: ``units`` / ``usd`` bound it from above
    WAIT = "wait"  # a live replica has not flushed past the row yet: look again later


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    units: int = 0
    usd: float = 0.0
    why: str = ""


def decide(
    *,
    begun_at: float,
    due_at: float,
    now: float,
    replicas: Iterable[Replica],
    records: Sequence[Record],
    estimate_units: int,
    estimate_usd: float,
) -> Decision:
    """Settle a ledger row of unknown outcome from the search records (module docstring). Times are Unix seconds:
    ``begun_at`` when the row was written, ``due_at`` after which its attempt starts no call, ``now`` the reaper's
    clock; ``records`` = the row's key's records; ``estimate_units`` / ``estimate_usd`` = one search at its known
    price (the row's pending figures)."""
    credits = sum(r.credits for r in records)
    usd = round(sum(r.usd for r in records), 9)
    bound = Decision(Verdict.UPPER_BOUND, credits + estimate_units, round(usd + estimate_usd, 9))
    relevant = [r for r in replicas
                if r.started_at <= due_at + CLOCK_SLACK_SECONDS
                and max(r.seen_at, r.stopped_at or 0.0) >= begun_at - CLOCK_SLACK_SECONDS]
    if not relevant:
        # No search replica recorded calls then (records off, or another database): nothing can be known.
        return Decision(bound.verdict, bound.units, bound.usd, "no search replica recorded calls")
    behind = [r for r in relevant if r.stopped_at is None and r.watermark < due_at + CLOCK_SLACK_SECONDS]
    dead = [r for r in behind if r.seen_at < now - DEAD_AFTER_SECONDS]
    if dead:
        return Decision(bound.verdict, bound.units, bound.usd, f"search replica {dead[0].replica} died before "
                                                               "recording every call it took")
    if behind:
        if now - due_at > MAX_WAIT_SECONDS:
            return Decision(bound.verdict, bound.units, bound.usd,
                            f"search replica {behind[0].replica} did not record past the row in {MAX_WAIT_SECONDS:g} s")
        return Decision(Verdict.WAIT, why=f"search replica {behind[0].replica} has not recorded past the row yet")
    if any(r.uncertain for r in records):
        return Decision(bound.verdict, bound.units, bound.usd, "a Tavily request was cut after it was sent")
    return Decision(Verdict.EXACT, credits, usd, "recorded" if records else "never reached a search replica")


async def tables_exist(conn: AsyncConnection) -> bool:
    """Whether the search service's record tables are in this database (its chain ran here)."""

    def check(sync_conn: object) -> bool:
        from sqlalchemy import inspect

        names = set(inspect(sync_conn).get_table_names())
        return {search_call_records.name, search_replicas.name} <= names

    return bool(await conn.run_sync(check))


async def read(
    conn: AsyncConnection, keys: Sequence[str], *, since: float
) -> tuple[list[Replica], Mapping[str, list[Record]]]:
    """The replica rows written at ``since`` (Unix s) or later, and the records of ``keys`` (SELECTs; keys in
    chunks of 500)."""
    rep = search_replicas.c
    q = select(rep.replica, rep.started_at, rep.seen_at, rep.watermark, rep.stopped_at).where(
        or_(rep.seen_at >= since, rep.stopped_at >= since)
    )
    replicas = [Replica(r.replica, r.started_at, r.seen_at, r.watermark, r.stopped_at) for r in await conn.execute(q)]
    rec = search_call_records.c
    out: dict[str, list[Record]] = {}
    for i in range(0, len(keys), 500):
        chunk = list(keys[i:i + 500])
        rows = await conn.execute(
            select(rec.idempotency_key, rec.credits, rec.usd, rec.uncertain).where(rec.idempotency_key.in_(chunk))
        )
        for k, credits, usd, uncertain in rows:
            out.setdefault(k, []).append(Record(int(credits), float(usd), int(uncertain)))
    return replicas, out


__all__ = [
    "CLOCK_SLACK_SECONDS", "DEAD_AFTER_SECONDS", "FLUSH_SECONDS", "HEARTBEAT_SECONDS", "MAX_WAIT_SECONDS",
    "RETENTION_SECONDS", "STATES", "Decision", "Record", "Replica", "Verdict", "decide", "metadata", "read",
    "search_call_records", "search_replicas", "tables_exist",
]
