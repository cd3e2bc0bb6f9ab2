"""Drill: Box expires every access token while three worker processes send an alert storm; each 401 drops the
shared token, one new token serves every worker, and every job ends accepted, each user once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.drills.private_redis import PrivateRedis
from tests.drills.storm import submit_one_job_per_user, three_workers
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
JOBS = 60


def test_tokens_expired_mid_storm_are_renewed_once_for_every_worker(private_redis: PrivateRedis,
                                                                   tmp_path: Path) -> None:
    with three_workers(private_redis.url, tmp_path, users=JOBS) as (stack, workers):
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 200}])
        job_ids = submit_one_job_per_user(stack, JOBS)
        deadline = time.monotonic() + 60
        while len(stack.terminate_requests()) < 2:
            assert time.monotonic() < deadline, "no terminate calls before the tokens expired"
            time.sleep(0.02)
        tokens_before = len(stack.sim.requests(path="/oauth2/token"))
        expired = stack.sim.expire_tokens()
        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        alive = [w.proc.poll() is None for w in workers]
        requests_seen = stack.terminate_requests()
        tokens_after = len(stack.sim.requests(path="/oauth2/token")) - tokens_before
        accepted_per_user = stack.sim.terminated_user_ids()
    refused = [r for r in requests_seen if r["status"] == 401]
    states = Counter(j.state for j in jobs)
    print(f"token expiry across 3 workers: {expired} tokens expired, {len(refused)} calls answered 401, "
          f"{tokens_after} new token requests; {dict(states)}; workers alive {alive}")
    assert expired >= 1 and refused  # the expiry was met mid-storm
    assert 1 <= tokens_after <= 2  # one refresh for all (a second only if a worker's 401 raced the new token)
    assert all(alive) and states == {JobState.SUCCEEDED: JOBS}
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs for t in j.targets)
    assert len(accepted_per_user) == JOBS and set(accepted_per_user.values()) == {1}
