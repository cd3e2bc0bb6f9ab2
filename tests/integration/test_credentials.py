"""Wrong Box credentials are permanent: a job ends `failed` at once naming Box's error, and `boxcut retry` sends it
once the credentials are fixed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.harness import REPO, running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration


def test_a_wrong_client_secret_fails_the_job_within_a_minute_naming_invalid_client(redis_url: str,
                                                                                  tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path) as stack:
        # Revoked once the worker runs (a worker refuses to start with credentials Box refuses: test_fail_fast.py),
        # for every token request until fixed: the worker's other Box calls (the directory refresh) ask for one too.
        stack.sim.add_faults([{"method": "POST", "path": "/oauth2/token", "times": -1, "status": 400,
                               "body": {"error": "invalid_client", "error_description": "The client credentials are "
                                                                                        "invalid"}}])
        stack.sim.expire_tokens()  # the token the worker's processes may hold already is refused: it asks anew
        started = time.monotonic()
        job = stack.wait(stack.submit([{"type": "user", "login": "jdoe@example.com"}]), timeout=60)
        took = time.monotonic() - started
        assert job.state is JobState.FAILED and job.targets[0].status is TargetStatus.FAILED
        assert "invalid_client" in (job.targets[0].detail or ""), job.targets[0].detail
        assert stack.terminate_requests() == []

        stack.workers[0].stop()
        stack.sim.clear_faults()  # fixed: the token endpoint takes the credentials again
        stack.start_worker()
        retry = subprocess.run([sys.executable, "-m", "worker.cli", "retry", job.job_id, "--wait"], env=stack.env,
                               cwd=REPO, capture_output=True, text=True, timeout=120)
        assert retry.returncode == 0, retry.stdout + retry.stderr
        again = stack.wait(job.job_id, timeout=60)
    assert took < 60
    assert again.state is JobState.SUCCEEDED and again.targets[0].status is TargetStatus.ACCEPTED
