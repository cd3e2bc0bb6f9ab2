"""The shared sender: takes calls from the send queue, decides each target once more, sends, records.

Any worker process drains the queue (from the job task that just queued targets, a send task, or one scheduled
for the moment the shared budget opens), carrying up to BOXCUT_MAX_IN_FLIGHT calls at once on threads
(worker/run/flights.py). No sender sleeps waiting for the budget before a call: a take that the rate limit, a 429
pause or a gathering batch holds takes nothing and schedules a sender for then (worker/jobs/send_queue.py); only
a call's own retries (a 5xx, a timeout) wait inside it, up to BOXCUT_RETRY_BUDGET_SECONDS. For each call it takes:

1. **Decide** each target it carries, right before sending: its job must still be `terminating` (not
   cancelled) and approved where approval was needed, the target still pending and not protected, and the
   global dry-run brake off. Then the brake across jobs counts the rest, in one step for every worker
   (worker/jobs/brake.py): a target past its source's limit is held, and its job waits for approval. A target
   that may not go leaves the call; the others stay.
2. **Commit** in one guarded write: the call's final ids, each carried target pointing to it, each job listing
   it, and the targets that left the call settled. It applies only while the call is still this sender's (its
   take's token) and every carried job is still `terminating`; otherwise the decision is made again.
3. **Send** the ids as one call, on the rate-limit slot its take spent, with the Box client's retries. Each
   request is counted in Redis before it goes (a count Redis refuses stops it), so the record counts every
   request Box may have seen, even one whose answer a crash lost. A 429 is not waited out in the call: Box did
   nothing with it, so the call is answered (429) and its targets wait again, for the first call after the
   pause, with everything that gathered meanwhile.
4. **Record** Box's answer in one guarded write, only while the call has none yet and is still this sender's:
   the call, every target it carried (in every job), and the targets leaving the queue. A Redis fault meanwhile
   (a full Redis; a restart where Redis is not also the broker, which makes Celery cancel the task) is waited
   out, so Box's answer is kept, not sent for again. A 400/404 for several ids is split in halves, as new calls
   ready to be taken, until the bad ids stand alone. Jobs with nothing left in the queue settle.

While a sender lives, its process's heartbeat renews its claim on the call (worker/run/heartbeat.py); a sender
that dies anywhere leaves the call in flight, and seconds later (BOXCUT_CALL_CLAIM_SECONDS) the next take sends it
again under the same id (re-deciding first). A call with a recorded answer is never sent again.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.stop import stop_after_delay
from tenacity.wait import wait_exponential

from config import defaults
from worker import logs, metrics
from worker.box.answers import USERS_TERMINATE_ENDPOINT, CallResult
from worker.connections import TRANSIENT_REDIS_FAULTS, recover_from
from worker.errors import BoxAuthError, RetryLater
from worker.jobs.brake import BRAKE_ACTOR, ENGAGED_EVENT, OPERATOR_SOURCE, Hold, source_of
from worker.jobs.model import (
    Approval,
    Call,
    CallState,
    JobState,
    Target,
    TargetStatus,
    parse_target_ref,
    target_ref,
    utc_now,
)
from worker.jobs.send_queue import Taken, TakeOutcome
from worker.jobs.store import CarriedJob
from worker.run.context import RunContext
from worker.run.settlement import settle_if_done
from worker.transactions import GuardedWrite, GuardFailed

log = logging.getLogger(__name__)

# Answers for which Box refuses a whole batch for what may be one bad id (e.g. a user deleted since it was
# resolved): the batch is split in halves until the bad ids stand alone.
SPLIT_STATUSES = frozenset({400, 404})

# The error code a call records when Box refused the token it needed, so nothing was sent.
TOKEN_REFUSED = "token_refused"
CREDENTIALS_REFUSED = "Box refused boxcut's credentials"

# The first wait between two rounds of a call Box did not take.
WAIT_OUT_MIN_SECONDS = 5.0

# How long a sender waits out a Redis fault (worker/connections.py: TRANSIENT_REDIS_FAULTS; a restart, a full
# Redis, a failover) once Box has answered.
RECORD_PATIENCE_SECONDS = 30.0

# How often a commit is decided again because a carried job changed state meanwhile.
_COMMIT_TRIES = 5


def new_call_id() -> str:
    return "c-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Drained:
    """How a drain ended: `done` (False: its time ran out with work left); `held`, when the shared budget held
    what waits (a 429 pause, no free slot, or a batch gathering while calls are scarce): for how long and why."""

    done: bool
    held: Taken | None = None


def drain(ctx: RunContext, endpoint: str, *, deadline: float) -> Drained:
    """Send calls for `endpoint`, several at once (ctx.flights), until nothing is left for this process to send.

    Stops when the queue is empty, when calls are in flight and what waits does not fill a batch (their senders
    take it next), or when the budget holds what waits: then nobody sleeps; a sender is scheduled for the
    moment it opens (a Celery countdown), and whatever arrives meanwhile joins that call.
    """
    with ctx.flights.round() as flights:
        while ctx.clock() < deadline:
            if flights.full():
                flights.wait_one()
                continue
            token = ctx.beat.new_token()
            taken = ctx.queue.take(endpoint, call_id=new_call_id(), now_ms=ctx.now_ms(), claim_ms=ctx.claim_ms,
                                   batch=ctx.batch_size, cap=ctx.max_in_flight, token=token, budget=ctx.budget,
                                   gather_ms=int(ctx.gather_seconds * 1000),
                                   max_wake_ms=int(ctx.max_countdown_seconds * 1000))
            if taken.outcome in (TakeOutcome.NEW, TakeOutcome.RESEND):
                if taken.still_waiting >= ctx.batch_size and ctx.max_in_flight > ctx.flights.size:
                    ctx.kick_sender(endpoint)  # another full batch waits: let another process send beside this one
                # A lone new call (nothing else in flight here, nothing left waiting) is carried in this thread.
                lone = taken.outcome is TakeOutcome.NEW and not flights.busy() and taken.still_waiting == 0
                flights.start(functools.partial(carry, ctx, endpoint, taken.call_id, token=token), inline=lone)
                continue
            held = _schedule(ctx, endpoint, taken)  # a sender asked for is scheduled, whatever else runs here
            if not flights.busy():
                return Drained(True, held)
            flights.wait_one()  # an answer of ours changes what may go next
        return Drained(False)


def _schedule(ctx: RunContext, endpoint: str, taken: Taken) -> Taken | None:
    """When the budget holds what waits, make sure a sender runs the moment it opens (or, for a long pause, at
    the longest countdown a task may have, when it looks again); the hold, or None."""
    if taken.outcome is not TakeOutcome.CLOSED:
        return None
    if taken.wake:
        ctx.kick_sender(endpoint, taken.wake_in_ms / 1000)
    return taken


def carry(ctx: RunContext, endpoint: str, call_id: str, *, token: str) -> None:
    """Decide, commit, send and record one call this sender holds (`token`), its claim renewed meanwhile by the
    heartbeat; every line logged meanwhile names the call."""
    with logs.context(call_id=call_id, endpoint=endpoint), ctx.beat.holding_call(endpoint, call_id, token):
        _carry(ctx, endpoint, call_id, token=token)


def _carry(ctx: RunContext, endpoint: str, call_id: str, *, token: str) -> None:
    call = ctx.store.load_call(call_id)
    if call is None or call.state is CallState.ANSWERED:
        log.warning("call %s in flight has %s; dropping it from the queue", call_id,
                    "no record" if call is None else "an answer already")
        _forget(ctx, endpoint, call_id, lost_record=call is None)
        return
    carried = ctx.store.load_carried(call.carried())
    logs.bind(job_ids=sorted(carried))
    for _ in range(_COMMIT_TRIES):
        plan = _decide(ctx, call, carried)
        try:
            call = _commit(ctx, endpoint, call, token, plan)
            break
        except GuardFailed as failed:
            if failed.condition[1] == ctx.queue.owner_key(endpoint):
                log.info("call %s: another sender holds it now", call_id)
                return
            carried = ctx.store.load_carried(call.carried())  # a carried job changed state: decide again
    else:
        raise RetryLater(1.0, f"call {call_id}: its jobs kept changing state")
    _after_holds(ctx, plan.held)
    if not plan.ids:
        _settle_jobs(ctx, plan.jobs())
        return
    result = _send(ctx, endpoint, call, plan, token)
    if result is not None:
        _record(ctx, endpoint, call, plan, result, token)


@dataclass
class _Plan:
    """What goes in a call: the targets it may carry, by job, and those that leave it (and why)."""

    sending: dict[str, dict[int, Target]] = field(default_factory=dict)
    leaving: dict[str, dict[int, Target]] = field(default_factory=dict)  # changed: written back
    dropped: dict[str, list[int]] = field(default_factory=dict)  # unchanged: only leave the queue
    listed_before: set[str] = field(default_factory=set)  # jobs that already list the call (a resend)
    ids: list[str] = field(default_factory=list)
    # Jobs with a target the brake held: why, and the job as seen (its hold is guarded on that state and approval)
    held: dict[str, tuple[Hold, CarriedJob]] = field(default_factory=dict)

    def jobs(self) -> set[str]:
        return set(self.sending) | set(self.leaving) | set(self.dropped)

    def sending_refs(self) -> dict[str, list[int]]:
        return {job_id: list(targets) for job_id, targets in self.sending.items()}

    def refs_leaving(self) -> dict[str, list[int]]:
        refs = {job_id: list(targets) for job_id, targets in self.leaving.items()}
        for job_id, indexes in self.dropped.items():
            refs.setdefault(job_id, []).extend(indexes)
        return refs


def _decide(ctx: RunContext, call: Call, carried: dict[str, CarriedJob]) -> _Plan:
    plan = _Plan()
    try:
        service_account, refused = ctx.service_account_id(), None
    except BoxAuthError as error:  # no token: no call could go, and the service-account check cannot be made
        service_account, refused = None, (f"not sent: {CREDENTIALS_REFUSED}: {error}; fix the Box settings "
                                          "(boxcut doctor checks them), then boxcut retry")
    for ref in call.targets:
        job_id, index = parse_target_ref(ref)
        job = carried.get(job_id)
        target = job.targets.get(index) if job else None
        if job is None or target is None or target.status is not TargetStatus.PENDING or target.box_id not in call.ids:
            plan.dropped.setdefault(job_id, []).append(index)  # settled meanwhile (or gone): nothing to send
            continue
        if refused:
            target.status, target.detail = TargetStatus.FAILED, refused
        why_not = refused or _why_not_now(ctx, job, target, service_account)
        if why_not is None:
            plan.sending.setdefault(job_id, {})[index] = target
            if target.call_ids and target.call_ids[-1] == call.call_id:
                plan.listed_before.add(job_id)
        else:
            plan.leaving.setdefault(job_id, {})[index] = target
    _apply_brake(ctx, plan, carried)
    sent = {t.box_id for targets in plan.sending.values() for t in targets.values()}
    plan.ids = [i for i in call.ids if i in sent]
    return plan


def _apply_brake(ctx: RunContext, plan: _Plan, carried: dict[str, CarriedJob]) -> None:
    """Let the brake count the targets about to go; those it holds leave the call, still pending, and their job
    is to wait for approval. Operators' jobs and jobs a person approved count but are never held."""
    brake = ctx.brake
    if brake is None or not plan.sending:
        return
    candidates = []
    for job_id, targets in plan.sending.items():
        job = carried[job_id]
        source = source_of(job_source=job.source, requested_by=job.requested_by)
        exempt = source == OPERATOR_SOURCE or (job.approval is not None and job.approval.approved)
        candidates += [brake.candidate(target_ref(job_id, i), t, source=source, exempt=exempt)
                       for i, t in targets.items()]
    for ref, hold in brake.admit(candidates).items():
        job_id, index = parse_target_ref(ref)
        target = plan.sending[job_id].pop(index)
        target.detail = f"not sent: held by the {hold.reason()}"
        plan.leaving.setdefault(job_id, {})[index] = target
        plan.held.setdefault(job_id, (hold, carried[job_id]))
    plan.sending = {job_id: targets for job_id, targets in plan.sending.items() if targets}


