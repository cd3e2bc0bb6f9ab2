"""The one Redis lock and its compare-and-delete, on a real Redis (Lua scripts as Redis runs them)."""

from __future__ import annotations

import redis

from worker.jobs.idempotency import IdempotencyKeys
from worker.locks import CompareAndDelete, RedisLock


def test_one_holder_at_a_time_and_only_the_holder_releases_or_renews(real_redis: redis.Redis,
                                                                     key_prefix: str) -> None:
    first = RedisLock(real_redis, f"{key_prefix}lock", ttl_ms=10_000)
    second = RedisLock(real_redis, f"{key_prefix}lock", ttl_ms=10_000)
    assert first.acquire() and not second.acquire()
    assert not second.release() and not second.renew()
    assert 0 < second.remaining_seconds() <= 10
    assert first.renew() and first.release()
    assert second.acquire()


def test_a_holder_whose_lock_expired_cannot_release_the_next_holders(real_redis: redis.Redis,
                                                                     key_prefix: str) -> None:
    stale = RedisLock(real_redis, f"{key_prefix}lock", ttl_ms=10_000)
    assert stale.acquire()
    real_redis.delete(f"{key_prefix}lock")  # what the expiry does
    fresh = RedisLock(real_redis, f"{key_prefix}lock", ttl_ms=10_000)
    assert fresh.acquire()
    assert not stale.release() and not stale.renew()
    assert real_redis.get(f"{key_prefix}lock") == fresh.token.encode()


def test_compare_and_delete_deletes_only_the_value_held(real_redis: redis.Redis, key_prefix: str) -> None:
    delete = CompareAndDelete(real_redis)
    real_redis.set(f"{key_prefix}k", "newer")
    assert not delete(f"{key_prefix}k", "older") and real_redis.get(f"{key_prefix}k") == b"newer"
    assert delete(f"{key_prefix}k", "newer") and real_redis.get(f"{key_prefix}k") is None


def test_releasing_a_claim_that_moved_on_keeps_the_new_claim(real_redis: redis.Redis, key_prefix: str) -> None:
    keys = IdempotencyKeys(real_redis, key_prefix=key_prefix, ttl_seconds=60)
    assert keys.claim(source="s", event_key="e", job_id="j-old") is None
    assert keys.take_over(source="s", event_key="e", stale_job_id="j-old", job_id="j-new")
    keys.release(source="s", event_key="e", job_id="j-old")
    assert keys.claim(source="s", event_key="e", job_id="j-third") == "j-new"
