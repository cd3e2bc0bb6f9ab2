"""The job runner: resolve → policy → queue for sending → send (shared) → settle, safe to run again anywhere.

A task run calls `run_job`. Everything it learns is written to the job record as it goes, and every step reads
the record first, so a redelivered or retried run picks up where the last one stopped. A job's cleared targets
join the send queue shared by every job (worker.jobs.send_queue); the run then sends from that queue itself
(worker.run.sender), so when nothing else is in flight its own targets leave at once. The sender that records
the last answer for a job's targets settles the job.
"""

from __future__ import annotations

import contextlib
import enum
import logging

from worker import logs
from worker.errors import InvalidTransition, LeaseHeld
from worker.jobs.model import Approval, Job, JobState, Target, TargetStatus, TargetType
from worker.jobs.send_queue import Taken
from worker.jobs.store import JobStore
from worker.run.context import RunContext
from worker.run.directory_cache import DirectoryCache
from worker.run.group_check import check_group
from worker.run.heartbeat import Held
from worker.run.lookups import SharedLookups
from worker.run.policy import blast_radius
from worker.run.resolver import RESOLVED_BY_DIRECTORY, resolve_target
from worker.run.sender import CREDENTIALS_REFUSED, drain, iso_ms
from worker.run.settlement import ENDPOINTS, queue_pending, settle_if_done
from worker.transactions import GuardedWrite, GuardFailed

log = logging.getLogger(__name__)

# Targets resolved between two writes of the job record: a crash repeats at most this many lookups.
RESOLVE_CHECKPOINT = 25


class RunOutcome(enum.Enum):
    """How a run ended: the job is settled, waits for a person, or has its targets in the send queue (its last
    sender settles it); or the run's time is up."""

    SETTLED = "settled"
    CONTINUE = "continue"
    SENDING = "sending"  # its targets are in the send queue: the run sends from it once it lets go of the job


def run_job(*, ctx: RunContext, job_id: str) -> RunOutcome:
    """Carry a job as far as it can go in one run; raises `RetryLater` when Box asks to wait."""
    job = ctx.store.load(job_id)
    with logs.context(job_id=job_id, source=job.source, source_event_id=job.source_event_id):
        return _run_loaded(ctx, job)


def _run_loaded(ctx: RunContext, job: Job) -> RunOutcome:
    job_id = job.job_id
    if job.state.is_final or job.state is JobState.AWAITING_APPROVAL:
        return RunOutcome.SETTLED
    deadline = ctx.clock() + ctx.run_budget_seconds
    with ctx.store.lease(job_id, ttl_seconds=ctx.lease_seconds) as lease, ctx.beat.holding_lease(lease.renew) as held:
        job = ctx.store.load(job_id)  # re-read under the lease: another run may have moved it on
        try:
            outcome = _advance(ctx, job, deadline, held)
        except InvalidTransition as exc:  # cancelled meanwhile: the record already says so
            log.info("job %s stopped: %s", job_id, exc)
            return RunOutcome.SETTLED
    # Sending needs no hold on the job: calls are shared, and each is decided and recorded on its own.
    return _send_queued(ctx, job, deadline) if outcome is RunOutcome.SENDING else outcome


def _advance(ctx: RunContext, job: Job, deadline: float, held: Held) -> RunOutcome:
    if job.state is JobState.QUEUED:
        ctx.store.transition(job.job_id, to=JobState.RESOLVING, allowed_from=[JobState.QUEUED])
        job.state = JobState.RESOLVING
    if job.state is JobState.RESOLVING:
        if not _resolve_pending(ctx, job, deadline, held):
            return RunOutcome.CONTINUE
        _still_held(held)
        _apply_protection(ctx, job)
        _measure_groups(ctx, job)
        _still_held(held)
        radius = blast_radius(job.targets)
        ctx.store.set_fields(job.job_id, {"blast_radius": str(radius)}, event="blast_radius")
        reasons = [*asked_approval(job), *ctx.policy.approval_reasons(job.targets, radius)]
        if ctx.policy.is_dry_run(job.dry_run):
            return _finish_dry_run(ctx, job, reasons)
        if reasons and not is_approved(job):
            return _await_approval(ctx, job, reasons)
        ctx.store.transition(job.job_id, to=JobState.TERMINATING, allowed_from=[JobState.RESOLVING])
        job.state = JobState.TERMINATING
    if job.state is JobState.TERMINATING:
        return _queue_for_sending(ctx, job)
    return RunOutcome.SETTLED


