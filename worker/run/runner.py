"""The job runner: resolve → policy → terminate in batches → record, safe to run again at any point.

A task run calls `run_job`. Everything it learns is written to the job record as it goes, and every step reads
the record first, so a redelivered or retried run picks up where the last one stopped: a call Box already
answered is never sent again, and a planned call that got no recorded answer is sent again under the same
call id (so the record never shows one batch twice).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.box.models import GROUPS_TERMINATE_ENDPOINT, USERS_TERMINATE_ENDPOINT, BoxUser, CallResult
from worker.errors import InvalidTransition, LeaseHeld, RetryLater
from worker.jobs.model import Approval, Call, CallState, Job, JobState, Target, TargetStatus, TargetType, utc_now
from worker.jobs.store import JobStore, LeaseRenewer
from worker.run.directory_cache import DirectoryCache
from worker.run.group_check import check_group
from worker.run.policy import Policy, blast_radius
from worker.run.resolver import DirectoryLookups, resolve_target

log = logging.getLogger(__name__)

# Answers for which Box refuses a whole batch for what may be one bad id (e.g. a user deleted since it was
# resolved): the batch is split in halves until the bad ids stand alone.
SPLIT_STATUSES = frozenset({400, 404})

# Targets resolved between two writes of the job record: a crash repeats at most this many lookups.
RESOLVE_CHECKPOINT = 25


class Terminator(Protocol):
    """The Box client calls that end sessions."""

    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0) -> CallResult: ...

    def terminate_groups(self, group_ids: Sequence[str], *, prior_attempts: int = 0) -> CallResult: ...


class BoxCalls(DirectoryLookups, Terminator, Protocol):
    """Everything the runner asks of Box."""

    def all_users(self) -> Iterator[BoxUser]: ...


    def group_members(self, group_id: str) -> tuple[int, list[BoxUser]]: ...


class RunOutcome(enum.Enum):
    """How a run ended: the job is settled (or waits for a person), or the run's time is up."""

    SETTLED = "settled"
    CONTINUE = "continue"


@dataclass
class RunContext:
    """What a run needs, built once per worker process and handed in."""

    store: JobStore
    box: BoxCalls
    policy: Policy
    batch_size: int
    run_budget_seconds: float
    lease_seconds: float = 60.0  # at least a run's hard time limit, so a live run never loses its hold
    clock: Callable[[], float] = field(default=time.monotonic)
    directory: DirectoryCache | None = None
    directory_min_targets: int = 200
    service_account_id: Callable[[], str | None] = field(default=lambda: None)


def run_job(*, ctx: RunContext, job_id: str) -> RunOutcome:
    """Carry a job as far as it can go in one run; raises `RetryLater` when Box asks to wait."""
    job = ctx.store.load(job_id)
    if job.state.is_final or job.state is JobState.AWAITING_APPROVAL:
        return RunOutcome.SETTLED
    deadline = ctx.clock() + ctx.run_budget_seconds
    with ctx.store.lease(job_id, ttl_seconds=ctx.lease_seconds) as lease:
        job = ctx.store.load(job_id)  # re-read under the lease: another run may have moved it on
        try:
            return _advance(ctx, job, deadline, lease)
        except InvalidTransition as exc:  # cancelled meanwhile: the record already says so
            log.info("job %s stopped: %s", job_id, exc)
            return RunOutcome.SETTLED


def _advance(ctx: RunContext, job: Job, deadline: float, lease: LeaseRenewer) -> RunOutcome:
    if job.state is JobState.QUEUED:
        ctx.store.transition(job.job_id, to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])
        job.state = JobState.RESOLVING
    if job.state is JobState.RESOLVING:
        if not _resolve_pending(ctx, job, deadline):
            return RunOutcome.CONTINUE
        _apply_protection(ctx, job)
        _measure_groups(ctx, job)
        radius = blast_radius(job.targets)
        ctx.store.set_fields(job.job_id, {"blast_radius": str(radius)}, event="blast_radius")
        reasons = ctx.policy.approval_reasons(job.targets, radius)
        if ctx.policy.is_dry_run(job.dry_run):
            return _finish_dry_run(ctx, job, reasons)
        if reasons and not is_approved(job):
            return _await_approval(ctx, job, reasons)
        ctx.store.transition(job.job_id, to=JobState.TERMINATING, allowed_from=[JobState.RESOLVING])
        job.state = JobState.TERMINATING
    if job.state is JobState.TERMINATING:
        if not _terminate_pending(ctx, job, deadline, lease):
            return RunOutcome.CONTINUE
        _finish(ctx, job)
    return RunOutcome.SETTLED


