"""Connections built from settings, for every layer: the Redis client (with timeouts), straight to one Redis or to
the primary that Sentinels name; and the faults such a client sees while Redis heals by itself, the one list every
task and the sender wait out."""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel

from config import Settings
from config.sentinel import SentinelConfig

# What a client sees while Redis heals by itself, so every task and the sender wait it out (a retry, a later pass)
# rather than give up: Redis down or restarting (ConnectionError, TimeoutError), still loading its data after a
# restart (BusyLoadingError, a ConnectionError named for clarity), full (OutOfMemoryError: retention and settling
# free it), or a connection still on the old primary, now a replica, after a failover that moved the primary by
# DNS or a proxy (ReadOnlyError: `recover_from` drops the client's connections, so the next connects to the new
# primary; through Sentinels, redis-py already turns it into a ConnectionError and reconnects).
TRANSIENT_REDIS_FAULTS = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError, redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
)


def recover_from(client: redis.Redis, fault: BaseException) -> None:
    """Before trying again after `fault`: a ReadOnlyError means this client's pooled connections reach a replica,
    and would keep reaching it (redis-py keeps a connection through an error reply), so they are dropped."""
    if isinstance(fault, redis.exceptions.ReadOnlyError):
        client.connection_pool.disconnect()

# Every client has them, so a vanished Redis shows as an error instead of a hang.
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
# A Sentinel answers in a millisecond or not at all: asking the next one soon matters more than waiting.
_SENTINEL_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client with timeouts. Behind Sentinels (BOXCUT_REDIS_URL=redis+sentinel://…) it asks them for the
    primary whenever it connects, and a connection to a primary that became a replica is dropped and made again
    (redis-py's SentinelManagedConnection), so the client follows a failover by itself."""
    if settings.sentinel is not None:
        return primary_client(settings.sentinel)
    return redis.Redis.from_url(settings.redis_url, **_TIMEOUTS)


def primary_client(config: SentinelConfig) -> redis.Redis:
    """A client of the primary the Sentinels name for `config.service`."""
    client: redis.Redis = sentinels(config).master_for(  # type: ignore[no-untyped-call]
        config.service, db=config.db, username=config.username,
        password=config.password.reveal() if config.password else None, **_TIMEOUTS)
    return client


def sentinels(config: SentinelConfig) -> Sentinel:
    """redis-py's client of the Sentinels themselves."""
    login = {"password": config.sentinel_password.reveal()} if config.sentinel_password else {}
    return Sentinel(  # type: ignore[no-untyped-call]
        list(config.sentinels), sentinel_kwargs={**_SENTINEL_TIMEOUTS, **login})