def _stage_holds(ctx: RunContext, write: GuardedWrite, plan: _Plan) -> None:
    """Move each job the brake held a target of to `awaiting_approval`, with the brake as its reason, in the
    commit's own step: only while the job is as it was seen (not approved since) and its source not released."""
    brake = ctx.brake
    if brake is None:  # nothing is held without a brake
        return
    for job_id, (hold, job) in sorted(plan.held.items()):
        reason = hold.reason()
        fields = {**ctx.store.approval_fields(Approval.needed([reason])), "brake": json.dumps(hold.to_dict())}
        ctx.store.stage_transition(write, job_id, job, to=JobState.AWAITING_APPROVAL, actor=BRAKE_ACTOR,
                                   note=reason, fields=fields)
        brake.stage_hold(write, job_id, hold)


def _after_holds(ctx: RunContext, held: dict[str, tuple[Hold, CarriedJob]]) -> None:
    """Count the jobs just held, and tell each engagement once: whichever sender first holds a job of it claims
    the telling (worker/jobs/brake.py), so an engagement whose first sender stopped is told by the next."""
    for job_id, (hold, _job) in sorted(held.items()):
        metrics.brake_held(hold.scope)
        if ctx.brake is not None and ctx.brake.announce(hold):
            _announce_engagement(ctx, job_id, hold)


