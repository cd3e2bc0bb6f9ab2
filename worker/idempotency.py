"""De-duplication of deliveries by the sender's event id or an Idempotency-Key, never by a hash of the body.

    P idem:{source}:{key}   string  the job id the first delivery created; expires after the window
"""

from __future__ import annotations

import hashlib

import redis


class IdempotencyKeys:
    """Claims an event key for a job id; a later claim of the same key gets the first job id back."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.prefix = key_prefix
        self.ttl = ttl_seconds

    def _key(self, source: str, event_key: str) -> str:
        # Hash the sender's key: it is arbitrary text from outside and could be long or hold odd bytes.
        digest = hashlib.sha256(event_key.encode()).hexdigest()[:32]
        return f"{self.prefix}idem:{source}:{digest}"

    def claim(self, *, source: str, event_key: str, job_id: str) -> str | None:
        """Record `job_id` for this key; return None when claimed now, or the job id of the first claim."""
        key = self._key(source, event_key)
        if self.redis.set(key, job_id, nx=True, ex=self.ttl):
            return None
        existing = self.redis.get(key)
        if existing is None:  # expired between the two calls: claim it again
            return self.claim(source=source, event_key=event_key, job_id=job_id)
        return existing.decode() if isinstance(existing, bytes) else str(existing)

    def release(self, *, source: str, event_key: str, job_id: str) -> None:
        """Forget a claim whose job could not be created, so the sender's retry is not taken for a duplicate."""
        key = self._key(source, event_key)
        current = self.redis.get(key)
        if current is not None and (current.decode() if isinstance(current, bytes) else current) == job_id:
            self.redis.delete(key)
