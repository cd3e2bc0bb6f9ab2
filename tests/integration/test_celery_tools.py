"""Celery as operators know it: `celery -A tasks inspect ping` finds boxcut's workers, and they send task events."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import REPO, running_stack

pytestmark = pytest.mark.integration

CELERY = str(Path(REPO, ".venv", "bin", "celery"))


def test_celery_inspect_ping_answers_and_the_workers_send_task_events(redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path) as stack:
        ping = subprocess.run([CELERY, "-A", "tasks", "inspect", "ping", "--timeout", "5"], env=stack.env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr

        events = subprocess.Popen([CELERY, "-A", "tasks", "events", "--dump"], env=stack.env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(3)  # subscribed
            job_id = stack.submit([{"type": "user", "login": "jdoe@example.com"}])
            job = stack.wait(job_id)
            time.sleep(2)
        finally:
            events.terminate()
        dumped = events.communicate(timeout=30)[0]
    assert job.state.value == "succeeded"
    assert "task succeeded: boxcut.run_job" in dumped and f"args=['{job_id}']" in dumped, dumped[-2000:]
