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
