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

# Jobs looked at per pass, oldest first; a backlog is worked off over several passes.
EXPIRE_BATCH = 1000


@dataclass(frozen=True)
class Expired:
    """What one pass removed."""

    jobs: int
    calls: int
    audit_entries: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def expire(store: JobStore, queue: SendQueue, *, retention_days: float, now: Callable[[], float] = time.time,
           limit: int = EXPIRE_BATCH) -> Expired:
    """Remove finished jobs older than `retention_days`, with what is theirs, and trim the audit stream."""
    horizon = now() - retention_days * 86400
    jobs = calls = 0
    for job_id, state in store.created_before(int(horizon * 1_000_000), limit=limit):
        if state and not JobState(state).is_final:
            continue  # still moving, or waiting for a person: kept
        calls += store.remove(job_id)
        queue.forget_job(job_id)
        jobs += 1
    trimmed = store.trim_audit(int(horizon * 1000))
    if jobs or trimmed:
        log.info("retention (%g days): removed %d jobs, %d calls, %d audit entries", retention_days, jobs, calls,
                 trimmed)
    return Expired(jobs=jobs, calls=calls, audit_entries=trimmed)
