"""Fixtures shared by the unit tests: a job store on fakeredis."""

from __future__ import annotations

import fakeredis
import pytest

from worker.jobs.store import JobStore


@pytest.fixture
def store() -> JobStore:
    """A job store on a fakeredis of this test's own."""
    return JobStore(fakeredis.FakeRedis(), key_prefix="t:")
