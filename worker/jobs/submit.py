"""Submitting work: validate a request's targets, create the job record, enqueue it for a worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker import logs
from worker.errors import InvalidRequest, NotEnqueued, describe_error
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import CANCELLABLE_STATES, Approval, Job, JobState, Target, TargetStatus, utc_now
from worker.jobs.store import JobStore
from worker.jobs.targets import check_target
from worker.transactions import GuardedWrite, GuardFailed

log = logging.getLogger(__name__)

# Hands a job id to the workers (`tasks.app.enqueuer`, handed in from outside: this layer knows no Celery app).
Enqueue = Callable[[str], None]
# The Redis commands (each a command and its arguments) that publish a job id's task, exactly as the broker's
# transport would send them (`tasks.publishing.task_writes`): only for a broker on the store's own Redis, where a
# submission then claims its key, writes its record and publishes its task in one step.
TaskWrites = Callable[[str], list[tuple[str, ...]]]
# How often a submission in one step tries again when the claim it met was gone by the time it looked at it.
_CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class JobRequest:
    """What a caller asks for: targets plus who asked, why, and from where."""

    targets: list[dict[str, Any]]
    source: str
    reason: str = ""
    requested_by: str = "unknown"
    dry_run: bool = False
    source_event_id: str | None = None
    severity: str | None = None
    link: str | None = None
    expand_groups: bool = False
    approval: Approval | None = None
    # Why this request is recorded and never acted on (a Box Shield rule says so); None: it is acted on.
    record_only: str | None = None


def build_job(request: JobRequest) -> Job:
    """A new job for a request, its targets validated: queued, or already `recorded` when it is recorded only
    (nothing is looked up or sent for it; the record and its audit entry are what it is for)."""
    if not request.targets and not request.record_only:  # a recorded request may name nobody boxcut can map
        raise InvalidRequest("targets", "at least one target is needed")
    targets = [Target.from_input(check_target(t, f"targets[{i}]")) for i, t in enumerate(request.targets)]
    if request.record_only:
        for target in targets:
            target.status, target.detail = TargetStatus.RECORDED, request.record_only
    now = utc_now()
    return Job(
        job_id=JobStore.new_job_id(),
        state=JobState.RECORDED if request.record_only else JobState.QUEUED,
        note=request.record_only,
        source=request.source,
        reason=request.reason,
        requested_by=request.requested_by,
        dry_run=request.dry_run,
        created_at=now,
        updated_at=now,
        source_event_id=request.source_event_id,
        severity=request.severity,
        link=request.link,
        expand_groups=request.expand_groups,
        approval=request.approval,
        targets=targets,
    )


@dataclass(frozen=True)
class Submitted:
    """A submitted job's id, and whether an earlier submission with the same key made it (a duplicate)."""

    job_id: str
    duplicate: bool


def submit(*, store: JobStore, enqueue: Enqueue, job: Job, keys: IdempotencyKeys | None = None,
           key: str | None = None, task_writes: TaskWrites | None = None) -> Submitted:
    """`_submit`, or `_submit_in_one_step` when `task_writes` is given, with every line it logs naming the job
    (worker/logs.py)."""
    with logs.context(job_id=job.job_id, source=job.source, source_event_id=job.source_event_id):
        if task_writes is not None:
            return _submit_in_one_step(store=store, enqueue=enqueue, task_writes=task_writes, job=job, keys=keys,
                                       key=key)
        return _submit(store=store, enqueue=enqueue, job=job, keys=keys, key=key)


def _submit(*, store: JobStore, enqueue: Enqueue, job: Job, keys: IdempotencyKeys | None,
            key: str | None) -> Submitted:
    """The one way every source submits a job: claim `key` (when given), write the record, then enqueue it, so
    the record exists before any worker can see the job. A key an earlier submission claimed returns that job.

    If the record cannot be written, the claim is released. If the broker refuses the job, it ends `cancelled`
    with the reason in its record (see `hand_over`), the claim is released so the sender's retry is not taken for
    a duplicate, and NotEnqueued is raised. When even that cannot be written (Redis, which is the broker too, went
    away), the record stays `queued` and never marked enqueued: the sender's retry, a duplicate, enqueues it.
    """
    if key is not None:
        if keys is None:
            raise ValueError("a submission key needs the IdempotencyKeys that remember it")
        first = keys.claim(source=job.source, event_key=key, job_id=job.job_id)
        if first is not None and not _orphaned(store, first):
            _enqueue_if_stranded(store, enqueue, first)
            return Submitted(first, True)
        if first is not None and not keys.take_over(source=job.source, event_key=key, stale_job_id=first,
                                                    job_id=job.job_id):
            return _submit(store=store, enqueue=enqueue, job=job, keys=keys, key=key)

    def release() -> None:
        if keys is not None and key is not None:
            keys.release(source=job.source, event_key=key, job_id=job.job_id)

    try:
        store.create(job)
    except Exception:
        release()
        raise
    if job.state.is_final:  # recorded only: no worker has anything to do with it
        store.mark_kept(job.job_id)
        return Submitted(job.job_id, False)

    def undo(why: str) -> None:
        store.transition(job.job_id, to=JobState.CANCELLED, allowed_from=CANCELLABLE_STATES, note=why,
                         fields={"note": why})
        release()

    hand_over(enqueue, job.job_id, undo=undo)
    store.mark_enqueued(job.job_id)
    return Submitted(job.job_id, False)


