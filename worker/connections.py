"""Connections built from settings, for every layer: the Redis client (with timeouts)."""

from __future__ import annotations

import redis

from config import Settings


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client with timeouts, so a vanished Redis shows as an error instead of a hang."""
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )
