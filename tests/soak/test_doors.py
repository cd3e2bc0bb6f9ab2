"""The soak's further doors (tests/soak/doors.py), each once against a real stack started as the soak starts it: an
offboarding file Box refuses once, then an operator's retry; a SET; a Box Shield alert on the event stream; and
activity by the user that alert terminated, which the watch records in the alert's job."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import Stack, running_stack, until
from tests.soak.doors import (
    EVENT_STREAM_REQUESTER,
    SHIELD_SOURCE,
    SSF_SOURCE,
    SsfTransmitter,
    activity_jobs,
    doors_env,
    jobs_by_event_id,
    plant_activity,
    plant_shield_alert,
    post_offboarding_file,
    post_set,
    reader_started,
    retry_candidates,
    retry_job,
)
from tests.soak.runner import SOAK_ENV
from tests.soak.workload import OPERATOR_TOKEN, USERS
from tests.ssf_tokens import SESSION_REVOKED
from worker.jobs.model import Job, JobState, TargetStatus

pytestmark = pytest.mark.integration

TERMINATE = "/2.0/users/terminate_sessions"


def test_each_door_makes_its_job_and_the_watch_finds_activity_after_termination(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    transmitter = SsfTransmitter.write(tmp_path / "ssf")
    try:
        with running_stack(redis.url, tmp_path, sim_config=SimConfig(port=0, generate_users=USERS),
                           extra_env={**SOAK_ENV, **doors_env(transmitter)}, worker=False) as stack:
            stack.start_worker(concurrency=2)
            stack.start_worker(concurrency=2, beat=False)
            url, rng, store = stack.start_intake(), random.Random(7), stack.store()
            until(lambda: reader_started(store), "the event-stream reader's first pass", timeout=30)

            # An offboarding file whose first call Box refuses: failed (or partial), then retried to success.
            stack.sim.add_faults([{"method": "POST", "path": TERMINATE, "status": 403, "times": 1}])
            logins = [f"user{n:05d}@example.com" for n in (10, 11, 12, 13)]  # above the threshold: approved
            filed = post_offboarding_file(url, OPERATOR_TOKEN, rng, logins)
            assert filed.status == 202 and filed.job_id, filed
            offboarded = stack.wait(filed.job_id, timeout=30)
            assert offboarded.state in (JobState.FAILED, JobState.PARTIAL), offboarded.to_dict()
            assert offboarded.source == "offboarding" and len(offboarded.targets) == 4
            assert filed.job_id in retry_candidates(store)
            retried = retry_job(url, OPERATOR_TOKEN, filed.job_id)
            assert retried.status == 200 and retried.detail.startswith("retried "), retried
            assert stack.wait(filed.job_id, timeout=30).state is JobState.SUCCEEDED  # resolving again before the 200
            again = retry_job(url, OPERATOR_TOKEN, filed.job_id)
            assert (again.status, again.detail) == (409, "nothing_to_retry"), again

            # A SET: its 202 names no job; its jti finds it.
            pushed = post_set(url, transmitter, rng, "user00020@example.com", event=SESSION_REVOKED)
            assert pushed.status == 202 and pushed.job_id is None and pushed.event_id, pushed
            by_set = _found(stack, SSF_SOURCE, pushed.event_id)
            assert by_set.state is JobState.SUCCEEDED and by_set.targets[0].login == "user00020@example.com"

            # A Box Shield alert the rule table terminates, read from the stream.
            alert = plant_shield_alert(stack.sim, rng, "user00030@example.com", action="terminate")
            shield = _found(stack, SHIELD_SOURCE, alert)
            assert shield.state is JobState.SUCCEEDED and shield.requested_by == EVENT_STREAM_REQUESTER
            assert shield.watch_until is not None and shield.targets[0].status is TargetStatus.ACCEPTED

            # The user that alert terminated acts again: recorded in the alert's job, not a job of its own.
            jobs_before = len(store.list_jobs(limit=1000)[0])
            acted = plant_activity(stack.sim, rng, "user00030@example.com", event_type="LOGIN")
            until(lambda: acted in activity_jobs(stack.history()), "the watch recording the activity", timeout=20)
            assert activity_jobs(stack.history())[acted] == [shield.job_id]
            watched = store.load(shield.job_id)
            assert watched.active_after and [e["event_id"] for e in watched.activity_after[0]] == [acted]
            trail = [e for e in store.audit_entries(job_id=shield.job_id) if e["event"] == "activity_after"]
            assert [e["data"]["event_id"] for e in trail] == [acted]
            assert len(store.list_jobs(limit=1000)[0]) == jobs_before
    finally:
        redis.shutdown()


def _found(stack: Stack, source: str, event_id: str) -> Job:
    """The job of `source` that `event_id` made, once it is final or waits for approval."""
    history, known = stack.history(), {}
    until(lambda: event_id in jobs_by_event_id(history, source, known), f"a {source} job for {event_id}",
          timeout=20)
    return stack.wait(jobs_by_event_id(history, source, known)[event_id], timeout=30)
