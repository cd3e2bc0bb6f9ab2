"""Retention: what boxcut keeps, and for how long (BOXCUT_RETENTION_DAYS).

A finished job (succeeded, partial, failed, cancelled) created longer ago than the retention leaves Redis with
everything that is its own: its record and targets, its list of calls, its audit trail, its place in every
index and its open count in the send queue; and each call that carried its targets, once no job it carried is
left. The main audit stream is trimmed by time (XTRIM MINID) to the same horizon. A job that is not final is
kept however old (awaiting approval, say), with its own audit trail whole. Run by the periodic sweep and by
`boxcut expire`; safe to run on every host at once (every deletion is idempotent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.jobs.model import JobState
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore

log = logging.getLogger(__name__)

# Jobs read per page, oldest first, and removed at most per pass (hourly): 24 passes a day clear up to 1.2 M
# jobs a day, far above any intake rate, so a backlog never outgrows the expiry.
EXPIRE_PAGE = 1000
EXPIRE_MAX_PER_PASS = 50_000


@dataclass(frozen=True)
class Expired:
    """What one pass removed."""

    jobs: int
    calls: int
    audit_entries: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def expire(store: JobStore, queue: SendQueue, *, retention_days: float, now: Callable[[], float] = time.time,
           page: int = EXPIRE_PAGE, most: int = EXPIRE_MAX_PER_PASS) -> Expired:
    """Remove finished jobs older than `retention_days`, with what is theirs, and trim the audit stream. Old jobs
    that are kept (not final) are stepped over, so however many there are, the finished ones behind them go."""
    horizon = now() - retention_days * 86400
    jobs = calls = kept = 0
    while jobs < most:
        batch = store.created_before(int(horizon * 1_000_000), limit=page, skip=kept)
        if not batch:
            break
        for job_id, state in batch:
            if state and not JobState(state).is_final:
                kept += 1  # still moving, or waiting for a person: kept, and stepped over next page
                continue
            calls += store.remove(job_id)
            queue.forget_job(job_id)
            jobs += 1
    trimmed = store.trim_audit(int(horizon * 1000))
    if jobs or trimmed:
        log.info("retention (%g days): removed %d jobs, %d calls, %d audit entries", retention_days, jobs, calls,
                 trimmed)
    return Expired(jobs=jobs, calls=calls, audit_entries=trimmed)
