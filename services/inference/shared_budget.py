"""The Bright Data 429 budget shared by every inference replica that uses one token (issue 17).

Bright Data blocks an IP that receives 25 or more HTTP 429s within 5 minutes, for every API call, until support
unblocks it (/work/shared/reference/providers-2026-12.md, "Rate-limit policy"; docs.brightdata.com/products/
scrapers/error-codes). :class:`~services.inference.providers.brightdata.RateLimitBudget` keeps one process at
≤ ``brightdata_429_budget`` (10) 429s per window; replicas sharing a token (and, behind one NAT, an IP) would each
spend that much. This store makes the window one for all of them, in the inference service's own database
(``settings.database_url``, the engine of the response cache; SQLite or PostgreSQL):

- ``brightdata_429s``: **one insert per 429** received (``budget_key``, Unix time, the pause it asks for, replica);
- ``brightdata_budget_replicas``: the replicas sharing a budget, each with a heartbeat (one upsert every
  ``heartbeat_s``), so that each replica knows how many share the budget;
- :meth:`SharedBudgetStore.view`: **one statement** reading the window — the indexed count of the budget's 429s in
  the last ``window`` seconds (index ``(budget_key, at)``), their oldest time, the longest pause they asked for, and
  the live replicas — which every replica consults before sending (cached for a fraction of a second, so it costs
  one query per refresh, not one per call).

``budget_key`` is the SHA-256 of the token (hex, first 32 characters): never the token. Times are Unix seconds from
each host's clock, so replicas on hosts whose clocks differ by Δ shift the window by Δ (NTP keeps it well under a
second, against a 300-second window).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inference.store.models import brightdata_429s, brightdata_budget_replicas


def budget_key(token: str | None) -> str:
    """The budget's name in the shared tables: SHA-256 (hex, first 32 characters) of the token; ``"no-token"``
    without one. The token itself is never stored."""
    if not token:
        return "no-token"
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def replica_id() -> str:
    """``host:pid:random`` — unique per budget instance, so two replicas in one process (tests) count as two."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:255]


@dataclass(frozen=True)
class SharedView:
    """What every replica has recorded in the window, as of ``read_at`` (Unix s).

    ``hits``: 429s of every replica in the last window; ``oldest_at``: the oldest of them (Unix s, None when
    ``hits`` is 0); ``paused_until``: the latest pause any of them asked for (Unix s, 0 when none); ``replicas``:
    replicas with a heartbeat younger than the store's ``member_ttl_s`` (≥ 1)."""

    hits: int
    oldest_at: float | None
    paused_until: float
    replicas: int
    read_at: float


class SharedBudgetStore:
    """One token's shared 429 window on ``engine`` (the inference chain must be at its head: i0003). Every method
    raises the driver's errors (SQLAlchemy ``DBAPIError``); the budget then keeps deciding on its own counts."""

    def __init__(self, engine: AsyncEngine, key: str, *, replica: str | None = None, member_ttl_s: float = 15.0) -> None:
        self.engine = engine
        self.key = key
        self.replica = replica or replica_id()
        self.member_ttl_s = member_ttl_s

    def _upsert(self, now: float) -> Any:  # the dialect's Insert … ON CONFLICT (two unrelated classes)
        t = brightdata_budget_replicas
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t).values(budget_key=self.key, replica=self.replica, seen_at=now)
        return stmt.on_conflict_do_update(index_elements=[t.c.budget_key, t.c.replica], set_={"seen_at": now})

    async def heartbeat(self, now: float | None = None) -> None:
        """Say this replica shares the budget (upsert of its row)."""
        async with self.engine.begin() as conn:
            await conn.execute(self._upsert(time.time() if now is None else now))

    async def leave(self) -> None:
        """Stop sharing (the others' shares grow at their next read instead of after ``member_ttl_s``)."""
        t = brightdata_budget_replicas
        async with self.engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.budget_key == self.key, t.c.replica == self.replica))

    async def add_429(self, at: float, paused_until: float) -> None:
        """Record one 429 received at ``at`` (Unix s) that pauses every call until ``paused_until`` (Unix s)."""
        async with self.engine.begin() as conn:
            await conn.execute(insert(brightdata_429s).values(
                budget_key=self.key, at=at, paused_until=paused_until, replica=self.replica))

    async def view(self, window_s: float, now: float | None = None) -> SharedView:
        """The window as every replica has recorded it (one statement)."""
        now = time.time() if now is None else now
        t, m = brightdata_429s, brightdata_budget_replicas
        members = (select(func.count()).select_from(m)
                   .where(m.c.budget_key == self.key, m.c.seen_at > now - self.member_ttl_s).scalar_subquery())
        stmt = (select(func.count(), func.min(t.c.at), func.max(t.c.paused_until), members)
                .where(t.c.budget_key == self.key, t.c.at > now - window_s))
        async with self.engine.connect() as conn:
            hits, oldest, paused, replicas = (await conn.execute(stmt)).one()
        return SharedView(hits=int(hits or 0), oldest_at=None if oldest is None else float(oldest),
                          paused_until=float(paused or 0.0), replicas=max(1, int(replicas or 0)), read_at=now)

    async def purge(self, older_than: float) -> int:
        """Delete this budget's 429s received before ``older_than`` (Unix s) and replicas silent since then."""
        t, m = brightdata_429s, brightdata_budget_replicas
        async with self.engine.begin() as conn:
            a = await conn.execute(delete(t).where(t.c.budget_key == self.key, t.c.at < older_than))
            b = await conn.execute(delete(m).where(m.c.budget_key == self.key, m.c.seen_at < older_than))
        return int(a.rowcount or 0) + int(b.rowcount or 0)


__all__ = ["SharedBudgetStore", "SharedView", "budget_key", "replica_id"]
