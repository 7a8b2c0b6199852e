"""One Alembic migration chain per service, several chains in one database.

Every service that owns tables ships its own chain (:class:`MigrationChain`): its own ``migrations/`` directory and
its own Alembic ``version_table``, so on one shared database (one SQLite file, or one PostgreSQL database) the
services migrate independently and never see each other's revisions (Alembic: ``context.configure(version_table=…)``,
https://alembic.sqlalchemy.org/en/latest/api/runtime.html#alembic.runtime.environment.EnvironmentContext.configure).

Policy at start-up (:meth:`MigrationChain.ensure_schema`): a database that is empty for the chain — none of its
tables, and nothing but other Vantage chains' tables (recognised by their ``alembic_version*`` table) — is upgraded to
the head revision automatically; with ``upgrade_behind`` a database at an older revision of the chain, or holding the
chain's tables without its version table, is upgraded too (the inference service's cache: its first revision adopts
tables that already exist); otherwise it is refused with one line naming the upgrade command
(:class:`SchemaOutOfDate`); a revision the code does not know (newer code
migrated it) is always refused. Concurrent first starts are serialised: ``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock (one key per chain) on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import write_transaction
from shared.errors import FailedPrecondition

#: ``Config.attributes`` key of the chain's version table, read by :func:`run_env`.
VERSION_TABLE_KEY = "vantage_version_table"


class SchemaOutOfDate(FailedPrecondition):
    """The database's schema revision (of one chain) is not the one this code needs."""

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message, reason="SCHEMA_OUT_OF_DATE")
        self.current = current
        self.head = head


@dataclass(frozen=True)
class MigrationChain:
    """A service's migrations: ``script_location`` (its Alembic directory, with an ``env.py`` calling
    :func:`run_env`), ``version_table`` (its own Alembic version table), ``lock_key`` (its PostgreSQL advisory lock),
    ``owned_tables`` (names of the tables it creates: only these decide whether the database is "empty" for it),
    ``upgrade_hint`` (the command a refusal names) and ``upgrade_behind`` (see the module docstring)."""

    script_location: Path
    version_table: str
    lock_key: int
    owned_tables: Callable[[], Collection[str]]
    upgrade_hint: str
    upgrade_behind: bool = False

    def config(self, connection: Connection | None = None) -> Config:
        """Alembic configured in code (no alembic.ini): this chain's directory and version table; ``connection``
        handed to ``env.py``."""
        cfg = Config()
        cfg.set_main_option("script_location", str(self.script_location))
        cfg.set_main_option("path_separator", "os")
        cfg.attributes[VERSION_TABLE_KEY] = self.version_table
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def scripts(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())

    def head_revision(self) -> str:
        """The newest revision this code ships."""
        head = self.scripts().get_current_head()
        assert head is not None, f"no migrations found in {self.script_location}"
        return head

    def current_revision_sync(self, conn: Connection) -> str | None:
        return MigrationContext.configure(conn, opts={"version_table": self.version_table}).get_current_revision()

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.lock_key})

    def _upgrade_sync(self, conn: Connection, revision: str) -> None:
        self._lock(conn)
        command.upgrade(self.config(conn), revision)

    def check_sync(self, conn: Connection, *, auto_upgrade_empty: bool) -> tuple[str | None, str]:
        """(revision found, head) after upgrading when the policy allows; raises :class:`SchemaOutOfDate`."""
        head = self.head_revision()
        current = self.current_revision_sync(conn)
        if current == head:
            return current, head
        known = {s.revision for s in self.scripts().walk_revisions()}
        if (current is None and auto_upgrade_empty) or (self.upgrade_behind and current in known):
            self._lock(conn)
            # Re-read under the lock: another process may have just migrated.
            current = self.current_revision_sync(conn)
            if current == head:
                return current, head
            if self._may_upgrade(conn, current, known, auto_upgrade_empty=auto_upgrade_empty):
                command.upgrade(self.config(conn), "head")
                return head, head
        shown = current or f"empty (no {self.version_table})"
        if current is not None and current not in known:
            raise SchemaOutOfDate(
                f"database schema is at {current}, which this code does not know (it needs {head}): "
                "upgrade Vantage, or point it at another database",
                current=current,
                head=head,
            )
        raise SchemaOutOfDate(
            f"database schema is at {shown}, code needs {head}: run `{self.upgrade_hint}`", current=current, head=head
        )

    def _may_upgrade(self, conn: Connection, current: str | None, known: set[str], *, auto_upgrade_empty: bool) -> bool:
        """The start-up policy (module docstring). Without a revision of this chain the database is "empty" for it
        when none of its tables exist and every other table is another Vantage chain's (an ``alembic_version*``
        table is there): a database holding someone else's tables is never migrated silently."""
        if current is not None:
            return self.upgrade_behind and current in known
        if not auto_upgrade_empty:
            return False
        tables = set(inspect(conn).get_table_names())
        owned = set(self.owned_tables()) & tables
        others = tables - set(self.owned_tables()) - {self.version_table}
        if owned:
            return self.upgrade_behind  # the chain's first revision adopts tables that already exist
        return not others or any(t.startswith("alembic_version") for t in others)

    async def ensure_schema(self, engine: AsyncEngine, *, auto_upgrade_empty: bool = True) -> str:
        """Check (and when the policy allows, migrate) the schema. Returns the revision. Raises
        :class:`SchemaOutOfDate`, or the driver's errors when the database cannot be reached."""
        async with write_transaction(engine) as conn:
            current, _head = await conn.run_sync(lambda c: self.check_sync(c, auto_upgrade_empty=auto_upgrade_empty))
        assert current is not None
        return current

    async def upgrade(self, engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str]:
        """Run this chain's migrations up to ``revision``. Returns (revision before, revision after)."""
        async with write_transaction(engine) as conn:
            before = await conn.run_sync(self.current_revision_sync)
            await conn.run_sync(lambda c: self._upgrade_sync(c, revision))
            after = await conn.run_sync(self.current_revision_sync)
        assert after is not None
        return before, after

    async def current_revision(self, engine: AsyncEngine) -> str | None:
        async with engine.connect() as conn:
            return await conn.run_sync(self.current_revision_sync)


def run_env(context: Any, metadata: MetaData) -> None:
    """The body of a chain's ``env.py`` (``context`` is ``alembic.context``): online migrations on the connection
    :meth:`MigrationChain.config` handed over, in the chain's version table; ``render_as_batch`` lets the same
    migrations alter tables on SQLite (copy-and-move). Raises RuntimeError when run without that connection (a
    hand-written alembic.ini)."""
    attrs = context.config.attributes
    connection = attrs.get("connection")
    if connection is None:
        raise RuntimeError("run these migrations through shared.db.MigrationChain.upgrade")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=attrs.get(VERSION_TABLE_KEY, "alembic_version"),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # Autogenerate compares only this chain's tables: the other services' tables share the database.
        include_name=lambda name, type_, _parent: type_ != "table" or name in metadata.tables,
    )
    with context.begin_transaction():
        context.run_migrations()
