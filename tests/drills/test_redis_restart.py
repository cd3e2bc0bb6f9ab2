"""Drill: Redis (a private redis-server with AOF) shuts down mid-work and comes back 3 s later; the worker lives
through it and every job ends."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from boxsim import SimConfig
from tests.integration.harness import free_port, running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"


class PrivateRedis:
    """A redis-server of this drill's own, on its own port, with AOF in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.port, self.directory = free_port(), directory
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed (scripts/ensure-redis-server installs it)"
        subprocess.run([server, "--port", str(self.port), "--dir", str(self.directory), "--appendonly", "yes",
                        "--appendfsync", "everysec", "--save", "", "--daemonize", "yes"], check=True)
        deadline = time.monotonic() + 10
        while not self._answers():
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)

    def shutdown(self) -> None:
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it goes
            redis.Redis(port=self.port).shutdown()  # a clean SHUTDOWN: the AOF is flushed

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.shutdown()


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
