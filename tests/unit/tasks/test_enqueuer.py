"""The enqueuer keeps one producer per thread (and per process), instead of a pooled producer and a new Redis
client for every job."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from config import load_settings
from config.celery_settings import QUEUE
from tasks import app as tasks_app
from tasks.jobs import RUN_JOB


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[tuple[str, list[str], str, Any]]]:
    app = tasks_app.build_celery_app(load_settings({"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0"}, env_file=None))
    calls: list[tuple[str, list[str], str, Any]] = []
    monkeypatch.setattr(app, "send_task", lambda name, *, args, queue, producer: calls.append(
        (name, args, queue, producer)))
    return app, calls


def test_one_producer_for_every_job_of_a_thread(sent: tuple[Any, list[Any]]) -> None:
    app, calls = sent
    enqueue = tasks_app.enqueuer(app)
    enqueue("j-0000000000000001")
    enqueue("j-0000000000000002")
    assert [(c[0], c[1], c[2]) for c in calls] == [(RUN_JOB, ["j-0000000000000001"], QUEUE),
                                                   (RUN_JOB, ["j-0000000000000002"], QUEUE)]
    assert calls[0][3] is calls[1][3]
    assert isinstance(calls[0][3].connection.transport, tasks_app._PublishTransport)  # made, not connected


def test_each_thread_and_each_forked_process_has_its_own(sent: tuple[Any, list[Any]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    app, calls = sent
    enqueue = tasks_app.enqueuer(app)
    enqueue("j-0000000000000001")
    other = threading.Thread(target=enqueue, args=("j-0000000000000002",))
    other.start()
    other.join()
    monkeypatch.setattr(tasks_app.os, "getpid", lambda: -1)  # as in a child forked after the first enqueue
    enqueue("j-0000000000000003")
    producers = [c[3] for c in calls]
    assert len({id(p) for p in producers}) == 3


def test_the_publish_channel_reuses_one_client() -> None:
    class Channel(tasks_app._PublishChannel):
        def __init__(self) -> None:  # no connection: only the client cache is under test
            self.made = 0

        def _create_client(self, asynchronous: bool = False) -> object:
            self.made += 1
            return object()

    channel = Channel()
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second and channel.made == 1
    given = object()
    with channel.conn_or_acquire(given) as client:
        assert client is given
