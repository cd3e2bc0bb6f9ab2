"""The retention tests of tests/unit/jobs/test_retention.py, on a real Redis (XTRIM MINID, streams, scans)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.unit.jobs.test_retention import (
    test_a_call_shared_with_a_kept_job_stays_until_that_job_goes_too,
    test_a_finished_job_past_the_horizon_leaves_with_its_call_and_audit_and_a_newer_one_stays,
    test_a_job_that_is_not_final_is_kept_however_old,
    test_a_kept_jobs_audit_trail_reads_whole_past_a_thousand_entries_among_many_others,
)
from worker.jobs.store import JobStore

pytestmark = pytest.mark.integration

__all__ = [
    "test_a_call_shared_with_a_kept_job_stays_until_that_job_goes_too",
    "test_a_finished_job_past_the_horizon_leaves_with_its_call_and_audit_and_a_newer_one_stays",
    "test_a_job_that_is_not_final_is_kept_however_old",
    "test_a_kept_jobs_audit_trail_reads_whole_past_a_thousand_entries_among_many_others",
]


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"boxcut-test-{uuid.uuid4().hex[:10]}:"
    yield JobStore(client, key_prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
