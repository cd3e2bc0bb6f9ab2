"""What operators do to a job after it was submitted: approve, retry, cancel. Used by the CLI and the API."""

from __future__ import annotations

import json
from collections.abc import Callable

from worker.job_model import CANCELLABLE_STATES, Job, JobState, TargetStatus, utc_now
from worker.job_store import JobStore

# Targets `retry` sends again: Box refused them, or their retries ran out.
RETRYABLE_STATUSES = frozenset({TargetStatus.FAILED, TargetStatus.DEAD})


def approve(*, store: JobStore, enqueue: Callable[[str], None], job_id: str, actor: str) -> Job:
    """Approve a job that waits for approval, recording who and when, and hand it back to the workers."""
    job = store.load(job_id)
    approval = dict(job.approval or {"required": True, "reasons": []})
    approval.update(approved_by=actor, approved_at=utc_now())
    store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.AWAITING_APPROVAL], actor=actor,
                     note="approved", fields={"approval": json.dumps(approval)})
    enqueue(job_id)
    return store.load(job_id)


def pre_approval(actor: str) -> dict[str, object]:
    """The approval of an operator who approves a job as they submit it (`offboard --approve`)."""
    return {"required": None, "reasons": [], "approved_by": actor, "approved_at": utc_now(), "at_submission": True}


def retry(*, store: JobStore, enqueue: Callable[[str], None], job_id: str, actor: str) -> int:
    """Send again only the targets that ended `failed` or `dead`; return how many. Their earlier calls stay
    in the record; the new calls are added beside them."""
    job = store.load(job_id)
    again = {i: t for i, t in enumerate(job.targets) if t.status in RETRYABLE_STATUSES}
    if not again:
        return 0
    store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.FAILED, JobState.PARTIAL], actor=actor,
                     note=f"retry of {len(again)} failed or dead targets")
    for target in again.values():
        target.status, target.detail = TargetStatus.PENDING, None
    store.save_targets(job_id, again, event="retry")
    store.forget_dead(job_id)
    enqueue(job_id)
    return len(again)


def cancel(*, store: JobStore, job_id: str, actor: str) -> Job:
    """Cancel a job; possible until its first Box call is sent (InvalidTransition after)."""
    store.transition(job_id, to=JobState.CANCELLED, allowed_from=CANCELLABLE_STATES, actor=actor)
    return store.load(job_id)