def _announce_engagement(ctx: RunContext, job_id: str, hold: Hold) -> None:
    scope = "all sources" if hold.scope == "total" else f"source {hold.source}"
    log.warning("brake engaged: %s, %d users terminated in %g minutes (limit %d); job %s and every later job of "
                "source %s wait for a person (boxcut brake release %s)", scope, hold.count,
                hold.window_seconds / 60, hold.limit, job_id, hold.source, hold.source)
    ctx.store.note(job_id, ENGAGED_EVENT, hold.to_dict())
    metrics.brake_engaged(hold.scope)


def _why_not_now(ctx: RunContext, job: CarriedJob, target: Target, service_account: str | None) -> str | None:
    """Settle `target` (or note why it waits) when it may not be sent now; None when it may."""
    if job.state is not JobState.TERMINATING:
        target.detail = f"not sent: the job is {job.state.value}"
        return target.detail
    if job.approval is not None and job.approval.required and not job.approval.approved:
        target.detail = "not sent: the job waits for approval"
        return target.detail
    reason = ctx.policy.protection(target, service_account_id=service_account)
    if reason:
        target.status, target.detail = TargetStatus.PROTECTED, reason
        return reason
    if ctx.policy.dry_run:  # switched on since the job was cleared: the global brake holds every call
        target.status, target.detail = TargetStatus.WOULD_TERMINATE, "not sent: BOXCUT_DRY_RUN is on"
        return target.detail
    return None


