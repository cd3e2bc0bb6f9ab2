"""The archive's database: its tables (SQLAlchemy Core), how a URL becomes an engine for them, and the errors
of reaching it.

One schema and one engine setup serve PostgreSQL (production) and SQLite (the embedded default): every column is
of a portable type (Text, BigInteger, Boolean), and documents are JSON text. Migration 0001 creates exactly these
tables; a test compares the two with Alembic's autogenerate, so a change here needs a migration.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    func,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
}

metadata = MetaData(naming_convention=NAMING)

archived_jobs = Table(
    "archived_jobs",
    metadata,
    Column("job_id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("dead", Boolean, nullable=False),
    Column("active_after", Boolean, nullable=False),
    Column("doc", Text, nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_archived_jobs_created_us", "created_us"),
    Index("ix_archived_jobs_state_created_us", "state", "created_us"),
    Index("ix_archived_jobs_source_created_us", "source", "created_us"),
)

archived_calls = Table(
    "archived_calls",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("doc", Text, nullable=False),
)

archived_job_calls = Table(
    "archived_job_calls",
    metadata,
    Column("job_id", Text, ForeignKey("archived_jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("call_id", Text, primary_key=True),
    Index("ix_archived_job_calls_call_id", "call_id"),
)

archived_audit = Table(
    "archived_audit",
    metadata,
    Column("entry_id", Text, primary_key=True),
    Column("ms", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("job_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("at", Text, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_archived_audit_ms_seq", "ms", "seq"),
    Index("ix_archived_audit_job_id_ms_seq", "job_id", "ms", "seq"),
)

_CONNECT_TIMEOUT_S = 5
_DESCRIBED_CHARS = 300
_SQLITE_BUSY_TIMEOUT_S = 10
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


class ArchiveError(Exception):
    """The archive's database cannot be reached, or refused a statement; the message never holds a password."""


class SchemaBehind(ArchiveError):
    """The database's schema is not at this code's head revision: `boxcut migrate` brings it there."""


class UnusableURL(ArchiveError):
    """A database URL SQLAlchemy cannot use; its message holds the URL with any password hidden."""


def normalise(url: str) -> str:
    """`postgresql://` and `postgres://` as `postgresql+psycopg://` (psycopg 3); any other URL as given."""
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def hidden(url: str) -> str:
    """The normalised URL with any password shown as `***`, for logs, errors and `boxcut doctor`."""
    try:
        return make_url(normalise(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return _URL_CREDENTIALS.sub(r"\g<scheme>***@", url)


def parse(url: str) -> URL:
    """The normalised URL, parsed; UnusableURL (password hidden) when it is not a database URL."""
    try:
        return make_url(normalise(url))
    except ArgumentError:
        raise UnusableURL(f"not a database URL: {hidden(url)}") from None


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turns any database error inside the block into an ArchiveError naming the database, its password hidden."""
    try:
        yield
    except DBAPIError as error:
        raise ArchiveError(f"the archive at {hidden(url)}: {_without_secrets(url, error)}") from error


def _without_secrets(url: str, error: DBAPIError) -> str:
    text = " ".join(str(error.orig).split())[:_DESCRIBED_CHARS]
    password = _password(url)
    if password:
        text = text.replace(password, "***")
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def _password(url: str) -> str | None:
    try:
        return make_url(normalise(url)).password
    except ArgumentError:
        return None


def engine_for(url: str, *, echo: bool = False) -> Engine:
    """An engine for the archive at `url`: pre-pinged connections; SQLite in WAL mode with foreign keys on and
    a busy timeout (its directory made); PostgreSQL with a short connect timeout."""
    parsed = parse(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = _CONNECT_TIMEOUT_S
    try:
        return create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args=connect_args)
    except ArgumentError as error:
        raise UnusableURL(f"cannot use {hidden(url)}: {type(error).__name__}") from None


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, pool_pre_ping=True, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _on_sqlite_connect(connection: sqlite3.Connection, _record: object) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
