"""Drill: Box answers 503 to every terminate call for two whole rounds of retries; the job waits it out, says so
in its record, and ends accepted, not dead."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.integration.harness import running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"


def test_a_box_outage_of_two_rounds_ends_accepted_and_the_record_said_it_waited(redis_url: str,
                                                                              tmp_path: Path) -> None:
    env = {"BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1", "BOXCUT_MAX_CALLS_PER_BATCH": "3"}
    with running_stack(redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=5), extra_env=env) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 6, "status": 503}])  # two rounds of 3
        job_id = stack.submit([{"type": "user", "login": f"user{n:05d}@example.com"} for n in range(1, 6)])
        store, seen_waiting, deadline = stack.store(), None, time.monotonic() + 120
        while not store.load(job_id).state.is_final:
            assert time.monotonic() < deadline, store.load(job_id).to_dict()
            seen_waiting = seen_waiting or store.load(job_id).waiting
            time.sleep(0.05)
        job = store.load(job_id)
        requests_seen = [r["status"] for r in stack.terminate_requests()]
    print(f"Box outage: requests {requests_seen}; waiting seen: {seen_waiting}")
    assert job.state is JobState.SUCCEEDED and {t.status for t in job.targets} == {TargetStatus.ACCEPTED}
    assert requests_seen == [503] * 6 + [202] and job.calls[0].attempts == 7 and job.waiting is None
    assert seen_waiting is not None and "503" in seen_waiting["reason"] and seen_waiting["next_attempt_at"]
