"""Which database errors are transient (worth retrying): one classification for every service."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_transient(e: BaseException) -> bool:
    """A PostgreSQL error worth retrying: the connection was lost or refused (server restarting, backend
    terminated), a deadlock or serialization failure — a SQLAlchemy ``DBAPIError`` whose connection was invalidated,
    or an ``OperationalError`` / ``InterfaceError`` raised by psycopg. (On SQLite ``OperationalError`` also means
    "no such table", so nothing is retried there: its busy timeout already waits for the writer lock.)"""
    if not isinstance(e, DBAPIError):
        return False
    if e.connection_invalidated:
        return True
    orig = getattr(e, "orig", None)
    module = type(orig).__module__ if orig is not None else ""
    return module.startswith("psycopg") and isinstance(e, OperationalError | InterfaceError)
