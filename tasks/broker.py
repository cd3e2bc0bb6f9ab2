"""The Redis broker transport the workers use: kombu's, surviving a Redis restart.

Celery 5.7 / kombu 5.7 with late acknowledgement: when the broker connection drops, Celery's consumer calls
`Connection.collect()` and then `Connection.close()` (`Consumer.on_connection_error_after_connected`). `collect()`
already cleared the transport's `client`, so `close()` closes the default channel, which restores its unacked
messages, which builds a Redis client from `self.connection.client`: `None`. The AttributeError that follows is
not a connection error, so nothing catches it and the worker exits ("Unrecoverable error: AttributeError(
"'NoneType' object has no attribute 'hostname'")"), drills showed, with every task it held. Here the channel
keeps its connection's settings, so the restore meets Redis being down as the connection error it is, kombu
ignores it as it ignores any other, and the consumer reconnects. The messages it held stay in Redis's unacked set
and are delivered again (`unacked_restore_interval`, config/celery.py).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, able to build a client after its connection was collected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._conninfo = self.connection.client

    def _connparams(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport.client is not None:
            return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        transport.client = self._conninfo  # collected: use the settings it had, for this one build
        try:
            return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        finally:
            transport.client = None


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


# What `broker_transport` names (config/celery.py).
TRANSPORT = f"{__name__}:Transport"
