"""Bright Data trigger intents, seen by every inference replica (issue 17 item 3).

Bright Data's trigger has no idempotency key, and a trigger that failed half-way (a timeout, a broken connection, an
unreadable answer) may still have created a paid snapshot. Before each trigger an inference process records an
*intent* — dataset, SHA-256 of the prompts, start time, replica — and, once answered, the snapshot id it got. After
a failed trigger the "did my trigger create a snapshot?" check (``BrightDataProvider._verified_trigger``) reads the
dataset's snapshot list, drops every snapshot some intent already holds (any replica's), and adopts a remaining one
only when its records carry exactly this intent's prompts, claiming it here first: ``snapshot_id`` is UNIQUE, so two
replicas never adopt the same snapshot, and another replica's (or another client's) snapshot is never taken.

Why the shared database and not a marker in the snapshot itself: the snapshot list
(docs.brightdata.com/api-reference/scrapers/management-apis/get-snapshots) returns ids, status and dates but no
inputs; the ``input`` echo in records is undocumented (providers.md §2.6, "UNCONFIRMED") and records exist only once
the snapshot is ready; and the datasets validate their inputs (the Perplexity dataset rejects fields it does not
know, e.g. ``web_search``: providers.md §2.3), so an extra "intent id" input field could fail every trigger.

Store: table ``brightdata_trigger_intents`` in the inference service's database (``settings.database_url``, the
engine of the response cache), one of the inference service's own tables (services/inference/store/models.py,
Alembic migration ``i0002_brightdata_trigger_intents``, version table ``alembic_version_inference``). Without a database (cache disabled or unusable) the process keeps
its intents in memory: one replica stays exact, replicas then only fall back on the records check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inference.store import CHAIN
from services.inference.store.models import brightdata_trigger_intents

log = structlog.get_logger("vantage.inference.trigger_intents")

#: Intent states: ``pending`` (trigger sent, no answer yet), ``triggered`` (answered with ``snapshot_id``),
#: ``adopted`` (its failed trigger's snapshot found and claimed), ``none`` (verified: nothing was created),
#: ``unknown`` (failed, outcome not established).
STATES = ("pending", "triggered", "adopted", "none", "unknown")
#: Intents older than this are deleted by :meth:`TriggerIntents.purge` (s): Bright Data keeps snapshots 30 days,
#: but a failed trigger is only ever checked within its own call's deadline.
RETENTION_SECONDS = 7 * 86_400.0

#: The table (services/inference/store/models.py), created and changed only by the inference chain
#: (migration i0002_brightdata_trigger_intents).
trigger_intents = brightdata_trigger_intents


def prompts_sha256(prompts: Sequence[str]) -> str:
    """SHA-256 (hex) of the prompts in input order, as JSON: the identity of one trigger's content."""
    return hashlib.sha256(json.dumps(list(prompts), ensure_ascii=False).encode()).hexdigest()


