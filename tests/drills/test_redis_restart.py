"""Drill: Redis (a private redis-server with AOF) shuts down mid-work and comes back 3 s later; the worker lives
through it and every job ends."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"


def test_a_redis_restart_mid_work_leaves_the_worker_running_and_every_job_ends(private_redis: PrivateRedis,
                                                                              tmp_path: Path) -> None:
    env = {"BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1"}
    with running_stack(private_redis.url, tmp_path, sim_config=SimConfig(port=0, generate_users=40),
                       extra_env=env) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 2000}])
        job_ids = [stack.submit([{"type": "user", "login": f"user{n:05d}@example.com"}]) for n in range(1, 41)]
        deadline = time.monotonic() + 60
        while not stack.terminate_requests():
            assert time.monotonic() < deadline, "no terminate call before the restart"
            time.sleep(0.05)
        private_redis.shutdown()
        time.sleep(3)
        private_redis.start()
        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        worker_alive = stack.workers[0].proc.poll() is None
        logs = stack.worker_logs()
    states = Counter(j.state for j in jobs)
    print(f"after a Redis restart: {dict(states)}; worker alive: {worker_alive}")
    assert worker_alive and "Unrecoverable error" not in logs
    assert states == {JobState.SUCCEEDED: 40}
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs for t in j.targets)
