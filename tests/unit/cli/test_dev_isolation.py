"""`boxcut dev` touches nothing but itself: two dev stacks on one Redis share no key and no Celery queue, a
production stack on a Redis that `.env` names never sees a dev worker's queue, and a chosen prefix is kept."""

from __future__ import annotations

import fakeredis

from config import load_settings
from config.celery_settings import celery_config
from worker.cli.commands import _sample_command
from worker.cli.dev_stack import DevStack, forget_keys
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job

SHARED = {"BOXCUT_REDIS_URL": "redis://10.0.0.5:6379/0"}


def _isolated(env: dict[str, str]) -> DevStack:
    stack = DevStack(load_settings(env, env_file=None), env=dict(env))
    stack.isolate()
    return stack


def _prefix_of_broker(stack: DevStack) -> str:
    """The prefix kombu puts on the queues of a worker started with the stack's environment."""
    worker_settings = load_settings(stack.env, env_file=None)
    assert worker_settings.broker_is_redis
    return str(celery_config(worker_settings)["broker_transport_options"]["global_keyprefix"])


def test_two_dev_stacks_on_one_redis_share_no_keys_and_no_queues() -> None:
    first, second = _isolated(SHARED), _isolated(SHARED)
    production = load_settings(SHARED, env_file=None)
    prefixes = {first.settings.key_prefix, second.settings.key_prefix, production.key_prefix}
    assert len(prefixes) == 3
    assert first.settings.key_prefix in "\n".join(first.lines)  # said in what `boxcut dev` prints
    assert {_prefix_of_broker(first), _prefix_of_broker(second)} == {first.settings.key_prefix,
                                                                     second.settings.key_prefix}
    redis = fakeredis.FakeRedis()
    job = build_job(JobRequest(targets=[{"type": "user", "login": "jdoe@example.com"}], source="cli", reason="t",
                               requested_by="cli:t"))
    JobStore(redis, key_prefix=first.settings.key_prefix).create(job)
    assert len(JobStore(redis, key_prefix=first.settings.key_prefix).list_jobs(limit=10)[0]) == 1
    assert JobStore(redis, key_prefix=second.settings.key_prefix).list_jobs(limit=10)[0] == []
    assert JobStore(redis, key_prefix=production.key_prefix).list_jobs(limit=10)[0] == []


def test_a_dev_stack_never_puts_its_queues_on_rabbitmq() -> None:
    stack = _isolated({**SHARED, "BOXCUT_BROKER_URL": "amqp://guest:guest@rabbit.example.com//"})
    assert stack.settings.broker_is_redis and load_settings(stack.env, env_file=None).broker_is_redis


def test_a_chosen_prefix_is_kept() -> None:
    stack = _isolated({**SHARED, "BOXCUT_KEY_PREFIX": "shared:"})
    assert stack.settings.key_prefix == "shared:" and not stack.own_prefix
    assert load_settings(stack.env, env_file=None).key_prefix == "shared:"


def test_the_printed_command_reaches_this_stack() -> None:
    stack = _isolated(SHARED)
    assert f"BOXCUT_KEY_PREFIX={stack.settings.key_prefix} " in _sample_command(stack.settings, True)


def test_stopping_forgets_only_this_runs_keys() -> None:
    redis = fakeredis.FakeRedis()
    stack = _isolated(SHARED)
    mine, other = stack.settings.key_prefix, _isolated(SHARED).settings.key_prefix
    redis.set(f"{mine}jobs:x", 1)
    redis.set(f"{other}jobs:y", 1)
    redis.set("boxcut:jobs:z", 1)
    forget_keys(redis, mine)
    assert sorted(redis.keys()) == sorted([f"{other}jobs:y".encode(), b"boxcut:jobs:z"])
