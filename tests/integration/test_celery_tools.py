"""Celery as operators know it: `celery -A tasks inspect ping` finds boxcut's workers, and they send task events."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.integration.harness import REPO, free_port, running_stack, until

pytestmark = pytest.mark.integration

ERRORS = (requests.RequestException, ValueError)  # Flower starting, or answering its login page
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


def test_flower_shows_boxcuts_workers_and_tasks(redis_url: str, tmp_path: Path) -> None:
    """The compose stack's `flower` service command, run here: Flower sees the worker and the job's task."""
    port = free_port()
    with running_stack(redis_url, tmp_path) as stack:
        log = (tmp_path / "flower.log").open("wb")
        flower = subprocess.Popen([CELERY, "-A", "tasks", "flower", f"--port={port}", "--address=127.0.0.1"],
                                  env={**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"}, cwd=tmp_path,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            until(lambda: requests.get(f"{base}/healthcheck", timeout=2).text == "OK", "Flower answering",
                  timeout=45, ignoring=ERRORS)
            until(lambda: bool(requests.get(f"{base}/api/workers", timeout=10).json()), "Flower seeing a worker",
                  timeout=45, ignoring=ERRORS)
            job_id = stack.submit([{"type": "user", "login": "jdoe@example.com"}])
            assert stack.wait(job_id).state.value == "succeeded"
            until(lambda: any(t["name"] == "boxcut.run_job" and job_id in t["args"] and t["state"] == "SUCCESS"
                               for t in requests.get(f"{base}/api/tasks", timeout=10).json().values()),
                   "Flower showing the job's task as succeeded", timeout=45, ignoring=ERRORS)
            assert requests.get(f"{base}/tasks", timeout=10).status_code == 200  # the page an operator opens
        finally:
            flower.terminate()
            flower.wait(timeout=30)