# -- resolve and policy --------------------------------------------------------------------------------------


def _resolve_pending(ctx: RunContext, job: Job, deadline: float) -> bool:
    """Resolve every pending, unresolved target; False when the run's time ran out first."""
    unresolved = [i for i, t in enumerate(job.targets) if t.status is TargetStatus.PENDING and not t.is_resolved]
    copy = _directory_copy(ctx, job, unresolved)
    changed: dict[int, Target] = {}
    for index in unresolved:
        target = job.targets[index]
        if ctx.clock() > deadline:
            ctx.store.save_targets(job.job_id, changed, event="resolved")
            return False
        resolve_target(box=ctx.box, target=target, copy=copy)
        changed[index] = target
        if len(changed) >= RESOLVE_CHECKPOINT:
            ctx.store.save_targets(job.job_id, changed, event="resolved")
            changed = {}
    ctx.store.save_targets(job.job_id, changed, event="resolved")
    return True


def _directory_copy(ctx: RunContext, job: Job, unresolved: list[int]) -> DirectoryCache | None:
    """The shared copy of the directory when this job names enough users to make one worth its pages."""
    users = sum(job.targets[i].type is TargetType.USER for i in unresolved)
    if ctx.directory is None or users < ctx.directory_min_targets:
        return None
    return ctx.directory if ctx.directory.ensure(ctx.box.all_users) else None


def _apply_protection(ctx: RunContext, job: Job) -> None:
    """End every protected target `protected`, so no call ever names it."""
    changed: dict[int, Target] = {}
    service_account = ctx.service_account_id()
    for index, target in enumerate(job.targets):
        pending = target.status is TargetStatus.PENDING
        reason = ctx.policy.protection(target, service_account_id=service_account) if pending else None
        if reason:
            target.status, target.detail = TargetStatus.PROTECTED, reason
            changed[index] = target
    ctx.store.save_targets(job.job_id, changed, event="protected")


def _measure_groups(ctx: RunContext, job: Job) -> None:
    """Check each pending group's members against the policy, count them, and record them when asked."""
    groups = {i: t for i, t in enumerate(job.targets) if t.type is TargetType.GROUP
              and t.status is TargetStatus.PENDING and t.group_id and t.member_count is None}
    if not groups:
        return
    copy = ctx.directory if ctx.directory is not None and ctx.directory.ensure(ctx.box.all_users) else None
    service_account = ctx.service_account_id()
    for target in groups.values():
        check_group(box=ctx.box, policy=ctx.policy, target=target, record_members=job.expand_groups,
                    service_account_id=service_account, known_user=copy.by_id if copy else lambda _id: None)
    ctx.store.save_targets(job.job_id, groups, event="groups_checked")


def _await_approval(ctx: RunContext, job: Job, reasons: list[str]) -> RunOutcome:
    """Hold the job until a person approves it; nothing is sent meanwhile."""
    ctx.store.transition(job.job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.RESOLVING],
                         note="; ".join(reasons), fields=ctx.store.approval_fields(Approval.needed(reasons)))
    return RunOutcome.SETTLED


def _finish_dry_run(ctx: RunContext, job: Job, reasons: list[str]) -> RunOutcome:
    changed: dict[int, Target] = {}
    for index, target in enumerate(job.targets):
        if target.status is TargetStatus.PENDING:
            target.status, target.detail = TargetStatus.WOULD_TERMINATE, "dry run: no call was sent to Box"
            changed[index] = target
    ctx.store.save_targets(job.job_id, changed, event="dry_run")
    # Say what a real run would wait for, so a dry run also shows whether approval will be needed.
    ctx.store.transition(job.job_id, to=JobState.DRY_RUN, allowed_from=[JobState.RESOLVING],
                         fields=ctx.store.approval_fields(Approval.needed(reasons)) if reasons else None)
    return RunOutcome.SETTLED


