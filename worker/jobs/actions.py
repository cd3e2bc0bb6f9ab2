"""What operators do to a job after it was submitted: approve, retry, cancel. Used by the CLI and the API."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.errors import InvalidTransition, JobNotFound
from worker.jobs.brake import Brake
from worker.jobs.model import CANCELLABLE_STATES, Approval, Job, JobState, Target, TargetStatus
from worker.jobs.store import JobStore
from worker.jobs.submit import Enqueue, hand_over

log = logging.getLogger(__name__)

# Targets `retry` sends again: Box refused them, or their retries ran out.
RETRYABLE_STATUSES = frozenset({TargetStatus.FAILED, TargetStatus.DEAD})

# States of a job that should be moving on its own: `retry` of one that is not (its task lost, say) enqueues it
# again; its run takes it on from where its record stands.
MOVING_STATES = frozenset({JobState.QUEUED, JobState.RESOLVING, JobState.TERMINATING})


def approve(*, store: JobStore, enqueue: Enqueue, job_id: str, actor: str, note: str = "approved") -> Job:
    """Approve a job that waits for approval, recording who and when, and hand it back to the workers. A job
    a person approved is never held by the brake again."""
    job = store.load(job_id)
    before = store.approval_fields(job.approval)
    approval = (job.approval or Approval(required=True)).given_by(actor)
    store.transition(job_id, to=JobState.RESOLVING, allowed_from=[JobState.AWAITING_APPROVAL], actor=actor,
                     note=note, fields={**store.approval_fields(approval), "note": ""})

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
    store.undefer_settle(job_id)  # its next end is looked at when it comes, not when this one's would have settled
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


@dataclass(frozen=True)
class Released:
    """What a release of the brake did: the jobs it approved, and those it found moved on (cancelled, approved)."""

    source: str
    approved: list[str]
    skipped: list[str]
    until: str


def release_brake(*, store: JobStore, brake: Brake, enqueue: Enqueue, source: str, actor: str) -> Released:
    """Release the brake for `source` (`*`: every source): it holds none of that source's targets for the rest of
    the window, and every job it holds for that source is approved by `actor`, in one decision."""
    if not source.strip():
        raise InvalidTransition("name the source to release (boxcut brake lists them), or * for every source")
    if not brake.knows(source):
        raise InvalidTransition(f"the brake knows no source {source!r}: it counts, holds or released nothing of it "
                                "in this window (boxcut brake lists the sources it knows)")
    brake.release(source)
    until = datetime.fromtimestamp(time.time() + brake.limits.window_seconds, UTC)
    approved, skipped = [], []
    for job_id in sorted(brake.held_jobs(source)):
        try:
            approve(store=store, enqueue=enqueue, job_id=job_id, actor=actor,
                    note=f"released from the brake by {actor} (source {source})")
            approved.append(job_id)
        except (InvalidTransition, JobNotFound):  # cancelled, approved one by one, or gone since it was held
            skipped.append(job_id)
    brake.forget(approved + skipped)
    log.warning("brake released for source %s by %s until %s: %d held jobs approved", source, actor,
                until.isoformat(timespec="seconds"), len(approved))
    return Released(source=source, approved=approved, skipped=skipped,
                    until=until.isoformat(timespec="seconds").replace("+00:00", "Z"))


def held_by_brake(*, store: JobStore, brake: Brake) -> dict[str, str]:
    """Job id -> source of the jobs the brake holds now (still awaiting approval); forgets the others."""
    held = brake.held_jobs()
    gone = [job_id for job_id in held if not _awaiting(store, job_id)]
    brake.forget(gone)
    return {job_id: source for job_id, source in held.items() if job_id not in gone}


def brake_status(*, store: JobStore, brake: Brake, now_ms: int) -> dict[str, Any]:
    """The brake as `GET /v1/brake` and `boxcut brake --json` print it: its limits, the users counted in all and
    per source within the window, what is engaged or released, and the jobs it holds."""
    held_by_brake(store=store, brake=brake)
    limits = brake.limits
    return {"limits": {"users_per_source": limits.per_source, "total_users": limits.total,
                       "window_seconds": limits.window_seconds, "source_overrides": dict(limits.overrides)},
            "total": brake.totals(now_ms=now_ms).to_dict(),
            "sources": [s.to_dict() for s in brake.sources(now_ms=now_ms)]}


def _awaiting(store: JobStore, job_id: str) -> bool:
    try:
        return store.state(job_id) is JobState.AWAITING_APPROVAL
    except JobNotFound:
        return False
