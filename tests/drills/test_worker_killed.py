"""Drill: a worker is SIGKILLed in the middle of a 500-user job; a new worker finishes it exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.integration.harness import running_stack
from worker.jobs.model import CallState, JobState, TargetStatus
from worker.jobs.send_queue import SendQueue

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"


def test_worker_killed_mid_job_loses_nothing_and_records_no_batch_twice(redis_url: str, tmp_path: Path) -> None:
    sim_config = SimConfig(port=0, generate_users=500)
    env = {"BOXCUT_APPROVAL_THRESHOLD": "1000",  # this drill is about redelivery, not approval
           # Timings shortened for the drill: a dead sender's call is taken again 10 s after it was taken.
           "BOXCUT_CALL_CLAIM_SECONDS": "10", "BOXCUT_RETRY_BUDGET_SECONDS": "2", "BOXCUT_HTTP_READ_TIMEOUT": "5",
           "BOXCUT_HTTP_CONNECT_TIMEOUT": "2",
           "BOXCUT_SWEEP_SECONDS": "1"}
    with running_stack(redis_url, tmp_path, sim_config=sim_config, extra_env=env, worker=False) as stack:
        # Every terminate call takes 1.5 s, so the job is still running when the worker dies.
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1000, "latency_ms": 1500}])
        first = stack.start_worker()
        logins = [f"user{i:05d}@example.com" for i in range(1, 501)]
        job_id = stack.submit([{"type": "user", "login": login} for login in logins])

        deadline = time.monotonic() + 60
        while not any(r["status"] == 202 for r in stack.terminate_requests()):
            assert time.monotonic() < deadline, "the first batch never reached boxsim"
            time.sleep(0.05)
        first.kill()
        killed_at_calls = len(stack.terminate_requests())
        queue = SendQueue(stack.store().redis, key_prefix=stack.key_prefix)
        held = stack.store().redis.zcard(queue.flight_key("/users/terminate_sessions"))  # taken, not answered
        assert stack.store().load(job_id).state is JobState.TERMINATING

        stack.start_worker()
        job = stack.wait(job_id, timeout=120)

        assert job.state is JobState.SUCCEEDED
        assert Counter(t.status for t in job.targets) == {TargetStatus.ACCEPTED: 500}
        answered = [c for c in job.calls if c.state is CallState.ANSWERED]
        assert len(answered) == len(job.calls) == 5
        assert sorted(len(c.ids) for c in job.calls) == [100] * 5
        # No target points to two calls, and no user id was recorded in two calls.
        assert all(len(t.call_ids) == 1 for t in job.targets)
        recorded_ids = [i for c in job.calls for i in c.ids]
        assert len(recorded_ids) == len(set(recorded_ids)) == 500
        # Box saw every id; at most the batches in flight at the kill were sent a second time.
        sent = stack.terminate_requests()
        assert killed_at_calls < 5 <= len(sent) <= 5 + held
