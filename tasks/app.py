"""The Celery app, configured from settings, with boxcut's task registered on it; and the seams (enqueue, broker
check) that the CLI hands to the parts that must not know Celery's app: the intake, submitting, operator actions."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init
from kombu.connection import Connection
from kombu.messaging import Producer
from kombu.transport import redis as kombu_redis

from config import Settings
from config.celery_settings import QUEUE, SEND_QUEUE, celery_config, max_countdown
from tasks import broker, directory, event_stream, jobs, notify, retention, sending
from tasks.beat_watch import BeatWatch
from worker import logs
from worker.runtime import Runtime


def _name_the_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    logs.bind(task_id=task_id, task=getattr(task, "name", None))


def _forget_the_task(**_: Any) -> None:
    logs.unbind("task_id", "task")


# Every line logged while a task runs carries its Celery task id and name (worker/logs.py).
task_prerun.connect(_name_the_task, weak=False, dispatch_uid="boxcut-log-task")
task_postrun.connect(_forget_the_task, weak=False, dispatch_uid="boxcut-log-task-done")


def build_celery_app(settings: Settings) -> Celery:
    """A Celery app for these settings; its worker processes build their Runtime lazily, after the fork."""
    app = Celery("boxcut", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.steps["worker"].add(BeatWatch)  # an embedded beat that dies is started again (tasks/beat_watch.py)

    def kick_sender(endpoint: str, countdown: float = 0.0) -> None:
        app.send_task(sending.SEND, args=[endpoint], queue=SEND_QUEUE, countdown=countdown if countdown > 0 else None)

    enqueue = enqueuer(app)
    runtime = Runtime(settings, kick_sender=kick_sender,
                      on_beat=lambda ctx: sending.rescue(ctx, kick_sender, enqueue=enqueue))
    # Each pool process builds its runtime as it starts, so its heartbeat beats (and rescues what a dead worker
    # stranded) from then on, not from its first task.
    worker_process_init.connect(lambda **_: runtime.context(), weak=False, dispatch_uid=f"boxcut-runtime-{id(app)}")
    jobs.register(app, context=runtime.context, max_countdown=max_countdown(settings))
    sending.register(app, context=runtime.context, kick=kick_sender, enqueue=enqueuer(app),
                     stale_job_seconds=settings.stale_job_seconds, max_countdown=max_countdown(settings))
    directory.register(app, context=runtime.context, settings=settings, queue=SEND_QUEUE)
    retention.register(app, context=runtime.context, settings=settings)
    event_stream.register(app, context=runtime.context, settings=settings, enqueue=enqueuer(app))
    notify.register(app, context=runtime.context, settings=settings, max_countdown=max_countdown(settings))
    return app


class _PublishChannel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, publishing through one client of its own instead of a new one per message:
    kombu builds a `redis.Redis` for every publish, and building one (its table of response callbacks) cost
    more than the LPUSH it sends. The client draws its connections from the channel's pool, as before."""

    _publish_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client is None:
            if self._publish_client is None:
                self._publish_client = self._create_client()  # type: ignore[no-untyped-call]
            client = self._publish_client
        yield client


class _PublishTransport(kombu_redis.Transport):  # type: ignore[misc]
    """The Redis transport with `_PublishChannel`: only the enqueuer's connections use it (workers consume
    through Celery's own)."""

    Channel = _PublishChannel


class _SentinelPublishChannel(_PublishChannel, broker.SentinelChannel):  # type: ignore[misc]
    """`_PublishChannel` whose client's pool asks the Sentinels for the primary (tasks/broker.py)."""


class _SentinelPublishTransport(broker.SentinelTransport):  # type: ignore[misc]
    Channel = _SentinelPublishChannel


def _publish_transport(broker_url: str) -> type | None:
    """The transport the enqueuer publishes through: one of the two above for Redis, Celery's own otherwise."""
    if broker_url.startswith("sentinel://"):
        return _SentinelPublishTransport
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return _PublishTransport
    return None


def enqueuer(app: Celery) -> Callable[[str], None]:
    """A function that enqueues a job id for the workers.

    Each thread that calls it (the intake's thread pool) keeps one broker connection and producer, made on its
    first call, instead of taking a producer from Celery's pool and a new Redis client for every job. They are
    made again in a forked child (keyed by pid), so no process ever writes on a socket it inherited. A broker
    that goes away is reconnected by the producer's publish retries, as with Celery's pooled producers."""
    local = threading.local()

    def producer() -> Producer:
        held: tuple[int, Producer] | None = getattr(local, "held", None)
        if held is None or held[0] != os.getpid():
            connection: Connection = app.connection_for_write(transport=_publish_transport(app.conf.broker_url))
            held = local.held = (os.getpid(), app.amqp.Producer(connection))
        return held[1]

    def enqueue(job_id: str) -> None:
        app.send_task(jobs.RUN_JOB, args=[job_id], queue=QUEUE, producer=producer())

    return enqueue


def broker_check(app: Celery) -> Callable[[], None]:
    """A function that raises unless the broker answers (one try, 2 s), for readiness checks."""

    def check() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    return check