def _commit(ctx: RunContext, endpoint: str, planned: Call, token: str, plan: _Plan) -> Call:
    """Fix the call's ids and point its targets to it, or settle it unsent when nothing may go; returns the
    call as committed."""
    write = GuardedWrite()
    ctx.queue.hold_claim(write, endpoint, planned.call_id, token)
    for job_id in plan.sending:
        ctx.store.require_state(write, job_id, JobState.TERMINATING)
    resend = planned.started_at is not None  # committed before: an earlier send may have reached Box
    sending_refs = [target_ref(job_id, i) for job_id, targets in plan.sending.items() for i in targets]
    earlier = sorted({*planned.earlier_ids, *(i for i in planned.ids if i not in plan.ids)}) if resend else []
    call = replace(planned, ids=plan.ids, targets=sending_refs, started_at=planned.started_at or utc_now(),
                   earlier_ids=earlier)
    if not plan.ids:
        call.state, call.message = CallState.ANSWERED, "not sent: no target it named may be terminated now"
        if resend:
            call.message += ("; an earlier send, by a worker that stopped before recording Box's answer, may have "
                             "reached Box")
            call.attempts = _counted(ctx, call, call.attempts)  # each request was written down before it went
        call.finished_at = utc_now()
        ctx.queue.answered(write, endpoint, call.call_id)
    if resend:
        for targets in plan.leaving.values():
            for target in targets.values():
                target.detail = (f"{target.detail}; call {call.call_id} naming it may have reached Box before the "
                                 "worker sending it stopped")
    ctx.store.stage_call(write, call)
    for job_id, targets in plan.sending.items():
        for target in targets.values():
            if not (target.call_ids and target.call_ids[-1] == call.call_id):
                target.call_ids.append(call.call_id)
        if job_id not in plan.listed_before:
            ctx.store.stage_call_listed(write, job_id, call.call_id)
        ctx.store.stage_targets(write, job_id, targets, event="call_planned",
                                data={"call_id": call.call_id, "endpoint": endpoint, "ids": len(plan.ids)})
    for job_id, targets in plan.leaving.items():
        ctx.store.stage_targets(write, job_id, targets, event="not_sent", data={"call_id": call.call_id})
    _stage_holds(ctx, write, plan)
    ctx.queue.release(write, plan.refs_leaving())
    write.apply(ctx.store.redis)
    return call