def is_approved(job: Job) -> bool:
    """A person approved the job (after it waited, or when submitting it with --approve)."""
    return job.approval is not None and job.approval.approved


# -- terminate -------------------------------------------------------------------------------------------


def _terminate_pending(ctx: RunContext, job: Job, deadline: float, lease: LeaseRenewer) -> bool:
    """Send every open call, planning new ones for targets without one; False when time ran out."""
    while True:
        open_calls = [c for c in job.calls if c.state is CallState.PLANNED]
        if not open_calls:
            open_calls = _plan_calls(ctx, job)
        if not open_calls:
            return True
        for call in open_calls:
            if ctx.clock() > deadline:
                return False
            _send(ctx, job, call)
            lease.renew()


def _plan_calls(ctx: RunContext, job: Job) -> list[Call]:
    """Batch the pending, resolved targets that no open call covers, users and groups apart."""
    open_ids = {c.call_id for c in job.calls if c.state is CallState.PLANNED}
    planned: list[Call] = []
    for kind, endpoint in ((TargetType.USER, USERS_TERMINATE_ENDPOINT), (TargetType.GROUP, GROUPS_TERMINATE_ENDPOINT)):
        waiting = {
            i: t for i, t in enumerate(job.targets)
            if t.type is kind and t.status is TargetStatus.PENDING and t.is_resolved
            and not (t.call_ids and t.call_ids[-1] in open_ids)
        }
        for chunk in _chunks_by_box_id(waiting, ctx.batch_size):
            call = ctx.store.plan_call(job.job_id, endpoint=endpoint, targets=chunk)
            job.calls.append(call)
            planned.append(call)
    return planned


def _chunks_by_box_id(targets: dict[int, Target], size: int) -> list[dict[int, Target]]:
    """Split targets so that each chunk names at most `size` distinct Box ids (duplicates share a slot)."""
    chunks: list[dict[int, Target]] = []
    ids_in_chunk: set[str] = set()
    for index, target in targets.items():
        box_id = target.box_id or ""
        if not chunks or (box_id not in ids_in_chunk and len(ids_in_chunk) >= size):
            chunks.append({})
            ids_in_chunk = set()
        chunks[-1][index] = target
        ids_in_chunk.add(box_id)
    return chunks


def _send(ctx: RunContext, job: Job, call: Call) -> None:
    """Send one planned call (checking policy once more first) and record Box's final answer."""
    targets = {i: t for i, t in enumerate(job.targets) if t.call_ids and t.call_ids[-1] == call.call_id
               and t.status is TargetStatus.PENDING}
    _recheck_protection(ctx, targets, call)
    if ctx.policy.dry_run:  # switched on since the job was planned: the global brake holds every call
        for target in targets.values():
            target.status, target.detail = TargetStatus.WOULD_TERMINATE, "not sent: BOXCUT_DRY_RUN is on"
        call.ids = []
    if not call.ids:
        call.state, call.message = CallState.ANSWERED, "not sent: no target it named may be terminated now"
        ctx.store.save_call(job.job_id, call, targets)
        return
    call.started_at = call.started_at or utc_now()
    send = ctx.box.terminate_users if call.endpoint == USERS_TERMINATE_ENDPOINT else ctx.box.terminate_groups
    try:
        result = send(call.ids, prior_attempts=call.attempts)
    except RetryLater as wait:
        call.attempts += getattr(wait, "attempts", 0)
        ctx.store.save_call(job.job_id, call)
        raise
    _record_result(call, result)
    if result.http_status in SPLIT_STATUSES and len(call.ids) > 1:
        ctx.store.save_call(job.job_id, call, targets)
        _split(ctx, job, call, targets)
        return
    _settle_targets(targets, result)
    ctx.store.save_call(job.job_id, call, targets)