# -- resolve and policy --------------------------------------------------------------------------------------


def _still_held(held: Held) -> None:
    """Stop a run whose lease the heartbeat could not renew (it ran out, and may be another run's now) before it
    writes again: the job's next run goes on from its record."""
    if held.lost:
        raise LeaseHeld(1.0)


def _resolve_pending(ctx: RunContext, job: Job, deadline: float, held: Held) -> bool:
    """Resolve every pending, unresolved target; False when the run's time ran out first."""
    unresolved = [i for i, t in enumerate(job.targets) if t.status is TargetStatus.PENDING and not t.is_resolved]
    directory = _directory_copy(ctx, job, unresolved)
    as_of = directory.built_at() if directory else None
    wanted = [job.targets[i].input for i in unresolved if job.targets[i].type is TargetType.USER]
    copy = directory.snapshot(logins=[w["login"] for w in wanted if w.get("login")],
                              ids=[w["id"] for w in wanted if w.get("id")]) if directory else None
    lookups = SharedLookups(ctx.box, ctx.store.redis, key_prefix=ctx.store.prefix, sleep=ctx.sleep)
    changed: dict[int, Target] = {}
    for index in unresolved:
        target = job.targets[index]
        if ctx.clock() > deadline:
            ctx.store.save_targets(job.job_id, changed, event="resolved")
            return False
        resolve_target(box=lookups, target=target, copy=copy)
        if target.resolved_by == RESOLVED_BY_DIRECTORY:
            target.directory_as_of = as_of
        changed[index] = target
        if len(changed) >= RESOLVE_CHECKPOINT:
            _still_held(held)
            ctx.store.save_targets(job.job_id, changed, event="resolved")
            changed = {}
    _still_held(held)
    ctx.store.save_targets(job.job_id, changed, event="resolved")
    return True


def _directory_copy(ctx: RunContext, job: Job, unresolved: list[int]) -> DirectoryCache | None:
    """The shared copy of the directory, when resolving from it is cheaper than looking users up.

    A copy in place costs nothing. Otherwise a copy costs a call per 1,000 users of the enterprise and a lookup
    a call per login, counting the lookups other jobs wait to make too (an alert storm): the copy is made when
    it costs no more than those lookups. Before boxcut knows the enterprise's size, BOXCUT_DIRECTORY_CACHE_MIN_
    TARGETS lookups decide.
    """
    users = sum(job.targets[i].type is TargetType.USER for i in unresolved)
    if ctx.directory is None or users == 0:
        return None
    if ctx.directory.ready():
        return ctx.directory
    pages = ctx.directory.pages()
    lookups = users + max(0, ctx.store.jobs_to_resolve() - 1)
    if lookups < (pages if pages is not None else ctx.directory_min_targets):
        return None
    return ctx.directory if ctx.directory.ensure(ctx.box.all_users) else None


def refresh_directory(ctx: RunContext, *, max_users: int, max_age_seconds: float) -> str:
    """Keep the directory copy fresh in the background when the enterprise is small enough for that to be
    cheap (at most `max_users`: a call per 1,000 of them each round); returns what it did, for the log."""
    if ctx.directory is None:
        return "no directory copy configured"
    size = ctx.directory.known_size()
    if size is None:
        size = ctx.box.count_users()
        ctx.directory.note_size(size)
    if size > max_users:
        return f"{size} users: too many to copy in the background; large jobs copy it when they need it"
    age = ctx.directory.age_seconds()
    if age is not None and age < max_age_seconds:
        return f"copy is {age:.0f} s old"
    return "copied" if ctx.directory.refresh(ctx.box.all_users) else "another worker is copying"


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
    # A copy in place gives members' roles without a call each; a group alone never pays for a whole copy.
    copy = ctx.directory if ctx.directory is not None and ctx.directory.ready() else None
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


def asked_approval(job: Job) -> list[str]:
    """The reasons a job was submitted to wait for approval with (a Box Shield rule), whatever the policy finds."""
    return list(job.approval.reasons) if job.approval is not None and job.approval.required else []


def is_approved(job: Job) -> bool:
    """A person approved the job (after it waited, or when submitting it with --approve)."""
    return job.approval is not None and job.approval.approved


# -- terminate -------------------------------------------------------------------------------------------


