"""Logs for a SIEM: a worker and the intake off a terminal write JSON lines; a job's lines carry its ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.harness import running_stack
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration

USERS = "/2.0/users/terminate_sessions"
# Celery writes these to the terminal itself, not through logging, as a worker stops.
NOT_LOGGED = ("worker: Warm shutdown", "worker: Cold shutdown")


def _records(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(NOT_LOGGED)]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_a_jobs_lines_are_json_and_carry_its_ids_and_box_errors_are_warnings(redis_url: str, tmp_path: Path) -> None:
    env = {"BOXCUT_OPERATOR_TOKENS": "json-logs-operator", "BOXCUT_INTAKE_TOKENS": "json-logs-intake"}
    with running_stack(redis_url, tmp_path, extra_env=env) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "status": 503}])
        job_id = stack.submit([{"type": "user", "login": "jdoe@example.com"}])
        job = stack.wait(job_id)
        intake = stack.start_intake()
        assert requests.get(f"{intake}/v1/jobs/{job_id}", timeout=10,
                            headers={"Authorization": "Bearer json-logs-operator"}).status_code == 200
        worker = _records(stack.worker_logs())
        served = _records("".join(p.log_path.read_text(errors="replace") for p in stack.servers))
    assert job.state is JobState.SUCCEEDED
    assert all({"time", "level", "logger", "message"} <= set(r) for r in worker + served)
    about = [r for r in worker if job_id in r["message"]]
    assert about and all(r.get("job_id") == job_id for r in about if r["logger"].startswith(("worker", "tasks")))
    ran = [r for r in worker if r.get("job_id") == job_id and r.get("task") == "boxcut.run_job"]
    assert ran and all(r.get("task_id") for r in ran)
    box_lines = [r for r in ran if r["logger"] == "worker.box.client"]  # inside the run, once the job is loaded
    assert box_lines and all(r.get("source") == "test" for r in box_lines)
    call_id = job.calls[0].call_id
    retried = [r for r in worker if r["message"].startswith("retrying Box call")]
    assert retried and all(r["level"] == "WARNING" and r.get("call_id") == call_id for r in retried)
    assert any(r["logger"].startswith("uvicorn") for r in served)  # uvicorn's own lines are JSON too
