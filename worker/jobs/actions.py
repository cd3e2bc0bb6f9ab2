"""What operators do to a job after it was submitted: approve, retry, cancel. Used by the CLI and the API."""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.errors import InvalidTransition
from worker.jobs.model import CANCELLABLE_STATES, Approval, Job, JobState, Target, TargetStatus
from worker.jobs.store import JobStore
from worker.jobs.submit import Enqueue, hand_over

# Targets `retry` sends again: Box refused them, or their retries ran out.
RETRYABLE_STATUSES = frozenset({TargetStatus.FAILED, TargetStatus.DEAD})

# States of a job that should be moving on its own: `retry` of one that is not (its task lost, say) enqueues it
# again; its run takes it on from where its record stands.
MOVING_STATES = frozenset({JobState.QUEUED, JobState.RESOLVING, JobState.TERMINATING})


def approve(*, store: JobStore, enqueue: Enqueue, job_id: str, actor: str) -> Job:
    """Approve a job that waits for approval, recording who and when, and hand it back to the workers."""
    job = store.load(job_id)
    before = store.approval_fields(job.approval)
    approval = (job.approval or Approval(required=True)).given_by(actor)
    store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.AWAITING_APPROVAL], actor=actor,
                     note="approved", fields={**store.approval_fields(approval), "note": ""})

    def undo(why: str) -> None:
        # No worker will see it: put it back as it was, so the approval can simply be given again.
        store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.RESOLVING], actor=actor,
                         note=f"approval undone: {why}", fields={**before, "note": f"approval undone: {why}"})

    hand_over(enqueue, job_id, undo=undo)
    return store.load(job_id)


def pre_approval(actor: str) -> Approval:
    """The approval of an operator who approves a job as they submit it (`offboard --approve`)."""
    return Approval.at_submit(actor)


@dataclass(frozen=True)
class Retried:
    """What `retry` did: sent `targets` failed or dead targets again, or (`restarted`) enqueued again a job
    that was not moving, with `targets` still pending."""

    targets: int
    restarted: bool = False


def retry(*, store: JobStore, enqueue: Enqueue, job_id: str, actor: str) -> Retried:
    """Send again only the targets that ended `failed` or `dead`. Their earlier calls stay in the record; the
    new calls are added beside them. A job that should be moving and is not gets its task again (`restart`)."""
    job = store.load(job_id)
    if job.state in MOVING_STATES:
        return Retried(restart(store=store, enqueue=enqueue, job=job, actor=actor), restarted=True)
    if job.state is JobState.AWAITING_APPROVAL:
        raise InvalidTransition(f"job {job_id} awaits approval; approve it or cancel it")
    again = {i: t for i, t in enumerate(job.targets) if t.status in RETRYABLE_STATUSES}
    if not again:
        return Retried(0)
    if job.state not in (JobState.FAILED, JobState.PARTIAL):
        raise InvalidTransition(f"job {job_id} is {job.state.value}; only a failed or partial job is retried")
    # Targets first, state second: while the job is still final no run touches it, and once it is
    # resolving its targets are already pending, so a run never finds it half reset.
    before = {i: Target.from_dict(t.to_dict()) for i, t in again.items()}
    for target in again.values():
        target.status, target.detail = TargetStatus.PENDING, None
    store.save_targets(job_id, again, event="retry")
    store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.FAILED, JobState.PARTIAL], actor=actor,
                     note=f"retry of {len(again)} failed or dead targets", fields={"note": ""})

    def undo(why: str) -> None:
        # No worker will see it: undo, state first, so the retry can simply be asked for again.
        store.transition(job_id, to=job.state, allowed_from=[JobState.RESOLVING], actor=actor,
                         note=f"retry undone: {why}", fields={"note": f"retry undone: {why}"})
        store.save_targets(job_id, before, event="retry_undone")

    hand_over(enqueue, job_id, undo=undo)
    store.forget_dead(job_id)
    return Retried(len(again))


def restart(*, store: JobStore, enqueue: Enqueue, job: Job, actor: str) -> int:
    """Enqueue again a queued, resolving or terminating job that no run holds (its task lost, or stuck behind a
    fault), noting who asked; return its targets still pending. A second task for a job is harmless: its lease
    and its state keep a run from doing anything twice."""
    if store.leased(job.job_id):
        raise InvalidTransition(f"job {job.job_id} is {job.state.value} and a worker is running it now; "
                                "cancel it to stop it")
    pending = sum(1 for t in job.targets if t.status is TargetStatus.PENDING)
    store.note_requeued(job.job_id, why=f"{actor} asked to retry a {job.state.value} job: enqueued again",
                        at=time.time())
    hand_over(enqueue, job.job_id, undo=lambda why: None)
    return pending


def cancel(*, store: JobStore, job_id: str, actor: str) -> Job:
    """Cancel a job; possible until it is settled (InvalidTransition after). Its targets still waiting in the send
    queue are never sent; the sender drops them when it takes them."""
    if store.state(job_id) is JobState.CANCELLED:
        return store.load(job_id)  # asked twice (a retried request, two operators): already done
    store.transition(job_id, to=JobState.CANCELLED, allowed_from=CANCELLABLE_STATES, actor=actor)
    return store.load(job_id)