def _recheck_protection(ctx: RunContext, targets: dict[int, Target], call: Call) -> None:
    service_account = ctx.service_account_id()
    for target in targets.values():
        reason = ctx.policy.protection(target, service_account_id=service_account)
        if reason:
            target.status, target.detail = TargetStatus.PROTECTED, reason
    still = {t.box_id for t in targets.values() if t.status is TargetStatus.PENDING}
    call.ids = [i for i in call.ids if i in still]


def _record_result(call: Call, result: CallResult) -> None:
    call.state = CallState.ANSWERED
    call.http_status, call.message = result.http_status, result.message
    call.error_code, call.request_id = result.error_code, result.request_id
    call.attempts = result.attempts
    call.started_at = call.started_at or result.started_at
    call.finished_at, call.exhausted = result.finished_at, result.exhausted


def _settle_targets(targets: dict[int, Target], result: CallResult) -> None:
    if result.accepted:
        status, detail = TargetStatus.ACCEPTED, None
    elif result.exhausted:
        status, detail = TargetStatus.DEAD, f"retries exhausted after {result.attempts} calls: {_said(result)}"
    else:
        status, detail = TargetStatus.FAILED, _said(result)
    for target in targets.values():
        if target.status is TargetStatus.PENDING:  # not one the re-check just protected: it was not sent
            target.status, target.detail = status, detail


def _said(result: CallResult) -> str:
    if result.http_status is None:
        return "Box did not answer (timeouts or connection errors)"
    code = f" {result.error_code}" if result.error_code else ""
    return f"Box answered {result.http_status}{code}: {result.message or '(no message)'}"


def _split(ctx: RunContext, job: Job, call: Call, targets: dict[int, Target]) -> None:
    """Box refused a whole batch (400 or 404): plan its halves as new calls, to isolate the bad ids."""
    half = max(1, len(call.ids) // 2)
    for ids in (set(call.ids[:half]), set(call.ids[half:])):
        part = {i: t for i, t in targets.items() if t.box_id in ids}
        job.calls.append(ctx.store.plan_call(job.job_id, endpoint=call.endpoint, targets=part))


def _finish(ctx: RunContext, job: Job) -> None:
    """Settle the job's state from its targets' statuses."""
    statuses = [t.status for t in job.targets]
    accepted = statuses.count(TargetStatus.ACCEPTED)
    if accepted == len(statuses):
        final = JobState.SUCCEEDED
    elif accepted:
        final = JobState.PARTIAL
    elif TargetStatus.FAILED in statuses or TargetStatus.DEAD in statuses:
        final = JobState.FAILED
    elif TargetStatus.WOULD_TERMINATE in statuses:
        final = JobState.DRY_RUN
    else:
        final = JobState.REFUSED
    ctx.store.transition(job.job_id, to=final, allowed_from=[JobState.TERMINATING])


def give_up(*, store: JobStore, job_id: str, why: str, lease_seconds: float = 60.0) -> None:
    """End every still-pending target `dead` and settle the job: used when a job's task retries run out or
    an unexpected error stopped it. Does nothing while another run holds the job (that run will settle it)."""
    try:
        with store.lease(job_id, ttl_seconds=lease_seconds):
            _give_up(store, job_id, why)
    except LeaseHeld:
        log.warning("job %s: not giving up: another run holds it", job_id)


def _give_up(store: JobStore, job_id: str, why: str) -> None:
    job = store.load(job_id)
    if job.state.is_final:
        return
    changed = {i: t for i, t in enumerate(job.targets) if t.status is TargetStatus.PENDING}
    for target in changed.values():
        target.status, target.detail = TargetStatus.DEAD, why
    store.save_targets(job_id, changed, event="gave_up")
    accepted = sum(t.status is TargetStatus.ACCEPTED for t in job.targets)
    final = JobState.PARTIAL if accepted else JobState.FAILED
    store.transition(job_id, to=final, allowed_from=[s for s in JobState if not s.is_final], note=why)