def replica_name() -> str:
    """``host:pid`` of this process (a pod name on Kubernetes)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


class TriggerIntents:
    """Intents in memory (``engine`` None: this process only) or in the shared database table.

    Every method raises the database's errors (SQLAlchemy ``DBAPIError``); callers treat a failed read as "the
    outcome is unknown" (never as "nothing was created").
    """

    def __init__(self, engine: AsyncEngine | None = None, *, replica: str | None = None) -> None:
        self.engine = engine
        self.replica = replica or replica_name()
        self._rows: dict[str, dict[str, object]] = {}
        self._ready = engine is None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, engine: AsyncEngine | None, *, timeout_s: float = 10.0) -> TriggerIntents:
        """The shared store on ``engine``, the inference chain at its head (:data:`services.inference.store.CHAIN`,
        migrated when behind); the in-memory store (logged) when ``engine`` is None or the schema cannot be brought
        there within ``timeout_s`` (s) — start-up never waits longer."""
        store = cls(engine)
        if engine is None:
            return store
        try:
            async with asyncio.timeout(timeout_s):
                await store.ensure_schema()
        except Exception as e:
            log.error("trigger_intents_local_only", error=type(e).__name__,
                      note="Bright Data trigger intents stay in this process; replicas cannot see them")
            return cls(None)
        return store

    @property
    def shared(self) -> bool:
        """True when the intents live in the database (visible to every replica)."""
        return self.engine is not None

    async def ensure_schema(self) -> None:
        """Check the inference chain, migrating it to the head when behind (once per process; concurrent callers
        wait). Raises :class:`shared.db.SchemaOutOfDate` for a revision this code does not know, or the driver's
        errors."""
        async with self._lock:
            if not self._ready and self.engine is not None:
                await CHAIN.ensure_schema(self.engine)
                self._ready = True

    async def _schema(self) -> None:
        if not self._ready:
            await self.ensure_schema()

    async def record(self, dataset_id: str, prompts: Sequence[str], began_at: float) -> str:
        """A new ``pending`` intent; its id."""
        intent_id = str(uuid.uuid4())
        row = {"intent_id": intent_id, "dataset_id": dataset_id, "prompts_sha256": prompts_sha256(prompts),
               "inputs": len(prompts), "began_at": began_at, "replica": self.replica, "state": "pending",
               "snapshot_id": None, "updated_at": time.time()}
        if self.engine is None:
            self._rows[intent_id] = row
            return intent_id
        await self._schema()
        async with self.engine.begin() as conn:
            await conn.execute(insert(trigger_intents).values(**row))
        return intent_id

    async def resolve(self, intent_id: str, state: str, snapshot_id: str | None = None) -> None:
        """Set an intent's ``state`` (one of :data:`STATES`) and, when known, its ``snapshot_id``."""
        if state not in STATES:
            raise ValueError(f"unknown intent state {state!r}")
        values: dict[str, object] = {"state": state, "updated_at": time.time()}
        if snapshot_id is not None:
            values["snapshot_id"] = snapshot_id
        if self.engine is None:
            self._rows.get(intent_id, {}).update(values)
            return
        async with self.engine.begin() as conn:
            await conn.execute(update(trigger_intents).where(trigger_intents.c.intent_id == intent_id).values(**values))

    async def claim(self, intent_id: str, snapshot_id: str) -> bool:
        """Make ``snapshot_id`` this intent's (state ``adopted``); False when another intent already holds it."""
        if self.engine is None:
            if any(r["snapshot_id"] == snapshot_id for r in self._rows.values()):
                return False
            self._rows.get(intent_id, {}).update(state="adopted", snapshot_id=snapshot_id, updated_at=time.time())
            return True
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(trigger_intents).where(trigger_intents.c.intent_id == intent_id)
                    .values(state="adopted", snapshot_id=snapshot_id, updated_at=time.time())
                )
        except IntegrityError:  # UNIQUE(snapshot_id): another replica's intent holds it
            return False
        return True

    async def held(self, snapshot_ids: Iterable[str]) -> set[str]:
        """The ids among ``snapshot_ids`` that some intent (of any replica) holds."""
        ids = [s for s in dict.fromkeys(snapshot_ids) if s]
        if not ids:
            return set()
        if self.engine is None:
            mine = {r["snapshot_id"] for r in self._rows.values()}
            return {s for s in ids if s in mine}
        await self._schema()
        out: set[str] = set()
        async with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                rows = await conn.execute(
                    select(trigger_intents.c.snapshot_id).where(trigger_intents.c.snapshot_id.in_(ids[i:i + 500]))
                )
                out.update(str(r[0]) for r in rows)
        return out

    async def purge(self, now: float | None = None) -> int:
        """Delete intents older than :data:`RETENTION_SECONDS`; how many."""
        cutoff = (time.time() if now is None else now) - RETENTION_SECONDS
        if self.engine is None:
            old = [k for k, r in self._rows.items() if float(r["began_at"]) < cutoff]  # type: ignore[arg-type]
            for k in old:
                del self._rows[k]
            return len(old)
        await self._schema()
        async with self.engine.begin() as conn:
            res = await conn.execute(delete(trigger_intents).where(trigger_intents.c.began_at < cutoff))
        return int(res.rowcount or 0)


__all__ = ["RETENTION_SECONDS", "STATES", "TriggerIntents", "prompts_sha256", "trigger_intents"]
