"""A job whose task was lost (deleted from the queue by hand) is finished by the sweeper."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.integration.harness import REPO, running_stack
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration


def test_a_job_whose_task_was_deleted_from_the_queue_is_finished_by_the_sweeper(redis_url: str,
                                                                                tmp_path: Path) -> None:
    env = {"BOXCUT_STALE_JOB_SECONDS": "2", "BOXCUT_SWEEP_SECONDS": "1"}
    with running_stack(redis_url, tmp_path, extra_env=env, worker=False) as stack:
        job_id = stack.submit([{"type": "user", "login": "jdoe@example.com"}])
        client = redis.Redis.from_url(redis_url)
        assert client.delete(f"{stack.key_prefix}boxcut") == 1  # the task is gone; the record says queued
        time.sleep(2.5)
        swept = subprocess.run([sys.executable, "-m", "worker.cli", "sweep"], env=stack.env, cwd=REPO,
                               capture_output=True, text=True, timeout=60)
        assert swept.returncode == 0, swept.stderr
        assert swept.stdout.startswith("enqueued again: 1 idle jobs"), swept.stdout
        stack.start_worker()
        job = stack.wait(job_id, timeout=60)
        audit = [e["event"] for e in stack.store().audit_entries(job_id=job_id)]
    assert job.state is JobState.SUCCEEDED and "requeued" in audit


def test_boxcut_beat_beside_a_worker_without_beat_runs_the_sweep_that_finishes_a_stranded_job(
        redis_url: str, tmp_path: Path) -> None:
    env = {"BOXCUT_STALE_JOB_SECONDS": "2", "BOXCUT_SWEEP_SECONDS": "1"}
    with running_stack(redis_url, tmp_path, extra_env=env, worker=False) as stack:
        job_id = stack.submit([{"type": "user", "login": "jdoe@example.com"}])
        assert redis.Redis.from_url(redis_url).delete(f"{stack.key_prefix}boxcut") == 1  # the task is gone
        stack.start_worker(beat=False)
        time.sleep(4)
        assert stack.store().load(job_id).state is JobState.QUEUED  # no beat: nobody notices
        beat = stack.start_service("beat", ready="beat: Starting")
        job = stack.wait(job_id, timeout=60)
        audit = [e["event"] for e in stack.store().audit_entries(job_id=job_id)]
        doctor = subprocess.run([sys.executable, "-m", "worker.cli", "doctor"], env=stack.env, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        beat_alive = beat.proc.poll() is None
    assert job.state is JobState.SUCCEEDED and "requeued" in audit and beat_alive
    assert "ok   beat: the periodic sweep ran" in doctor.stdout, doctor.stdout


def test_an_operator_retry_puts_a_job_that_lost_its_task_back_on_the_queue(redis_url: str, tmp_path: Path) -> None:
    env = {"BOXCUT_STALE_JOB_SECONDS": "3600"}  # the sweep would wait an hour: the operator does not
    with running_stack(redis_url, tmp_path, extra_env=env, worker=False) as stack:
        job_id = stack.submit([{"type": "user", "login": "jdoe@example.com"}])
        assert redis.Redis.from_url(redis_url).delete(f"{stack.key_prefix}boxcut") == 1  # the task is gone
        retried = subprocess.run([sys.executable, "-m", "worker.cli", "retry", job_id], env=stack.env, cwd=REPO,
                                 capture_output=True, text=True, timeout=60)
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.strip() == f"enqueued {job_id} again (1 targets pending)"
        stack.start_worker()
        job = stack.wait(job_id, timeout=60)
    assert job.state is JobState.SUCCEEDED
