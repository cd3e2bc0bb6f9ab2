"""A job's task as the Redis commands that publish it, for a submission that sends them in a Redis step of its own.

kombu's Redis transport publishes a task with an LPUSH of the message onto its queue's list (and Celery's
`task-sent` event with a PUBLISH). Since kombu 5.7 a producer's `batch()` hands those final commands to a batch
object the channel makes (`Channel.create_publish_batch`), which pipelines them. The channel here makes a batch
that only records them: `app.send_task` builds the task as it always does (Celery's message and headers, kombu's
JSON and base64 body, delivery tag, priority queue and event topic, all by their own code), and what would have
been sent comes back as commands, with the transport's `global_keyprefix` applied as kombu's client applies it.

The intake sends them in the one Lua step that claims the event, writes the job record and marks it enqueued
(`worker.jobs.submit`), so a job answered 202 has both its record and its message, or Redis holds neither; a
worker takes the message as one `send_task` sent. Only for a broker on the very Redis of the records (the default,
behind Sentinels too); with RabbitMQ there is no such step, and submissions go through `tasks.app.enqueuer`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from kombu.connection import Connection
from kombu.messaging import Producer
from kombu.transport import redis as kombu_redis

from config import Settings
from config.celery_settings import QUEUE
from tasks import jobs
from tasks.app import _PublishChannel, _PublishTransport, _SentinelPublishChannel, _SentinelPublishTransport
from worker.jobs.submit import TaskWrites


class _Recorder:
    """kombu's publish batch (`Channel.create_publish_batch`) that records each message's final Redis commands
    instead of pipelining them; its flush and close, which kombu calls as the batch ends, send nothing."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def publish(self, message: Any, **kwargs: Any) -> Any:
        return self.channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))

    def flush(self) -> None:
        """Nothing: the caller sends the commands."""

    def discard(self) -> None:
        self.commands.clear()

    def close(self) -> None:
        """Nothing to release."""


class _RecordingChannel(_PublishChannel):  # type: ignore[misc]
    """The publishing channel, batching into a `_Recorder` (the last one made stays for its caller to read).
    Declarations (the queue's binding, once per connection) still go to Redis, as they do when publishing."""

    supports_batch_publish = True  # kombu's refuses when redis-py may retry a pipeline; nothing is pipelined here
    recorder: _Recorder | None = None

    def create_publish_batch(self, max_size: int) -> _Recorder:
        self.recorder = _Recorder(self)
        return self.recorder


class _RecordingTransport(_PublishTransport):  # type: ignore[misc]
    Channel = _RecordingChannel


class _SentinelRecordingChannel(_RecordingChannel, _SentinelPublishChannel):  # type: ignore[misc]
    """`_RecordingChannel` asking the Sentinels for the primary, as `_SentinelPublishChannel` does."""


class _SentinelRecordingTransport(_SentinelPublishTransport):  # type: ignore[misc]
    Channel = _SentinelRecordingChannel


class _KeyPrefix(kombu_redis.GlobalKeyPrefixMixin):  # type: ignore[misc]
    """kombu's rule for which argument of which command takes `global_keyprefix`, without a client around it."""

    def __init__(self, prefix: str) -> None:
        self.global_keyprefix = prefix

    def command(self, name: str, args: tuple[Any, ...]) -> tuple[str, ...]:
        """The command as kombu's prefixed client sends it (redis-py names commands in capitals)."""
        return tuple(str(part) for part in self._prefix_args([name.upper(), *args]))  # type: ignore[no-untyped-call]


def same_redis(app: Celery, settings: Settings) -> bool:
    """Whether `app`'s broker is the Redis that holds the job records (same server and database), so one step
    can write both."""
    if not settings.broker_is_redis:
        return False
    store_redis = settings.sentinel.kombu_url() if settings.sentinel else settings.redis_url
    return str(app.conf.broker_url) == store_redis and _transport(store_redis) is not None


def task_writes(app: Celery, settings: Settings) -> TaskWrites | None:
    """A function returning the Redis commands that publish a job id's task (`worker.jobs.submit.TaskWrites`),
    or None when the broker is not the records' Redis (RabbitMQ): then only `tasks.app.enqueuer` can enqueue.

    Each thread that calls it keeps one connection and producer (made again in a forked child), as the enqueuer
    does; the connection talks to Redis only to declare the queue once, as publishing would."""
    if not same_redis(app, settings):
        return None
    transport = _transport(str(app.conf.broker_url))
    local = threading.local()

    def producer() -> Producer:
        held: tuple[int, Producer] | None = getattr(local, "held", None)
        if held is None or held[0] != os.getpid():
            connection: Connection = app.connection_for_write(transport=transport)
            made = app.amqp.Producer(connection)
            made.maybe_declare(app.amqp.queues[QUEUE])  # what send_task would declare on its first publish
            held = local.held = (os.getpid(), made)
        return held[1]

    def writes(job_id: str) -> list[tuple[str, ...]]:
        made = producer()
        with made.batch():  # type: ignore[no-untyped-call]
            # Declared once above, and nothing is sent to retry: neither changes the message, both cost time.
            app.send_task(jobs.RUN_JOB, args=[job_id], queue=QUEUE, producer=made, declare=[], retry=False)
        channel = made.channel
        prefix = _KeyPrefix(channel.global_keyprefix or "")
        return [prefix.command(name, args) for name, args in channel.recorder.commands]

    return writes


def _transport(broker_url: str) -> type | None:
    """The recording transport for a Redis broker URL; None for any other broker."""
    if broker_url.startswith("sentinel://"):
        return _SentinelRecordingTransport
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return _RecordingTransport
    return None
