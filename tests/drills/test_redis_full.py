"""Drill: Redis (a private redis-server, `noeviction`) becomes full mid-work and is freed 5 s later.

While it is full the worker lives, the intake answers 503 JSON with Retry-After, `/readyz` says 503, the job
records stay readable and the CLI prints one line; once it is freed every job that was answered 202 ends, with
every target accepted by exactly one terminate call."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from boxsim import SimConfig
from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import REPO, post_signed, running_stack
from tests.integration.test_intake_e2e import OPERATOR, SECRET
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
JOBS = 40
FULL_SECONDS = 5


def test_a_full_redis_leaves_the_worker_running_and_every_job_ends_once_freed(private_redis: PrivateRedis,
                                                                              tmp_path: Path) -> None:
    env = {"BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1", "BOXCUT_STALE_JOB_SECONDS": "5",
           "BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_OPERATOR_TOKENS": OPERATOR}
    with running_stack(private_redis.url, tmp_path, sim_config=SimConfig(port=0, generate_users=JOBS),
                       extra_env=env, concurrency=3) as stack:
        intake = stack.start_intake()
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 1500}])
        job_ids = [stack.submit([{"type": "user", "login": f"user{n:05d}@example.com"}]) for n in range(1, JOBS + 1)]
        deadline = time.monotonic() + 60
        while not stack.terminate_requests():
            assert time.monotonic() < deadline, "no terminate call before Redis filled"
            time.sleep(0.05)

        ballast = private_redis.fill()
        assert private_redis.refuses_writes()
        readyz = requests.get(f"{intake}/readyz", timeout=10)
        submitted = post_signed(f"{intake}/v1/alerts", SECRET, {
            "source_event_id": "drill-full-1", "reason": "drill",
            "targets": [{"type": "user", "login": "user00001@example.com"}]})
        record = requests.get(f"{intake}/v1/jobs/{job_ids[0]}", headers={"Authorization": f"Bearer {OPERATOR}"},
                              timeout=10)
        cli = subprocess.run([sys.executable, "-m", "worker.cli", "terminate", "--user", "user00001@example.com"],
                             env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=60)
        listed = subprocess.run([sys.executable, "-m", "worker.cli", "jobs"], env=stack.env, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        expired = subprocess.run([sys.executable, "-m", "worker.cli", "expire"], env=stack.env, cwd=REPO,
                                 capture_output=True, text=True, timeout=60)
        time.sleep(FULL_SECONDS)
        private_redis.free()

        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        workers_alive = all(w.proc.poll() is None for w in stack.workers)
        logs = stack.worker_logs()
        accepted_per_user = stack.sim.terminated_user_ids()
    states = Counter(j.state for j in jobs)
    print(f"Redis full for {FULL_SECONDS} s ({ballast} ballast keys): {dict(states)}; workers alive: "
          f"{workers_alive}; readyz {readyz.status_code}; submit {submitted.status_code}; read "
          f"{record.status_code}; cli exit {cli.returncode}: {cli.stderr.strip()!r}; Box accepted each user "
          f"{sorted(set(accepted_per_user.values()))} time(s)")
    assert workers_alive and "Unrecoverable error" not in logs
    assert readyz.status_code == 503
    assert submitted.status_code == 503 and submitted.headers.get("Retry-After")
    assert submitted.json()["error"]["code"] == "unavailable"
    assert record.status_code == 200 and record.json()["job_id"] == job_ids[0]
    assert listed.returncode == 0 and job_ids[0] in listed.stdout  # reads work while Redis is full
    assert expired.returncode == 0 and expired.stdout.startswith("retention 400 days"), expired.stderr  # no MULTI
    assert cli.returncode == 69 and len(cli.stderr.strip().splitlines()) == 1 and "Traceback" not in cli.stderr
    assert states == {JobState.SUCCEEDED: JOBS}
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs for t in j.targets)
    assert len(accepted_per_user) == JOBS and set(accepted_per_user.values()) == {1}  # no call answered twice
