"""The sweeper gives an idle job its task again: once per stale period, never while a run holds it."""

from __future__ import annotations

import time

from tests.unit.fake_box import new_job, users
from worker.jobs.model import Approval, JobState
from worker.jobs.store import JobStore
from worker.run.sweeper import requeue_stranded


def test_an_idle_queued_or_resolving_job_is_enqueued_again_once_per_stale_period(store: JobStore) -> None:
    queued, resolving, fresh_job = (new_job(store, users("a@example.com")) for _ in range(3))
    store.transition(resolving, to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])
    enqueued: list[str] = []
    later = time.time() + 600

    def sweep(at: float) -> list[str]:
        return requeue_stranded(store, enqueued.append, stale_seconds=120, now=lambda: at)

    assert sweep(time.time()) == []  # nothing has been idle for 120 s yet
    with store.lease(fresh_job, ttl_seconds=3600):  # a run holds this one: it is moving
        assert sorted(sweep(later)) == sorted([queued, resolving])
    assert sorted(enqueued) == sorted([queued, resolving])
    assert sweep(later) == [fresh_job]  # its run let go: idle now too; the others were just enqueued
    assert sweep(later + 60) == []  # within the period: not again
    assert sorted(sweep(later + 121)) == sorted([queued, resolving, fresh_job])
    audit = [e for e in store.audit_entries(job_id=queued) if e["event"] == "requeued"]
    assert len(audit) == 2 and "enqueued again" in audit[0]["data"]["why"]


def test_jobs_awaiting_approval_or_final_are_left_alone(store: JobStore) -> None:
    waiting, done = new_job(store, users("a@example.com")), new_job(store, users("b@example.com"))
    store.transition(waiting, to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])
    store.transition(waiting, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.RESOLVING],
                     fields=store.approval_fields(Approval.needed(["too many"])))
    store.transition(done, to=JobState.CANCELLED, allowed_from=[JobState.QUEUED])
    assert requeue_stranded(store, lambda _j: None, stale_seconds=1, now=lambda: time.time() + 600) == []
