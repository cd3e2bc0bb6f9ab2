"""De-duplication of deliveries by the sender's event id or an Idempotency-Key, never by a hash of the body.

    P idem:{source}:{key}   string  the job id the first delivery created; expires after the window
"""

from __future__ import annotations

import hashlib

import redis

from config import defaults
from worker.locks import CompareAndDelete
from worker.transactions import GuardedWrite

# KEYS[1] the claim; ARGV[1] the job id, ARGV[2] ttl seconds. Claims the key for the job id (nil), or returns the
# job id of the first claim: one round trip whether the event is new or a repeat, and no gap between the SET that
# failed and the GET in which the first claim could expire.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""

# KEYS[1] the claim; ARGV[1] the job id it must still hold, ARGV[2] the new job id, ARGV[3] ttl seconds.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class IdempotencyKeys:
    """Claims an event key for a job id; a later claim of the same key gets the first job id back."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.prefix = key_prefix
        self.ttl = max(ttl_seconds, defaults.IDEMPOTENCY_MIN_TTL_SECONDS)
        self._claim = client.register_script(_CLAIM)
        self._take_over = client.register_script(_TAKE_OVER)
        self._release = CompareAndDelete(client)

    def _key(self, source: str, event_key: str) -> str:
        # Hash the sender's key: it is arbitrary text from outside and could be long or hold odd bytes.
        digest = hashlib.sha256(event_key.encode()).hexdigest()[:32]
        return f"{self.prefix}idem:{source}:{digest}"

    def claim(self, *, source: str, event_key: str, job_id: str) -> str | None:
        """Record `job_id` for this key; return None when claimed now, or the job id of the first claim."""
        existing = self._claim(keys=[self._key(source, event_key)], args=[job_id, self.ttl])
        if existing is None:
            return None
        return existing.decode() if isinstance(existing, bytes) else str(existing)

    def stage_claim(self, write: GuardedWrite, *, source: str, event_key: str, job_id: str) -> None:
        """Claim the key for `job_id` within `write`, a step that writes the job with it (worker/jobs/submit.py):
        the step applies only while no claim holds the key, else raises GuardFailed having written nothing (and
        `holder` names the job of the claim it met)."""
        key = self._key(source, event_key)
        write.is_absent(key)
        write.write("SET", key, job_id, "EX", self.ttl)

    def holder(self, *, source: str, event_key: str) -> str | None:
        """The job id the key's claim holds, or None when nothing claims it."""
        existing = self.redis.get(self._key(source, event_key))
        if existing is None:
            return None
        return existing.decode() if isinstance(existing, bytes) else str(existing)

    def take_over(self, *, source: str, event_key: str, stale_job_id: str, job_id: str) -> bool:
        """Point a claim whose job was never created (its submitter died) at `job_id`; False if it moved on."""
        key = self._key(source, event_key)
        return bool(self._take_over(keys=[key], args=[stale_job_id, job_id, self.ttl]))

    def release(self, *, source: str, event_key: str, job_id: str) -> None:
        """Forget a claim whose job could not be created, so the sender's retry is not taken for a duplicate."""
        self._release(self._key(source, event_key), job_id)
