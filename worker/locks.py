"""One Redis lock for every part that needs one (a job's lease, the token refresh, the directory build), and the
compare-and-delete it releases with, which also drops any value only while it is still the one a caller holds.

A lock is a key set with NX and an expiry, holding a random token; only the holder's token releases or renews
it, in one Lua script each, so a holder whose lock expired (and was taken by another) can never release the new
holder's lock. If a holder dies, its lock expires and the next one takes over.
"""

from __future__ import annotations

import secrets

import redis

# KEYS[1] the key; ARGV[1] the value the caller holds. Deletes the key only if it still holds that value.
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] the key; ARGV[1] the value the caller holds, ARGV[2] ttl ms. Extends it only if it holds that value.
_COMPARE_AND_EXPIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class CompareAndDelete:
    """Deletes a key only while it still holds a given value (atomically, in Redis)."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_COMPARE_AND_DELETE)

    def __call__(self, key: str, value: str) -> bool:
        """Whether `key` held `value` and is now deleted."""
        return bool(self._script(keys=[key], args=[value]))


class RedisLock:
    """A lock on `key` for `ttl_ms`, held by a token of this instance's own; one holder at a time."""

    def __init__(self, client: redis.Redis, key: str, *, ttl_ms: int) -> None:
        self.redis = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(8)
        self._delete = CompareAndDelete(client)
        self._expire = client.register_script(_COMPARE_AND_EXPIRE)

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; False when another holder does."""
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lock by its ttl; False when it is no longer ours (it expired and may be another's)."""
        return bool(self._expire(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        """Let the lock go, if it is still ours."""
        return self._delete(self.key, self.token)

    def remaining_seconds(self) -> float:
        """How long whoever holds the lock holds it for at most (0 when nobody does)."""
        remaining = int(self.redis.pttl(self.key))
        return max(remaining, 0) / 1000
