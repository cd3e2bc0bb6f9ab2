"""Settling a job once Box has answered for its targets: the final state its targets' statuses add up to."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from worker import metrics
from worker.box.answers import GROUPS_TERMINATE_ENDPOINT, USERS_TERMINATE_ENDPOINT
from worker.errors import InvalidTransition
from worker.jobs.model import Job, JobState, Target, TargetStatus, TargetType
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore

log = logging.getLogger(__name__)

ENDPOINTS = {TargetType.USER: USERS_TERMINATE_ENDPOINT, TargetType.GROUP: GROUPS_TERMINATE_ENDPOINT}


def final_state(targets: Iterable[Target]) -> JobState:
    """The state a job ends in, from what became of its targets."""
    statuses = [t.status for t in targets]
    accepted = statuses.count(TargetStatus.ACCEPTED)
    if accepted == len(statuses):
        return JobState.SUCCEEDED
    if accepted:
        return JobState.PARTIAL
    if TargetStatus.FAILED in statuses or TargetStatus.DEAD in statuses:
        return JobState.FAILED
    if TargetStatus.WOULD_TERMINATE in statuses:
        return JobState.DRY_RUN
    return JobState.REFUSED


def queue_pending(queue: SendQueue, job: Job) -> set[str]:
    """Put every pending, resolved target of a terminating job in the send queue (those already waiting or in
    a call stay where they are); return the endpoints that have targets of this job waiting or in flight."""
    now_ms = int(time.time() * 1000)
    endpoints: set[str] = set()
    for kind, endpoint in ENDPOINTS.items():
        triples = [(job.job_id, i, t.box_id) for i, t in enumerate(job.targets)
                   if t.type is kind and t.status is TargetStatus.PENDING and t.box_id]
        if triples:
            queue.add(endpoint, triples, now_ms=now_ms)
            endpoints.add(endpoint)
    return endpoints


def settle_if_done(store: JobStore, queue: SendQueue, job_id: str) -> bool:
    """Give a terminating job its final state once no target of it is pending; True when it is settled.

    A terminating job with pending targets that nothing carries (a run stopped between its state and its
    queueing) has them queued again here, so no target is stranded.
    """
    job = store.load(job_id)
    if job.state is not JobState.TERMINATING:
        return job.state.is_final
    if any(t.status is TargetStatus.PENDING for t in job.targets):
        if queue.open_targets(job_id) <= 0:
            queue_pending(queue, job)
        return False
    final = final_state(job.targets)
    try:
        store.transition(job_id, to=final, allowed_from=[JobState.TERMINATING])
    except InvalidTransition:  # another sender settled it (or it was cancelled) a moment ago
        log.debug("job %s was settled meanwhile", job_id)
        return True
    accepted = final in (JobState.SUCCEEDED, JobState.PARTIAL)
    metrics.job_finished(final.value, submitted_to_accepted=_seconds_since(job.created_at) if accepted else None)
    return True


def _seconds_since(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
