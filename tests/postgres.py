"""Databases of a test's own on a real PostgreSQL (BOXCUT_TEST_POSTGRES_URL): made with random names, dropped
afterwards. Shared by the integration tests' fixtures and the soak."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class NoPostgres(RuntimeError):
    """No database could be made: nothing answers, or it refused."""


@contextmanager
def databases() -> Iterator[Iterator[str]]:
    """An endless supply of fresh databases (each a `postgresql://` URL), all dropped on leaving."""
    admin_url = make_url(os.environ.get("BOXCUT_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL))
    engine = create_engine(admin_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 5})
    made: list[str] = []

    def supply() -> Iterator[str]:
        while True:
            name = f"boxcut_test_{uuid.uuid4().hex[:12]}"
            try:
                with engine.connect() as connection:
                    connection.execute(text(f'CREATE DATABASE "{name}"'))
            except SQLAlchemyError as error:
                refused = " ".join(str(getattr(error, "orig", error)).split())
                raise NoPostgres(f"cannot create a database on the PostgreSQL at "
                                 f"{admin_url.render_as_string(hide_password=True)} (BOXCUT_TEST_POSTGRES_URL): "
                                 f"{refused}; run scripts/ensure-postgres") from None
            made.append(name)
            yield admin_url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)

    try:
        yield supply()
    finally:
        if made:
            with engine.connect() as connection:
                for name in made:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
