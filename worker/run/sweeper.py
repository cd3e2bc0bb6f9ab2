"""The job sweeper: jobs that should be moving and are not get their task again.

A queued or resolving job that no run holds (no lease) and that has not changed for BOXCUT_STALE_JOB_SECONDS may
have lost its task: deleted from the queue, rejected by Celery when a Redis fault kept its retry from being
published, or killed by the hard time limit. The sweep enqueues it again, at most once per that time, with an
audit entry. A job enqueued twice is safe: its lease and its state keep a second run from doing anything twice
(a job merely waiting behind a long queue may get one extra task, which finds nothing to do). Terminating jobs
are the send queue's (tasks/sending.py); jobs awaiting approval wait for a person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from worker.jobs.model import JobState
from worker.jobs.store import JobStore

log = logging.getLogger(__name__)

IDLE_STATES = (JobState.QUEUED, JobState.RESOLVING)

# Jobs the sweep looks at per state and round, oldest first.
SWEEP_LIMIT = 500


def requeue_stranded(store: JobStore, enqueue: Callable[[str], None], *, stale_seconds: float,
                     now: Callable[[], float] = time.time) -> list[str]:
    """Enqueue again every idle job that may have lost its task; return their ids."""
    requeued, at = [], now()
    for job_id in store.idle_jobs(IDLE_STATES, idle_seconds=stale_seconds, now=at, limit=SWEEP_LIMIT):
        store.note_requeued(job_id, why=f"no change for {stale_seconds:.0f} s and no run holds it: enqueued again",
                            at=at)
        enqueue(job_id)
        requeued.append(job_id)
    if requeued:
        log.warning("sweep: enqueued %d idle jobs again: %s", len(requeued), ", ".join(requeued[:20]))
    return requeued
