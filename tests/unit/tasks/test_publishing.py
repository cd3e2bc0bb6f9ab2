"""Which brokers the intake's one-step submission is for (`tasks.publishing`): the Redis of the records, behind
Sentinels too; never RabbitMQ. (That its commands are exactly kombu's, and that a prefork worker runs the task,
is tests/integration/test_one_step_enqueue.py, on a real Redis.)"""

from __future__ import annotations

import pytest

from config import load_settings
from tasks.app import build_celery_app
from tasks.publishing import _KeyPrefix, same_redis, task_writes


@pytest.mark.parametrize("env", [
    {"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/3"},
    {"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/3", "BOXCUT_BROKER_URL": "redis://127.0.0.1:1/3"},
    {"BOXCUT_REDIS_URL": "redis+sentinel://127.0.0.1:1,127.0.0.1:2/boxcut/2"},
])
def test_a_broker_on_the_records_redis_is_written_in_one_step(env: dict[str, str]) -> None:
    settings = load_settings(env, env_file=None)
    app = build_celery_app(settings)
    assert same_redis(app, settings) and task_writes(app, settings) is not None  # made lazily: nothing connects


def test_rabbitmq_keeps_the_two_step_path() -> None:
    settings = load_settings({"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0",
                              "BOXCUT_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}, env_file=None)
    app = build_celery_app(settings)
    assert not same_redis(app, settings) and task_writes(app, settings) is None


def test_the_key_prefix_goes_where_kombus_client_puts_it() -> None:
    prefix = _KeyPrefix("p:")
    assert prefix.command("lpush", ("boxcut", "{}")) == ("LPUSH", "p:boxcut", "{}")
    assert prefix.command("publish", ("/0.celeryev/task.sent", "{}")) == ("PUBLISH", "p:/0.celeryev/task.sent", "{}")
    assert prefix.command("pexpire", ("boxcut", 5000)) == ("PEXPIRE", "p:boxcut", "5000")
