"""Drill: Redis (a private redis-server with AOF) shuts down cleanly, or is SIGKILLed, mid-work and comes back 3 s
later, or 30 s later; the worker lives through it and every job ends."""

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


@pytest.mark.parametrize(("stop", "down_seconds"), [("shutdown", 3), ("kill", 3), ("shutdown", 30)])
def test_a_redis_restart_mid_work_leaves_the_worker_running_and_every_job_ends(stop: str, down_seconds: float,
                                                                              tmp_path: Path) -> None:
    # SIGKILL keeps only what the AOF had synced: with `appendfsync everysec` (as docs/reliability.md advises) up to a
    # second of writes. With `always` nothing written is lost, and the records must then count every request Box saw.
    private_redis = PrivateRedis(tmp_path, fsync="everysec" if stop == "shutdown" else "always")
    private_redis.start()
    try:
        _restart_mid_work(private_redis, tmp_path, stop, down_seconds)
    finally:
        private_redis.shutdown()


def _restart_mid_work(private_redis: PrivateRedis, tmp_path: Path, stop: str, down_seconds: float) -> None:
    # A claim of 15 s (over one call's worst case here: 5 s of retries, 2 s to connect, 2 s to read).
    env = {"BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1", "BOXCUT_CALL_CLAIM_SECONDS": "15"}
    with running_stack(private_redis.url, tmp_path, sim_config=SimConfig(port=0, generate_users=40),
                       extra_env=env) as stack:
        # Slow calls (under the 2 s read timeout, so Box answers every request it is sent) keep one in flight.
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 1500}])
        job_ids = [stack.submit([{"type": "user", "login": f"user{n:05d}@example.com"}]) for n in range(1, 41)]
        deadline = time.monotonic() + 60
        while not stack.terminate_requests():
            assert time.monotonic() < deadline, "no terminate call before the restart"
            time.sleep(0.05)
        private_redis.shutdown() if stop == "shutdown" else private_redis.kill()
        time.sleep(down_seconds)
        private_redis.start()
        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        worker_alive = stack.workers[0].proc.poll() is None
        logs = stack.worker_logs()
        accepted_per_user = stack.sim.terminated_user_ids()
        requests_seen = stack.terminate_requests()
    states = Counter(j.state for j in jobs)
    print(f"after a Redis restart ({stop}, down {down_seconds} s): {dict(states)}; worker alive: {worker_alive}; "
          f"Box accepted each user {sorted(set(accepted_per_user.values()))} time(s), in {len(requests_seen)} requests")
    assert worker_alive and "Unrecoverable error" not in logs
    assert states == {JobState.SUCCEEDED: 40}
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs for t in j.targets)
    assert len(accepted_per_user) == 40
    # A call Box answered while Redis was down is sent again (Celery cancels a task when the broker connection
    # drops, and the sender with it); the record counts every request Box saw, the lost answer's included.
    calls = {c.call_id: c for j in jobs for c in j.calls}
    assert sum(c.attempts for c in calls.values()) == len(requests_seen)
