"""The job store on fakeredis: records, transitions, listing, leases, audit."""

from __future__ import annotations

import pytest

from worker.errors import InvalidRequest, InvalidTransition, JobNotFound, LeaseHeld
from worker.jobs.model import CANCELLABLE_STATES, JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job


def make(store: JobStore, n: int = 1) -> str:
    job = build_job(JobRequest(targets=[{"type": "user", "login": f"u{i}@example.com"} for i in range(n)],
                               source="test", reason="why", requested_by="pytest"))
    store.create(job)
    return job.job_id


def test_a_created_job_loads_back_as_it_was(store: JobStore) -> None:
    job_id = make(store, 3)
    job = store.load(job_id)
    assert job.state is JobState.QUEUED and job.reason == "why" and job.requested_by == "pytest"
    assert [t.input["login"] for t in job.targets] == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert all(t.status is TargetStatus.PENDING for t in job.targets)
    assert set(job.to_dict()) >= {"job_id", "state", "source", "source_event_id", "reason", "requested_by",
                                  "dry_run", "created_at", "updated_at", "targets", "calls"}


def test_missing_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.load("j-nope")


def test_transition_checks_the_current_state(store: JobStore) -> None:
    job_id = make(store)
    assert store.transition(job_id, to=JobState.CANCELLED, allowed_from=CANCELLABLE_STATES) is JobState.QUEUED
    with pytest.raises(InvalidTransition, match="is cancelled"):
        store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])
    assert store.state(job_id) is JobState.CANCELLED


def test_listing_by_state_newest_first_with_cursor(store: JobStore) -> None:
    ids = [make(store) for _ in range(5)]
    store.transition(ids[0], to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])
    queued, cursor = store.list_jobs(state="queued", limit=3)
    assert len(queued) == 3 and cursor == 3
    rest, cursor = store.list_jobs(state="queued", limit=3, cursor=3)
    assert len(rest) == 1 and cursor is None
    assert {r.job_id for r in queued + rest} == set(ids[1:])
    assert [r.job_id for r in store.list_jobs(state="resolving")[0]] == [ids[0]]


def test_a_lease_is_exclusive_until_released(store: JobStore) -> None:
    job_id = make(store)
    with store.lease(job_id, ttl_seconds=30), pytest.raises(LeaseHeld), store.lease(job_id, ttl_seconds=30):
        pass
    with store.lease(job_id, ttl_seconds=30) as lease:
        assert lease.renew()


def test_invalid_targets_are_refused_with_the_field() -> None:
    with pytest.raises(InvalidRequest, match=r"targets\[1\]: needs an id or a login"):
        build_job(JobRequest(targets=[{"type": "user", "id": "1"}, {"type": "user"}], source="t"))
    with pytest.raises(InvalidRequest, match=r"targets\[0\]\.type"):
        build_job(JobRequest(targets=[{"type": "robot", "id": "1"}], source="t"))
    with pytest.raises(InvalidRequest, match="targets: at least one"):
        build_job(JobRequest(targets=[], source="t"))


def test_listing_by_source_and_by_state_and_source(store: JobStore) -> None:
    def made(source: str) -> str:
        job = build_job(JobRequest(targets=[{"type": "user", "id": "1"}], source=source))
        store.create(job)
        return job.job_id

    splunk_a, okta, splunk_b = made("splunk"), made("okta"), made("splunk")
    store.transition(splunk_a, to=JobState.CANCELLED, allowed_from=[JobState.QUEUED])
    assert [r.job_id for r in store.list_jobs(source="splunk")[0]] == [splunk_b, splunk_a]
    assert [r.job_id for r in store.list_jobs(state="queued", source="splunk")[0]] == [splunk_b]
    assert [r.job_id for r in store.list_jobs(state="queued", source="okta")[0]] == [okta]
    page, cursor = store.list_jobs(source="splunk", limit=1)
    assert [r.job_id for r in page] == [splunk_b] and cursor == 1


def test_a_target_with_both_id_and_login_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="gives both id and login; give one"):
        build_job(JobRequest(targets=[{"type": "user", "id": "2", "login": "someone@example.com"}], source="t"))


def test_a_claim_whose_job_was_never_created_is_taken_over(store: JobStore) -> None:
    from worker.jobs.idempotency import IdempotencyKeys
    from worker.jobs.submit import submit

    keys = IdempotencyKeys(store.redis, key_prefix="t:", ttl_seconds=60)
    keys.claim(source="test", event_key="evt-1", job_id="j-0000000000000000")  # its submitter died here
    job = build_job(JobRequest(targets=[{"type": "user", "id": "1"}], source="test"))
    made = submit(store=store, enqueue=lambda _: None, job=job, keys=keys, key="evt-1")
    assert made.job_id == job.job_id and not made.duplicate and store.exists(job.job_id)
    again = build_job(JobRequest(targets=[{"type": "user", "id": "1"}], source="test"))
    assert submit(store=store, enqueue=lambda _: None, job=again, keys=keys, key="evt-1").job_id == job.job_id
