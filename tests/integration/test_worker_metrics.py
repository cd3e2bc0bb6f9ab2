"""`boxcut worker --metrics-port`: after a job, the worker's /metrics shows its Box calls, its final state and
the submission-to-accepted histogram, summed over the pool processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import free_port, running_stack
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration

USERS = "/2.0/users/terminate_sessions"


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_workers_metrics_count_its_box_calls_outcomes_and_time_to_accepted(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    with running_stack(redis_url, tmp_path, worker=False) as stack:
        stack.start_service("worker", "--concurrency", "2", "--metrics-port", str(port), "--no-beat", ready="ready.")
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "status": 503}])
        jobs = [stack.wait(stack.submit([{"type": "user", "login": login}]))
                for login in ("jdoe@example.com", "rroe@example.com")]
        time.sleep(0.5)
        samples = _samples(f"http://127.0.0.1:{port}/metrics")
    assert {j.state for j in jobs} == {JobState.SUCCEEDED}
    terminate = "/users/terminate_sessions"
    assert samples[("boxcut_box_calls_total", (("endpoint", terminate), ("status", "202")))] == 2
    assert samples[("boxcut_box_calls_total", (("endpoint", terminate), ("status", "503")))] == 1
    assert samples[("boxcut_box_retries_total", (("endpoint", terminate),))] == 1
    assert samples[("boxcut_jobs_finished_total", (("state", "succeeded"),))] == 2
    assert samples[("boxcut_submitted_to_accepted_seconds_count", ())] == 2
    assert samples[("boxcut_submitted_to_accepted_seconds_sum", ())] > 0
    assert samples[("boxcut_calls_in_flight", (("endpoint", terminate),))] == 0
    assert samples[("boxcut_targets_waiting", (("endpoint", terminate),))] == 0
    # Redis's headroom, read at scrape time (tests/integration/test_headroom.py tests the numbers).
    assert samples[("boxcut_redis_used_bytes", ())] > 0 and ("boxcut_redis_days_left", ()) in samples
    assert samples[("boxcut_job_redis_bytes", ())] > 0 and samples[("boxcut_jobs_per_day", ())] > 0
    in_redis = samples[("boxcut_jobs_in_redis", (("form", "working"),))] + samples[("boxcut_jobs_in_redis",
                                                                                    (("form", "hot"),))]
    assert in_redis == 2 and ("boxcut_jobs_waiting_to_settle", ()) in samples
