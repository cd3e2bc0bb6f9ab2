"""Fixtures of the integration tests: a real PostgreSQL, in databases of their own (never skipped)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.postgres import NoPostgres, databases


@pytest.fixture(scope="module")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Makes fresh databases with random names on the PostgreSQL at BOXCUT_TEST_POSTGRES_URL, each returned as
    its `postgresql://` URL, and drops every one of them after the test module.

    A test that needs PostgreSQL fails (never skips) when none answers there: run scripts/ensure-postgres.
    """
    with databases() as supply:

        def make() -> str:
            try:
                return next(supply)
            except NoPostgres as missing:
                pytest.fail(str(missing))

        yield make


@pytest.fixture(scope="module")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """A fresh PostgreSQL database of this test module's own (dropped after it), as a `postgresql://` URL."""
    return postgres_databases()
