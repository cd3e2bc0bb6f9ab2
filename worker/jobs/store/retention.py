"""Retention: the oldest jobs, removing a job whole (record, trail, index entries, and calls no other job
holds), and trimming the main audit stream (worker/jobs/retention.py decides what goes)."""

from __future__ import annotations

from collections.abc import Iterable

from worker.jobs.store.base import as_text
from worker.jobs.store.calls import CallRecords


class Retention(CallRecords):
    """Removing old jobs and old audit entries."""

    def created_before(self, created_before_us: int, *, limit: int, skip: int = 0) -> list[tuple[str, str]]:
        """The oldest jobs (up to `limit`, after the first `skip`) created before `created_before_us` (epoch µs),
        with their states."""
        ids = [as_text(i) for i in self.redis.zrangebyscore(f"{self.prefix}jobs", "-inf", f"({created_before_us}",
                                                          start=skip, num=limit)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self._job_key(job_id), "state")
        return [(job_id, as_text(state or "")) for job_id, state in zip(ids, pipe.execute(), strict=True)]

    def remove(self, job_id: str, *, extra_keys: Iterable[str] = ()) -> int:
        """Delete a job's record, its audit trail, its place in every index, and each call that carried its
        targets once no job it carried is left; returns the calls deleted."""
        key = self._job_key(job_id)
        state, source = (as_text(v or "") for v in self.redis.hmget(key, ["state", "source"]))
        call_ids = [as_text(c) for c in self.redis.lrange(f"{key}:calls", 0, -1)]
        # No MULTI: Redis refuses every command inside MULTI when full, deletions included, and a full Redis is
        # when retention matters most. Each deletion is idempotent; a pass cut short is finished by the next.
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(key, f"{key}:targets", f"{key}:calls", f"{key}:lease", f"{key}:activity", f"{key}:notify",
                    self.job_audit_key(job_id), *extra_keys)
        pipe.zrem(f"{self.prefix}jobs", job_id)
        pipe.zrem(f"{self.prefix}jobs:dead", job_id)
        pipe.zrem(self._active_after_key, job_id)
        pipe.zrem(self._settle_wait_key, job_id)
        pipe.zrem(self._state_prefix() + state, job_id)
        pipe.zrem(f"{self.prefix}jobs:source:{source}", job_id)
        pipe.execute()
        orphans = [c.call_id for c in self.load_calls(call_ids)
                   if not self._any_exists(job for job in c.carried() if job != job_id)]
        if orphans:
            self.redis.delete(*(k for c in orphans for k in (self._call_key(c), self._attempts_key(c))))
        return len(orphans)

    def trim_audit(self, before_ms: int) -> int:
        """Drop main-stream audit entries older than `before_ms` (XTRIM MINID); returns how many."""
        return int(self.redis.xtrim(self.audit_key, minid=f"{before_ms}-0", approximate=False))
