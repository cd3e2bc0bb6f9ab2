"""The Redis broker transport the workers use: kombu's, surviving a Redis restart and a full Redis.

A restart:

Celery 5.7 / kombu 5.7 with late acknowledgement: when the broker connection drops, Celery's consumer calls
`Connection.collect()` and then `Connection.close()` (`Consumer.on_connection_error_after_connected`). `collect()`
already cleared the transport's `client`, so `close()` closes the default channel, which restores its unacked
messages, which builds a Redis client from `self.connection.client`: `None`. The AttributeError that follows is
not a connection error, so nothing catches it and the worker exits ("Unrecoverable error: AttributeError(
"'NoneType' object has no attribute 'hostname'")"), drills showed, with every task it held. Here the channel
keeps its connection's settings, so the restore meets Redis being down as the connection error it is, kombu
ignores it as it ignores any other, and the consumer reconnects. The messages it held stay in Redis's unacked set
and are delivered again (`unacked_restore_interval`, config/celery_settings.py). The same AttributeError, reached by
other paths to a collected connection, is celery/kombu#582 and celery/kombu#970 upstream; kombu 5.7.0, the newest
release, still has this one: kombu is held at 5.7.* (pyproject.toml), the version the drills test this class against.

A full Redis (`maxmemory` with `noeviction`): kombu acknowledges a message by removing it from the unacked set and
index in a MULTI pipeline. Redis refuses every command queued inside MULTI while it is over its memory limit,
even ZREM and HDEL, which free memory (it refuses them outside MULTI only when they may grow memory, and these
never do). The OutOfMemoryError reached Celery's consumer, which stopped the worker ("Unrecoverable error:
OutOfMemoryError"), drills showed. Here the removal is one pipeline without MULTI: the two removals are
independent and idempotent (an index entry without its message is skipped by the restore, a message without
its index entry is only memory), and they go through while Redis is full. A message whose delivery cannot be
recorded in the unacked set (ZADD and HSET need memory) still runs; what keeps its job from being lost if the
worker then dies is the job record, which the sweep reads (worker/run/sweeper.py). Upstream, a worker stuck or
stopped on a full Redis is celery/celery#5716 (open).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import redis
import redis.sentinel
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's unacked bookkeeping, able to acknowledge while Redis is full."""

    def append(self, message: Any, delivery_tag: Any) -> None:
        try:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
        except redis.exceptions.OutOfMemoryError:
            log.warning("Redis is full: message %s runs without its unacked record", delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def _remove_from_indices(self, delivery_tag: Any, pipe: Any = None) -> Any:
        if pipe is not None:  # inside kombu's restore transaction: keep its MULTI
            return super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]
        with self.channel.conn_or_acquire() as client:
            return client.pipeline(transaction=False).zrem(self.unacked_index_key, delivery_tag).hdel(
                self.unacked_key, delivery_tag)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, able to build a client after its connection was collected, with the QoS above."""

    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._conninfo = self.connection.client

    def _connparams(self, asynchronous: bool = False) -> Any:
        with self._settings_kept():
            return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]

    @contextlib.contextmanager
    def _settings_kept(self) -> Iterator[None]:
        """Lend a collected connection the settings it had, for one build of a client or pool."""
        transport = self.connection
        if transport.client is not None:
            yield
            return
        transport.client = self._conninfo
        try:
            yield
        finally:
            transport.client = None


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """kombu's Sentinel channel (it asks the Sentinels for the primary whenever it connects) with the mends above:
    a failover is a connection lost, as a restart is, and the new primary may be as full as the old one.

    kombu reads the Sentinels from the broker URL's alternates (`sentinel://a;sentinel://b`). But a connection
    with alternates switches to the next one after each failed attempt, and switching re-reads the transport from
    the URL's scheme: after the first failed reconnect of a failover the worker ran kombu's own transport, without
    these mends. So the broker URL names one Sentinel and the transport option `sentinels` names them all
    (config/celery_settings.py). The pool is built from them, from the settings a collected connection had (kombu's read
    `client.alt` of a collected connection: "AttributeError: 'NoneType' object has no attribute 'alt'", drills
    showed)."""

    from_transport_options = (*kombu_redis.SentinelChannel.from_transport_options, "sentinels")  # type: ignore[assignment]
    sentinels: list[tuple[str, int]] | None = None

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        params = dict(self._connparams(asynchronous))
        host, port = params.pop("host", None), params.pop("port", None)
        manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [tuple(node) for node in self.sentinels or [(host, port)]],
            min_other_sentinels=getattr(self, "min_other_sentinels", 0) or 0,
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None), **params)
        if asynchronous:  # kept, so that kombu closes its connections to the Sentinels with the channel
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        service = getattr(self, "master_name", None)
        if service is None:
            raise ValueError("kombu's Sentinel transport needs the transport option master_name")
        login = {key: params[key] for key in ("username", "password") if key in params}
        return manager.master_for(service, redis.Redis, **login).connection_pool  # type: ignore[no-untyped-call]


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    Channel = SentinelChannel


# What `broker_transport` names (config/celery_settings.py).
TRANSPORT = f"{__name__}:Transport"