def _submit_in_one_step(*, store: JobStore, enqueue: Enqueue, task_writes: TaskWrites, job: Job,
                        keys: IdempotencyKeys | None, key: str | None) -> Submitted:
    """`_submit` for a broker on the store's own Redis: the claim of `key`, the record and its task's message,
    and last the mark that it was enqueued, are one Lua step.

    So there is nothing to undo. Redis refusing the step (down, full: a script is refused at its first write,
    failing over) leaves nothing behind and the error goes up: the intake answers 503, and the sender's retry makes
    the job, or, when the step was applied and only its answer was lost, finds it by its claim. (A command failing
    within the step, which nothing boxcut writes makes happen, would leave a record never marked enqueued: a
    stranded job, which a repeat or the sweep enqueues.) A task that cannot be built raises NotEnqueued, nothing
    written."""
    if key is not None and keys is None:
        raise ValueError("a submission key needs the IdempotencyKeys that remember it")
    publish = [] if job.state.is_final else _task_commands(task_writes, job.job_id)
    if keys is None or key is None:
        _write_in_one_step(store, job, publish, claim=None)
        return Submitted(job.job_id, False)
    return _claim_in_one_step(store, enqueue, job, publish, keys=keys, key=key)


def _claim_in_one_step(store: JobStore, enqueue: Enqueue, job: Job, publish: list[tuple[str, ...]], *,
                       keys: IdempotencyKeys, key: str) -> Submitted:
    """Write the job in one step with the claim of `key`; a key claimed before returns that job, as in `_submit`
    (a claim whose job was never created is taken over, a job never enqueued is enqueued)."""
    claim: tuple[IdempotencyKeys, str] | None = (keys, key)
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            _write_in_one_step(store, job, publish, claim=claim)
            return Submitted(job.job_id, False)
        except GuardFailed:
            first = keys.holder(source=job.source, event_key=key)
        if first == job.job_id:  # this very step, applied by an attempt whose answer was lost (redis-py retried it)
            return Submitted(job.job_id, False)
        if first is None:
            continue  # the claim expired since: claim it again
        if not _orphaned(store, first):
            _enqueue_if_stranded(store, enqueue, first)
            return Submitted(first, True)
        taken = keys.take_over(source=job.source, event_key=key, stale_job_id=first, job_id=job.job_id)
        claim = None if taken else (keys, key)
    raise RuntimeError(f"the claim of {key!r} changed hands {_CLAIM_ATTEMPTS} times while job {job.job_id} was "
                       "submitted")


def _task_commands(task_writes: TaskWrites, job_id: str) -> list[tuple[str, ...]]:
    """The commands that publish the job's task; NotEnqueued (nothing was written) when they cannot be made."""
    try:
        return task_writes(job_id)
    except Exception as error:
        raise NotEnqueued(job_id, f"could not be enqueued: the broker refused it ({describe_error(error)}); "
                                  "nothing was kept") from error


def _write_in_one_step(store: JobStore, job: Job, publish: list[tuple[str, ...]], *,
                       claim: tuple[IdempotencyKeys, str] | None) -> None:
    """Claim a key (`claim`: the keys and the key), write the job's record and publish its task, in one step;
    GuardFailed when the key is claimed already."""
    step = GuardedWrite()
    if claim is not None:
        keys, key = claim
        keys.stage_claim(step, source=job.source, event_key=key, job_id=job.job_id)
    store.stage_create(step, job)
    for command in publish:
        step.write(*command)
    store.apply_submission(step, job)


def _enqueue_if_stranded(store: JobStore, enqueue: Enqueue, job_id: str) -> None:
    """Enqueue an earlier submission's job that was never enqueued (its submitter could neither enqueue it nor
    record that it could not); a job enqueued twice is safe, as a redelivered task is."""
    if not store.stranded(job_id):
        return
    log.warning("job %s was submitted but never enqueued; enqueuing it for this repeat of its submission", job_id)

    def keep_waiting(why: str) -> None:
        store.set_fields(job_id, {"note": why}, event="not_enqueued")

    hand_over(enqueue, job_id, undo=keep_waiting)
    store.mark_enqueued(job_id)


def hand_over(enqueue: Enqueue, job_id: str, *, undo: Callable[[str], None]) -> None:
    """Give a job to the workers. When the broker refuses it, `undo(why)` takes back what the caller did (a new
    job ends `cancelled`; an approval or a retry is undone) with `why` in the record's audit note, and NotEnqueued
    is raised: the same for every submission and every operator action, so nothing waits for a task that was
    never sent."""
    try:
        enqueue(job_id)
    except Exception as error:
        why = f"could not be enqueued: the broker refused it ({describe_error(error)}); nothing was sent to Box"
        try:
            undo(why)
        except Exception as undo_error:  # Redis is the broker too: it is often down for both
            log.error("job %s %s; recording that failed too (%s)", job_id, why, describe_error(undo_error))
        raise NotEnqueued(job_id, why) from error


def _orphaned(store: JobStore, job_id: str, *, wait_seconds: float = 2.0) -> bool:
    """Whether a claimed job id never became a record: its submitter died between claiming and creating.
    A claim is made a moment before its record, so a missing record is given `wait_seconds` to appear."""
    deadline = time.monotonic() + wait_seconds
    while not store.exists(job_id):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False
