"""Drill: Box answers a storm of 429s (`retry-after: 2`) while three worker processes send an alert storm; every
worker pauses on Box's word, not just the one that heard it, and every job ends accepted, each user once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.drills.private_redis import PrivateRedis
from tests.drills.storm import submit_one_job_per_user, three_workers
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
JOBS, REFUSALS, RETRY_AFTER = 60, 6, 2.0
# A request already on its way when another worker heard the 429 may still arrive this soon after it.
IN_FLIGHT_SLACK_SECONDS = 0.5


def test_a_429_storm_pauses_every_worker_and_every_job_ends_accepted(private_redis: PrivateRedis,
                                                                     tmp_path: Path) -> None:
    with three_workers(private_redis.url, tmp_path, users=JOBS) as (stack, workers):
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": REFUSALS, "status": 429,
                               "headers": {"retry-after": f"{RETRY_AFTER:.0f}"}}])
        job_ids = submit_one_job_per_user(stack, JOBS)
        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        alive = [w.proc.poll() is None for w in workers]
        requests_seen = stack.terminate_requests()
        accepted_per_user = stack.sim.terminated_user_ids()
        senders = Counter(w.log_path.name for w in workers if "POST /users/terminate_sessions" in
                          w.log_path.read_text(errors="replace"))
    refusals = [r["time"] for r in requests_seen if r["status"] == 429]
    early = [r for r in requests_seen for t in refusals
             if t + IN_FLIGHT_SLACK_SECONDS < r["time"] < t + RETRY_AFTER - 0.05]
    states = Counter(j.state for j in jobs)
    print(f"429 storm across 3 workers: {len(refusals)} refusals, {len(requests_seen)} requests, "
          f"{len(early)} sent inside a pause; {dict(states)}; workers alive {alive}")
    assert len(refusals) == REFUSALS
    assert early == []  # no worker sent into a pause Box asked for
    assert all(alive) and states == {JobState.SUCCEEDED: JOBS}
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs for t in j.targets)
    assert len(accepted_per_user) == JOBS and set(accepted_per_user.values()) == {1}
    assert len(senders) >= 2  # the work was spread: more than one worker sent
