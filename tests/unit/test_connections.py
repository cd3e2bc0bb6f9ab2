"""The one list of Redis faults that heal by themselves, waited out by every task and the sender."""

from __future__ import annotations

import redis

from worker.connections import TRANSIENT_REDIS_FAULTS


def test_the_transient_redis_faults_are_pinned() -> None:
    assert set(TRANSIENT_REDIS_FAULTS) == {
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.BusyLoadingError,
        redis.exceptions.OutOfMemoryError,
        redis.exceptions.ReadOnlyError,  # a connection still on the old primary just after a Sentinel failover
    }


def test_the_tasks_and_the_sender_share_the_list() -> None:
    from tasks import jobs, notify
    from worker.run import sender

    assert set(TRANSIENT_REDIS_FAULTS) <= set(jobs.TRANSIENT_FAULTS)
    assert notify.TRANSIENT_REDIS_FAULTS is TRANSIENT_REDIS_FAULTS
    assert sender.TRANSIENT_REDIS_FAULTS is TRANSIENT_REDIS_FAULTS


def test_only_a_read_only_reply_drops_the_clients_connections() -> None:
    from unittest import mock

    import fakeredis

    from worker.connections import recover_from

    client = fakeredis.FakeRedis()
    with mock.patch.object(client.connection_pool, "disconnect") as disconnect:
        recover_from(client, redis.ConnectionError("gone"))  # redis-py reconnects by itself after these
        recover_from(client, redis.exceptions.OutOfMemoryError("full"))
        assert disconnect.call_count == 0
        recover_from(client, redis.exceptions.ReadOnlyError("You can't write against a read only replica."))
        assert disconnect.call_count == 1