def _send(ctx: RunContext, endpoint: str, call: Call, plan: _Plan, token: str) -> CallResult | None:
    """One round of the call: up to BOXCUT_MAX_CALLS_PER_BATCH requests (the client's retries), the first on the
    slot its take spent; its `attempts` are this round's. None when Box asked to wait: the call is handed back
    (a 429) or held for later, and nothing is left to record now."""
    send = ctx.box.terminate_users if endpoint == USERS_TERMINATE_ENDPOINT else ctx.box.terminate_groups
    try:
        return send(plan.ids, prior_attempts=0, before_send=lambda: ctx.store.note_attempt(call.call_id),
                    slot_taken=ctx.budget is not None)
    except BoxAuthError as refused:  # no token: nothing reached Box, and no wait mends wrong credentials
        now = utc_now()
        return CallResult(endpoint=endpoint, http_status=None, error_code=TOKEN_REFUSED, request_id=None,
                          message=f"not sent: {CREDENTIALS_REFUSED}: {refused}; fix the Box settings (boxcut "
                          "doctor checks them), then boxcut retry", attempts=0, started_at=now,
                          finished_at=now)
    except RetryLater as wait:
        call.attempts = _counted(ctx, call, call.attempts + getattr(wait, "attempts", 0))
        if getattr(wait, "rate_limited", False):
            asked = wait
            _through_redis_faults(ctx, lambda: _hand_back(ctx, endpoint, call, plan, token, asked))
        else:  # keep the call ours until the wait is over, so nobody else sends it into the same wait
            _keep_unsent_for(ctx, endpoint, call, plan, token, delay=wait.delay, reason=wait.reason)
        return None


def _hand_back(ctx: RunContext, endpoint: str, call: Call, plan: _Plan, token: str, wait: RetryLater) -> None:
    """Box answered 429: it did nothing with the call. The call is answered (each request counted) and its
    targets wait again, so the first call after the pause carries them with all that gathered meanwhile; each
    job it carried says what it waits for."""
    now_ms = ctx.now_ms()
    until_ms = now_ms + int(wait.delay * 1000)
    waiting = {"reason": wait.reason, "since": call.started_at, "next_attempt_at": iso_ms(until_ms),
               "call_id": call.call_id}
    call.state, call.http_status, call.error_code = CallState.ANSWERED, 429, "rate_limited"
    call.message = f"not taken: {wait.reason}; its targets wait for the next call"
    if call.attempts > 1:  # a request before the 429 (a 5xx, no answer, a sender that died) may have reached Box
        call.message += "; an earlier request for this call may have reached Box"
    call.finished_at = utc_now()
    write = GuardedWrite()
    ctx.queue.hold_claim(write, endpoint, call.call_id, token)
    ctx.queue.answered(write, endpoint, call.call_id)
    ctx.store.stage_call(write, call)
    ctx.queue.requeue(write, endpoint, [(target_ref(job_id, i), t.box_id or "") for job_id, targets
                                        in plan.sending.items() for i, t in targets.items()], now_ms=now_ms)
    for job_id, targets in plan.sending.items():
        ctx.store.stage_targets(write, job_id, targets, event="call", data=_call_note(call))
        ctx.store.stage_waiting(write, job_id, waiting)
    try:
        write.apply(ctx.store.redis)
    except GuardFailed:
        log.info("call %s: another sender holds it now; the 429 is theirs to hand back", call.call_id)


