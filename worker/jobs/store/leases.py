"""Leases: a job held by one task run at a time, listed as running until its lease's deadline, so a run that
died is found and its job's next run arranged (worker/run/sweeper.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from worker.errors import LeaseHeld
from worker.jobs.store.base import StoreBase, as_text
from worker.locks import RedisLock


class Leases(StoreBase):
    """Holding a job for a run, and finding the runs that died holding one."""

    @contextmanager
    def lease(self, job_id: str, *, ttl_seconds: float) -> Iterator[LeaseRenewer]:
        """Hold the job for one task run, so two deliveries of one job never work on it at once. While held, the
        job is listed in `jobs:running` with the lease's deadline (moved on by each renewal): a run that dies
        leaves it there past its deadline, where `died_runs` finds it."""
        lock = RedisLock(self.redis, f"{self._job_key(job_id)}:lease", ttl_ms=int(ttl_seconds * 1000))
        if not lock.acquire():
            raise LeaseHeld(max(lock.remaining_seconds(), 1.0))
        self._note_running(job_id, lock.ttl_ms)
        try:
            yield LeaseRenewer(lambda: lock.renew() and self._note_running(job_id, lock.ttl_ms, renewal=True))
        finally:
            if lock.release():
                self.redis.zrem(self._running_key, job_id)

    def leased(self, job_id: str) -> bool:
        """Whether a run holds the job now."""
        return bool(self.redis.exists(f"{self._job_key(job_id)}:lease"))

    def _note_running(self, job_id: str, ttl_ms: int, *, renewal: bool = False) -> bool:
        """List the job as run until its lease's deadline; a renewal only moves an entry still there (one the
        release just removed stays removed)."""
        self.redis.zadd(self._running_key, {job_id: int(time.time() * 1000) + ttl_ms}, xx=renewal)
        return True

    def died_runs(self, *, now_ms: int, limit: int) -> list[str]:
        """Jobs whose run's lease ran out without being let go (the run died), oldest first; `forget_run` drops
        one once its next run is arranged."""
        died = [as_text(j) for j in self.redis.zrangebyscore(self._running_key, "-inf", now_ms, start=0, num=limit)]
        return [job_id for job_id in died if not self.leased(job_id)]

    def forget_run(self, job_id: str, *, deadline_ms: int) -> bool:
        """Drop a died run's entry, unless a new run listed the job since (its deadline is later)."""
        removed = self.redis.eval(_FORGET_RUN, 1, self._running_key, job_id, deadline_ms)
        return bool(removed)


# KEYS[1] jobs:running; ARGV[1] job id, ARGV[2] a time (ms): the entry goes only if its deadline is not later.
_FORGET_RUN = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


class LeaseRenewer:
    """Extends a held lease; long runs call `renew()` between Box calls."""

    def __init__(self, renew: Callable[[], bool]) -> None:
        self._renew = renew

    def renew(self) -> bool:
        """Whether the lease is still ours, extended now."""
        return self._renew()
