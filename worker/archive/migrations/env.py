"""Alembic's environment for the archive: runs the migrations on the connection worker.archive.migrate hands it,
or on the URL of an alembic.ini when `alembic` is run by hand. It reads no settings and reaches no Redis."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from worker.archive.schema import engine_for, metadata, normalise


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no sqlalchemy.url: run the migrations through `boxcut migrate`")
    return normalise(url)


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = engine_for(_url())
    try:
        with engine.connect() as own:
            _run_on(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