def _keep_unsent_for(ctx: RunContext, endpoint: str, call: Call, plan: _Plan, token: str, *, delay: float,
                     reason: str) -> None:
    """Keep a call this sender holds unsent for `delay` seconds, and say so in every job it carries."""
    until_ms = ctx.now_ms() + int(delay * 1000)
    waiting = {"reason": reason, "since": call.started_at, "next_attempt_at": iso_ms(until_ms),
               "attempts": call.attempts, "call_id": call.call_id}
    write = GuardedWrite()
    ctx.queue.hold_claim(write, endpoint, call.call_id, token)
    ctx.store.stage_call(write, call)
    ctx.queue.postpone(write, endpoint, call.call_id, until_ms=until_ms)
    for job_id in plan.sending:
        ctx.store.stage_waiting(write, job_id, waiting)
    try:
        write.apply(ctx.store.redis)
    except GuardFailed:
        log.info("call %s: another sender holds it now; its wait is theirs", call.call_id)


def _wait_out(ctx: RunContext, result: CallResult, call: Call) -> float | None:
    """How long to wait before the next round of a call Box did not take (5xx, no answer), or None when its
    time is up (BOXCUT_GIVE_UP_AFTER_SECONDS since its first request) or the answer is not one to wait out."""
    if result.accepted or not result.exhausted or call.started_at is None:
        return None
    elapsed = ctx.wall_clock() - _epoch(call.started_at)
    if elapsed >= ctx.give_up_after_seconds:
        return None
    # The wait grows with the outage (half of it so far), from WAIT_OUT_MIN_SECONDS to BOXCUT's cap.
    return min(defaults.WAIT_OUT_MAX_SECONDS, max(WAIT_OUT_MIN_SECONDS, elapsed / 2),
               ctx.give_up_after_seconds - elapsed)


def _record(ctx: RunContext, endpoint: str, call: Call, plan: _Plan, result: CallResult, token: str) -> None:
    """Write Box's answer to the call and to every target it carried, in one step; or, while Box is down and the
    call's time is not up, hold it for another round."""
    delay = _wait_out(ctx, result, call)
    if delay is not None:
        call.attempts = _counted(ctx, call, call.attempts + result.attempts)
        said = _box_answer_text(result)
        call.message = f"waiting: {said}"
        _through_redis_faults(ctx, lambda: _keep_unsent_for(ctx, endpoint, call, plan, token, delay=delay, reason=said))
        return
    _answer(call, result)
    call.attempts = _counted(ctx, call, call.attempts)
    write = GuardedWrite()
    ctx.queue.in_flight(write, endpoint, call.call_id)
    ctx.queue.hold_claim(write, endpoint, call.call_id, token)
    ctx.queue.answered(write, endpoint, call.call_id)
    ctx.store.stage_call(write, call)
    settled = (_split(ctx, endpoint, write, call, plan) if _must_split(call, result)
               else _settle(plan, result, call.attempts))
    for job_id, targets in plan.sending.items():
        ctx.store.stage_targets(write, job_id, targets if settled else {}, event="call", data=_call_note(call))
        ctx.store.stage_waiting(write, job_id, None)
    ctx.queue.release(write, plan.sending_refs() if settled else {})
    try:
        _through_redis_faults(ctx, lambda: write.apply(ctx.store.redis))
    except GuardFailed:
        log.warning("call %s: an answer was recorded by another sender first; keeping that one", call.call_id)
        return
    _settle_jobs(ctx, plan.jobs())


def _counted(ctx: RunContext, call: Call, attempts: int) -> int:
    """The call's attempts: those its rounds counted, or, when more, the requests written down before they were
    sent (a round whose sender died after sending, before recording, counted none)."""
    return max(attempts, _through_redis_faults(ctx, lambda: ctx.store.attempts_sent(call.call_id)))


_T = TypeVar("_T")


def _through_redis_faults(ctx: RunContext, step: Callable[[], _T]) -> _T:
    """Run a Redis step once Box has answered, through a Redis restart or a full Redis, for up to
    RECORD_PATIENCE_SECONDS: Box's answer is kept rather than lost and the call sent again. The heartbeat keeps
    the call this sender's meanwhile; the step's own guard refuses it once another sender took the call over."""
    retrying = Retrying(retry=retry_if_exception_type(TRANSIENT_REDIS_FAULTS),
                        stop=stop_after_delay(RECORD_PATIENCE_SECONDS), wait=wait_exponential(multiplier=0.25, max=5),
                        sleep=ctx.sleep, reraise=True, before_sleep=lambda state: _after_redis_fault(ctx, state))
    return retrying(step)


