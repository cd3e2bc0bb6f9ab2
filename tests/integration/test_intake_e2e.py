"""End to end over real HTTP: a signed alert posted to `boxcut intake` ends as a Box call, once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.harness import Stack, post_signed, running_stack
from worker.box.answers import TERMINATE_ACCEPTED_MESSAGE
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "siem"
SECRET, OPERATOR = "e2e-hmac-secret", "e2e-operator-token"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_OPERATOR_TOKENS": OPERATOR}
    with running_stack(redis_url, tmp_path_factory.mktemp("intake"), extra_env=env) as running:
        yield running


def test_signed_panther_alert_ends_succeeded_with_one_terminate_call(stack: Stack) -> None:
    url = stack.start_intake()
    payload = json.loads((SAMPLES / "panther.json").read_text())
    answer = post_signed(f"{url}/v1/alerts/panther", SECRET, payload)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = stack.wait(job_id)
    assert job.state is JobState.SUCCEEDED and job.calls[0].message == TERMINATE_ACCEPTED_MESSAGE
    assert job.source == "panther" and job.source_event_id == payload["alertId"]

    again = post_signed(f"{url}/v1/alerts/panther", SECRET, payload)  # the sender retries the delivery
    assert again.status_code == 200 and again.json() == answer.json() | {"duplicate": True, "jobs": [
        answer.json()["jobs"][0] | {"duplicate": True}]}
    time.sleep(1)  # time for a wrongly enqueued second job to reach Box
    assert len(stack.terminate_requests()) == 1

    record = requests.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=10)
    assert record.status_code == 200 and record.json()["calls"][0]["message"] == TERMINATE_ACCEPTED_MESSAGE
    assert requests.get(f"{url}/readyz", timeout=10).json()["checks"] == {"redis": "ok", "broker": "ok"}
