"""A job submitted in one step (claim, record and task in one Lua script, `tasks.publishing`) reaches a real prefork
Celery worker on a real Redis exactly as one `send_task` sent: the same message and task-sent event, taken,
run and acknowledged the same way."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from boxsim import SimConfig
from config import load_settings
from tasks.app import build_celery_app, enqueuer
from tasks.publishing import same_redis, task_writes
from tests.integration.harness import Stack, running_stack, until
from worker.connections import redis_client
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import JobState
from worker.jobs.submit import JobRequest, build_job, submit

pytestmark = pytest.mark.integration

# What differs between two messages of one task: their ids, the job id in them, the Lamport clock and time of the
# event.
_PER_MESSAGE = {"id", "root_id", "argsrepr", "correlation_id", "delivery_tag", "uuid", "args", "clock", "timestamp",
                "local_received"}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("one-step"), sim_config=SimConfig(port=0, generate_users=10),
                       worker=False) as running:
        yield running


def _request(login: str) -> JobRequest:
    return JobRequest(targets=[{"type": "user", "login": login}], source="generic", requested_by="pytest")


def _shape(message: Any) -> Any:
    """A message (or event) with its body decoded and what differs from one task to the next left out."""
    if isinstance(message, dict):
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = json.loads(base64.b64decode(message["body"]))
            if isinstance(body, list):  # a task: [args, kwargs, embed], args naming its job
                body = ["args", *body[1:]]
            message = {**message, "body": body}
        return {k: _shape(v) for k, v in message.items() if k not in _PER_MESSAGE}
    if isinstance(message, list):
        return [_shape(v) for v in message]
    return message


def _events(pubsub: redis.client.PubSub, count: int) -> list[tuple[bytes, Any]]:
    """The first `count` events published since `pubsub` subscribed (waiting up to 5 s)."""
    found: list[tuple[bytes, Any]] = []
    deadline = time.monotonic() + 5
    while len(found) < count and time.monotonic() < deadline:
        event = pubsub.get_message(timeout=0.2)
        if event is not None and event["type"] == "pmessage":
            found.append((event["channel"], json.loads(event["data"])))
    return found


def test_a_one_step_job_is_sent_as_send_task_sends_it_and_a_prefork_worker_runs_it(stack: Stack) -> None:
    settings = stack.settings()
    app, client = build_celery_app(settings), redis_client(settings)
    writes = task_writes(app, settings)
    assert writes is not None and same_redis(app, settings)
    store = stack.store()
    keys = IdempotencyKeys(client, key_prefix=settings.key_prefix, ttl_seconds=600)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(f"{settings.key_prefix}*celeryev*")

    sent = submit(store=store, enqueue=enqueuer(app), job=build_job(_request("user00001@example.com")), keys=keys,
                  key="evt-sent")
    one_step = submit(store=store, enqueue=enqueuer(app), job=build_job(_request("user00002@example.com")),
                      keys=keys, key="evt-one-step", task_writes=writes)
    queue = f"{settings.key_prefix}boxcut"
    newest, oldest = (json.loads(m) for m in client.lrange(queue, 0, -1))  # LPUSH: the newest first
    assert _shape(newest) == _shape(oldest)
    assert json.loads(base64.b64decode(newest["body"]))[0] == [one_step.job_id]
    assert newest["headers"]["task"] == "boxcut.run_job" and newest["properties"]["delivery_info"] == {
        "exchange": "", "routing_key": "boxcut"}
    assert newest["headers"]["argsrepr"] == repr([one_step.job_id])
    events = _events(pubsub, 2)
    assert [channel for channel, _ in events] == [f"{settings.key_prefix}/0.celeryev/task.sent".encode()] * 2
    assert _shape(events[0][1]) == _shape(events[1][1])
    assert not store.stranded(one_step.job_id) and not store.stranded(sent.job_id)

    stack.start_worker(concurrency=2)
    for job_id in (sent.job_id, one_step.job_id):
        assert stack.wait(job_id).state is JobState.SUCCEEDED
    assert sorted(i for r in stack.terminate_requests() for i in r["body"]["user_ids"]) == sorted(
        [store.load(sent.job_id).targets[0].user_id, store.load(one_step.job_id).targets[0].user_id])
    until(lambda: client.hlen(f"{settings.key_prefix}unacked") == 0 and client.llen(queue) == 0,
          "both tasks acknowledged (acks_late) and none left in the queue")


def test_a_repeat_in_one_step_gets_the_first_job_and_sends_nothing(stack: Stack) -> None:
    settings = stack.settings()
    app, client = build_celery_app(settings), redis_client(settings)
    keys = IdempotencyKeys(client, key_prefix=settings.key_prefix, ttl_seconds=600)
    writes = task_writes(app, settings)
    first = submit(store=stack.store(), enqueue=enqueuer(app), job=build_job(_request("user00003@example.com")),
                   keys=keys, key="evt-repeat", task_writes=writes)
    again = submit(store=stack.store(), enqueue=enqueuer(app), job=build_job(_request("user00003@example.com")),
                   keys=keys, key="evt-repeat", task_writes=writes)
    assert again.job_id == first.job_id and again.duplicate
    if not stack.workers:
        stack.start_worker(concurrency=1)
    assert stack.wait(first.job_id).state is JobState.SUCCEEDED
    calls = [r for r in stack.terminate_requests() if _user_id(stack, first.job_id) in r["body"]["user_ids"]]
    assert len(calls) == 1


def _user_id(stack: Stack, job_id: str) -> str:
    user = stack.store().load(job_id).targets[0].user_id
    assert user is not None
    return user


def test_rabbitmq_as_the_broker_keeps_the_two_step_path() -> None:
    settings = load_settings({"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0",
                              "BOXCUT_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}, env_file=None)
    assert task_writes(build_celery_app(settings), settings) is None
