"""Fixtures of the integration tests: a real PostgreSQL, in databases of their own (never skipped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Makes fresh databases with random names on the PostgreSQL at BOXCUT_TEST_POSTGRES_URL, each returned as
    its `postgresql://` URL, and drops every one of them after the test module.

    A test that needs PostgreSQL fails (never skips) when none answers there: run scripts/ensure-postgres.
    """
    admin_url = make_url(os.environ.get("BOXCUT_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL))
    engine = create_engine(admin_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 5})
    made: list[str] = []

    def make() -> str:
        name = f"boxcut_test_{uuid.uuid4().hex[:12]}"
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except SQLAlchemyError as error:
            refused = " ".join(str(getattr(error, "orig", error)).split())
        else:
            made.append(name)
            return admin_url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        pytest.fail(f"cannot create a database on the PostgreSQL at {admin_url.render_as_string(hide_password=True)} "
                    f"(BOXCUT_TEST_POSTGRES_URL): {refused}; run scripts/ensure-postgres")

    yield make
    if made:
        with engine.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """A fresh PostgreSQL database of this test module's own (dropped after it), as a `postgresql://` URL."""
    return postgres_databases()
