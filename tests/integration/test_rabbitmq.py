"""RabbitMQ as the broker (BOXCUT_BROKER_URL=amqp://…): a signed alert ends accepted through the intake and a
worker exactly as with Redis; job records, the rate limit and the send queue stay in Redis."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import post_signed, running_stack
from tests.integration.test_intake_e2e import SAMPLES, SECRET
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration


def _rabbitmqctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("no rabbitmqctl: run scripts/ensure-rabbitmq (make test does)")
    return subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A vhost of this test's own on the local RabbitMQ, deleted afterwards."""
    vhost = f"boxcut-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


def test_a_signed_alert_ends_accepted_with_rabbitmq_as_the_broker(redis_url: str, rabbitmq_url: str,
                                                                   tmp_path: Path) -> None:
    env = {"BOXCUT_BROKER_URL": rabbitmq_url, "BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_SWEEP_SECONDS": "1"}
    vhost = rabbitmq_url.rsplit("/", 1)[1]
    with running_stack(redis_url, tmp_path, extra_env=env) as stack:
        url = stack.start_intake()
        answer = post_signed(f"{url}/v1/alerts/panther", SECRET, json.loads((SAMPLES / "panther.json").read_text()))
        assert answer.status_code == 202, answer.text
        job = stack.wait(answer.json()["job_id"])
        time.sleep(1)
        queues = _rabbitmqctl("list_queues", "-p", vhost, "name", "--quiet")
        redis_queue = stack.store().redis.exists(f"{stack.key_prefix}boxcut")
        terminate_calls = len(stack.terminate_requests())
    assert job.state is JobState.SUCCEEDED and terminate_calls == 1
    assert {"boxcut", "boxcut.send"} <= set(queues.split()), queues  # the tasks went through RabbitMQ
    assert not redis_queue
