"""The archive's schema version: Alembic's migrations (shipped inside this package), run from code.

No alembic.ini is needed: the script location and the URL are set here. `upgrade` hands its own connection to
the migration environment, so the migrations run in that one transaction (PostgreSQL's DDL is transactional),
under an advisory lock, so two `boxcut migrate` at once run one after the other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from worker.archive.schema import engine_for, normalise, reaching

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_ADVISORY_LOCK = 0x626F78637574  # "boxcut"


def config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """Alembic's configuration for the archive: its scripts, and the database at `url` or on `connection`."""
    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        alembic.set_main_option("sqlalchemy.url", normalise(url).replace("%", "%%"))
    if connection is not None:
        alembic.attributes["connection"] = connection
    return alembic


def head() -> str:
    """The revision this code's schema is at."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return revision


def revision_on(connection: Connection) -> str | None:
    """The revision the database on `connection` is at; None when it has none (never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def current(url: str) -> str | None:
    """The revision the database at `url` is at; None when it has none (never migrated)."""
    engine = engine_for(url)
    try:
        with reaching(url), engine.connect() as connection:
            return revision_on(connection)
    finally:
        engine.dispose()


def pending(url: str) -> list[str]:
    """The revisions not yet applied to the database at `url`, oldest first."""
    return unapplied(current(url))


def revisions() -> list[str]:
    """Every revision this code knows, oldest first."""
    return unapplied(None)


def unapplied(revision: str | None) -> list[str]:
    """The revisions after `revision` (after none: all of them) up to head, oldest first."""
    scripts = ScriptDirectory.from_config(config())
    newer = [script.revision for script in scripts.iterate_revisions("heads", revision or "base")]
    return [name for name in reversed(newer) if name != revision]


def upgrade(url: str) -> tuple[str | None, str]:
    """Bring the database at `url` to head in one transaction; (the revision before, the revision after)."""
    engine = engine_for(url)
    try:
        with reaching(url), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            before = revision_on(connection)
            command.upgrade(config(url, connection=connection), "head")
            after = revision_on(connection)
    finally:
        engine.dispose()
    if after is None:
        raise RuntimeError("the upgrade left no revision behind")
    return before, after