def _queue_for_sending(ctx: RunContext, job: Job) -> RunOutcome:
    """Hand the job's cleared targets to the shared send queue; settle the job when none is left to send."""
    endpoints = queue_pending(ctx.queue, job)
    if not endpoints or ctx.queue.open_targets(job.job_id) <= 0:
        settle_if_done(ctx.store, ctx.queue, job.job_id)
        return RunOutcome.SETTLED
    return RunOutcome.SENDING


def _send_queued(ctx: RunContext, job: Job, deadline: float) -> RunOutcome:
    """Send from the queue in this process, beginning with the calls that carry this job's targets: when no
    call is in flight, they leave at once. Other calls' senders, or a send task, carry what this run leaves;
    when the shared budget holds them, the job's record says what they wait for."""
    for kind, endpoint in ENDPOINTS.items():
        if not any(t.type is kind for t in job.targets):
            continue
        drained = drain(ctx, endpoint, deadline=deadline)
        if not drained.done:
            ctx.kick_sender(endpoint)
        elif drained.held is not None:
            note_held(ctx, job.job_id, drained.held)
    settle_if_done(ctx.store, ctx.queue, job.job_id)
    return RunOutcome.SETTLED


def note_held(ctx: RunContext, job_id: str, held: Taken) -> None:
    """Write in the job's record what its queued targets wait for while the budget holds them (cleared when the
    call carrying them is answered), unless they left already."""
    if ctx.queue.open_targets(job_id) <= 0:
        return
    until_ms = ctx.now_ms() + held.wait_ms
    waiting = {"reason": HELD_BECAUSE.get(held.why, held.why), "next_attempt_at": iso_ms(until_ms)}
    write = GuardedWrite()
    ctx.store.require_state(write, job_id, JobState.TERMINATING)
    ctx.store.stage_waiting(write, job_id, waiting)
    with contextlib.suppress(GuardFailed):
        write.apply(ctx.store.redis)


# What a job's targets wait for while the send queue's take is closed (worker/jobs/send_queue.py).
HELD_BECAUSE = {
    "pause": "Box answered 429 (rate limit): every call waits for its pause to end",
    "rate": "the shared rate limit (BOXCUT_RATE_LIMIT_PER_MINUTE): the next call waits for a free slot",
    "gather": "calls are scarce: the next call gathers a fuller batch first (BOXCUT_GATHER_SECONDS)",
}


def fail_for_credentials(*, store: JobStore, job_id: str, error: Exception, lease_seconds: float = 60.0) -> None:
    """Box refused boxcut's credentials (a wrong client secret, a revoked app): no wait mends that, so every
    still-pending target ends `failed` at once with Box's words; `boxcut retry` sends them once fixed."""
    why = f"{CREDENTIALS_REFUSED}: {error}; fix the Box settings (boxcut doctor checks them), then boxcut retry"
    try:
        with store.lease(job_id, ttl_seconds=lease_seconds):
            _end_pending(store, job_id, TargetStatus.FAILED, why, event="credentials_refused")
    except LeaseHeld:
        log.warning("job %s: not failing it: another run holds it", job_id)


def give_up(*, store: JobStore, job_id: str, why: str, lease_seconds: float = 60.0) -> None:
    """End every still-pending target `dead` and settle the job: used when a job's task retries run out or
    an unexpected error stopped it. Does nothing while another run holds the job (that run will settle it)."""
    try:
        with store.lease(job_id, ttl_seconds=lease_seconds):
            _give_up(store, job_id, why)
    except LeaseHeld:
        log.warning("job %s: not giving up: another run holds it", job_id)


def _give_up(store: JobStore, job_id: str, why: str) -> None:
    _end_pending(store, job_id, TargetStatus.DEAD, why, event="gave_up")


def _end_pending(store: JobStore, job_id: str, status: TargetStatus, why: str, *, event: str) -> None:
    job = store.load(job_id)
    if job.state.is_final:
        return
    changed = {i: t for i, t in enumerate(job.targets) if t.status is TargetStatus.PENDING}
    for target in changed.values():
        target.status, target.detail = status, why
    store.save_targets(job_id, changed, event=event)
    accepted = sum(t.status is TargetStatus.ACCEPTED for t in job.targets)
    final = JobState.PARTIAL if accepted else JobState.FAILED
    store.transition(job_id, to=final, allowed_from=[s for s in JobState if not s.is_final], note=why)
