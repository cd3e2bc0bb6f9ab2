"""Fixtures for the drills: a private Redis each drill may stop, restart or fill."""

from tests.drills.private_redis import private_redis

__all__ = ["private_redis"]
