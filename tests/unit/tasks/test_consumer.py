"""The workers' consumer asks a broker that went away again within seconds, not kombu's up to 30 s."""

from __future__ import annotations

from typing import Any

from config import load_settings
from tasks.app import build_celery_app
from tasks.consumer import MAX_RETRY_SECONDS, Consumer


class _Connection:
    """Records how it was asked to (re)connect."""

    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    def ensure_connection(self, *args: Any, **kwargs: Any) -> _Connection:
        self.asked = kwargs
        return self


def test_the_worker_uses_the_consumer_that_retries_a_lost_broker_every_two_seconds_at_most() -> None:
    app = build_celery_app(load_settings({}, env_file=None))
    assert app.conf.worker_consumer == "tasks.consumer:Consumer"
    consumer = Consumer.__new__(Consumer)  # just what ensure_connected reads
    consumer.app, consumer.first_connection_attempt, consumer.broker_connection_retry_attempt = app, False, 0
    connection = _Connection()
    assert consumer.ensure_connected(connection) is connection
    assert connection.asked["interval_max"] == MAX_RETRY_SECONDS <= 2
    assert 0 < connection.asked["interval_start"] <= 1 and connection.asked["interval_step"] <= 1
