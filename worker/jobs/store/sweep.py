"""The sweep's queries: jobs waiting to resolve, jobs left idle (stranded, or whose run died) to enqueue again,
and when the periodic sweep last ran (worker/run/sweeper.py; `boxcut doctor` checks beat by it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from worker.jobs.model import JobState
from worker.jobs.store.audit import AuditTrail
from worker.jobs.store.base import as_text, epoch_of
from worker.transactions import GuardFailed

log = logging.getLogger(__name__)


class SweepQueries(AuditTrail):
    """What the sweep looks for, and its notes."""

    def jobs_to_resolve(self) -> int:
        """Jobs queued or resolving now: the lookups waiting across all jobs, roughly (most name one person)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._state_prefix() + JobState.QUEUED.value)
        pipe.zcard(self._state_prefix() + JobState.RESOLVING.value)
        return sum(int(n) for n in pipe.execute())

    def idle_jobs(self, states: Iterable[JobState], *, idle_seconds: float, now: float, limit: int) -> list[str]:
        """Jobs in `states` (the oldest `limit` of each) that no run holds and that neither changed nor were
        enqueued again for `idle_seconds`."""
        candidates = [as_text(i) for state in states
                      for i in self.redis.zrange(self._state_prefix() + state.value, 0, limit - 1)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in candidates:
            pipe.hmget(self._job_key(job_id), ["updated_at", "requeued_at"])
            pipe.exists(f"{self._job_key(job_id)}:lease")
        replies = pipe.execute()
        idle = []
        for n, job_id in enumerate(candidates):
            (updated, requeued), leased = replies[2 * n], replies[2 * n + 1]
            last = max((epoch_of(as_text(v)) for v in (updated, requeued) if v), default=now)
            if not leased and now - last >= idle_seconds:
                idle.append(job_id)
        return idle

    def note_requeued(self, job_id: str, *, why: str, at: float) -> None:
        """Note that the sweep enqueued the job again at `at` (epoch seconds); nothing for a job no longer working
        (settled since, say: a rescue that found its run's entry)."""
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        write = self._while_working(job_id)
        write.write("HSET", self._job_key(job_id), "requeued_at", stamp)
        self._stage_audit(write, job_id, "requeued", {"why": why})
        try:
            write.apply(self.redis)
        except GuardFailed:
            log.info("job %s is no longer working (settled or removed): not noted as enqueued again", job_id)

    def note_sweep(self) -> None:
        """The periodic sweep ran now (what `boxcut doctor` checks beat by)."""
        self.redis.set(f"{self.prefix}beat:last_sweep", time.time(), ex=86400)

    def last_sweep(self) -> float | None:
        raw = self.redis.get(f"{self.prefix}beat:last_sweep")
        return float(raw) if raw is not None else None

    def terminating_jobs(self, *, limit: int) -> list[str]:
        """The oldest jobs whose targets are being sent."""
        ids = self.redis.zrange(self._state_prefix() + JobState.TERMINATING.value, 0, limit - 1)
        return [as_text(i) for i in ids]