def _after_redis_fault(ctx: RunContext, state: RetryCallState) -> None:
    fault = state.outcome.exception() if state.outcome else None
    log.warning("keeping Box's answer through a Redis fault (%s); trying again", type(fault).__name__)
    if fault is not None:
        recover_from(ctx.store.redis, fault)


def _must_split(call: Call, result: CallResult) -> bool:
    return result.http_status in SPLIT_STATUSES and len(call.ids) > 1


def _split(ctx: RunContext, endpoint: str, write: GuardedWrite, call: Call, plan: _Plan) -> bool:
    """Plan the halves of a refused batch as calls of their own, ready to send; the targets stay in flight."""
    half = max(1, len(call.ids) // 2)
    now = ctx.now_ms()
    for ready_at, ids in ((now - 2, call.ids[:half]), (now - 1, call.ids[half:])):  # first half first
        refs = [f"{job_id}:{i}" for job_id, targets in plan.sending.items() for i, t in targets.items()
                if t.box_id in ids]
        part = Call(call_id=new_call_id(), endpoint=endpoint, ids=list(ids), targets=refs)
        ctx.store.stage_call(write, part)
        ctx.queue.plan_part(write, endpoint, part.call_id, refs, ready_at_ms=ready_at)
    return False


def _settle(plan: _Plan, result: CallResult, attempts: int) -> bool:
    if result.accepted:
        status, detail = TargetStatus.ACCEPTED, None
    elif result.exhausted:
        status, detail = TargetStatus.DEAD, f"retries exhausted after {attempts} calls: {_box_answer_text(result)}"
    else:
        status, detail = TargetStatus.FAILED, _box_answer_text(result)
    for targets in plan.sending.values():
        for target in targets.values():
            target.status, target.detail = status, detail
    return True


def _answer(call: Call, result: CallResult) -> None:
    call.state = CallState.ANSWERED
    call.http_status, call.message = result.http_status, result.message
    call.error_code, call.request_id = result.error_code, result.request_id
    call.attempts += result.attempts  # this round's, after the rounds before
    call.started_at = call.started_at or result.started_at
    call.finished_at, call.exhausted = result.finished_at, result.exhausted


def _box_answer_text(result: CallResult) -> str:
    """What Box answered a call (or that it did not), in words for a target's detail and a job's wait."""
    if result.error_code == TOKEN_REFUSED:
        return result.message or CREDENTIALS_REFUSED
    if result.http_status is None:
        return "Box did not answer (timeouts or connection errors)"
    code = f" {result.error_code}" if result.error_code else ""
    return f"Box answered {result.http_status}{code}: {result.message or '(no message)'}"


def iso_ms(epoch_ms: int) -> str:
    """An epoch time in ms as an ISO 8601 UTC timestamp, as records write times."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _settle_jobs(ctx: RunContext, job_ids: set[str]) -> None:
    for job_id in sorted(job_ids):
        if ctx.queue.open_targets(job_id) <= 0:
            settle_if_done(ctx.store, ctx.queue, job_id)


def _forget(ctx: RunContext, endpoint: str, call_id: str, *, lost_record: bool) -> None:
    """Drop a call from flight. When its record is gone (it should never be: Redis runs with noeviction), its
    targets are released too, and their jobs queue them again as they settle."""
    refs = ctx.queue.refs_taken_by(call_id) if lost_record else {}
    write = GuardedWrite()
    ctx.queue.answered(write, endpoint, call_id)
    ctx.queue.release(write, refs)
    write.apply(ctx.store.redis)
    _settle_jobs(ctx, set(refs))


def _call_note(call: Call) -> dict[str, object]:
    return {"call_id": call.call_id, "endpoint": call.endpoint, "state": call.state.value,
            "http_status": call.http_status, "error_code": call.error_code, "request_id": call.request_id,
            "attempts": call.attempts, "ids": len(call.ids)}

