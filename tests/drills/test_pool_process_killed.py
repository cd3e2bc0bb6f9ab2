"""Drill: every pool process of a worker is SIGKILLed mid-job (the worker's main process lives); the pool is
replaced, the lost tasks run again within seconds, and the job ends accepted with every request Box saw
recorded."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.drills.private_redis import PrivateRedis
from tests.drills.processes import pool_processes
from tests.integration.harness import running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
TARGETS = 500


def test_pool_processes_killed_mid_job_are_replaced_and_the_job_ends_accepted(private_redis: PrivateRedis,
                                                                             tmp_path: Path) -> None:
    env = {"BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1", "BOXCUT_CALL_CLAIM_SECONDS": "10",
           "BOXCUT_RETRY_BUDGET_SECONDS": "2", "BOXCUT_HTTP_READ_TIMEOUT": "5", "BOXCUT_HTTP_CONNECT_TIMEOUT": "2"}
    with running_stack(private_redis.url, tmp_path, sim_config=SimConfig(port=0, generate_users=TARGETS),
                       extra_env=env, worker=False) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 1500}])
        worker = stack.start_worker(concurrency=2)
        job_id = stack.submit([{"type": "user", "login": f"user{n:05d}@example.com"} for n in range(1, TARGETS + 1)])
        deadline = time.monotonic() + 60
        while not any(r["status"] == 202 for r in stack.terminate_requests()):
            assert time.monotonic() < deadline, "the first batch never reached boxsim"
            time.sleep(0.05)
        pool = pool_processes(worker.proc.pid)
        assert pool, "no pool process found"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        job = stack.wait(job_id, timeout=120)
        requests_seen = stack.terminate_requests()
        main_alive = worker.proc.poll() is None
        replaced = [p for p in pool_processes(worker.proc.pid) if p not in pool]
    resumed_after = min(r["time"] for r in requests_seen if r["time"] > killed_at) - killed_at
    calls = {c.call_id: c for c in job.calls}
    print(f"{len(pool)} pool processes killed: {len(replaced)} new ones, main alive {main_alive}; first call "
          f"after the kill {resumed_after:.1f} s later; {len(requests_seen)} requests for "
          f"{len(calls)} calls; {job.state.value}")
    assert main_alive and len(replaced) >= 1
    assert job.state is JobState.SUCCEEDED
    assert Counter(t.status for t in job.targets) == {TargetStatus.ACCEPTED: TARGETS}
    # Every request Box saw is recorded. A request is written down before it leaves, so a process killed between
    # the two counts one Box never saw: at most one per call it had in flight (BOXCUT_MAX_IN_FLIGHT threads).
    over = sum(c.attempts for c in calls.values()) - len(requests_seen)
    assert 0 <= over <= len(pool) * 4
    assert resumed_after < 30  # seconds, not Celery's 180 s retry delay nor the visibility timeout
