"""The shared sender: calls carry targets of several jobs, decided one by one right before the call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from unittest import mock

import pytest
import redis

from tests.unit.fake_box import FakeBox, accepted, directory, make_ctx, new_job, refused, users
from worker.box.answers import USERS_TERMINATE_ENDPOINT, CallResult
from worker.box.rate_limit import RateLimiter
from worker.errors import BatchRetryLater, RetryLater
from worker.jobs import actions as job_actions
from worker.jobs.model import CallState, JobState, TargetStatus
from worker.jobs.send_queue import TakeOutcome
from worker.jobs.store import JobStore
from worker.run.context import RunContext
from worker.run.runner import run_job
from worker.run.sender import drain
from worker.runtime import budget_of

USERS = USERS_TERMINATE_ENDPOINT


def _queued(store: JobStore, ctx: RunContext, *logins: str) -> list[str]:
    """One job per login, resolved and queued, with nothing sent yet (as while another call is in flight)."""
    held = make_ctx(store, ctx.box)  # type: ignore[arg-type]
    held.max_in_flight = 0  # this run may send nothing: every take is busy
    job_ids = [new_job(store, users(login)) for login in logins]
    for job_id in job_ids:
        run_job(ctx=held, job_id=job_id)
        assert store.load(job_id).state is JobState.TERMINATING
    return job_ids


def _drain(ctx: RunContext) -> None:
    assert drain(ctx, USERS, deadline=float("inf")).done


def test_targets_of_several_jobs_leave_in_one_call_each_pointing_to_it(store: JobStore) -> None:
    box = FakeBox(users=directory(5))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, *(u.login for u in box.users))
    _drain(ctx)
    assert [sorted(ids) for _, ids in box.calls] == [[u.id for u in box.users]]
    jobs = [store.load(j) for j in job_ids]
    assert all(j.state is JobState.SUCCEEDED for j in jobs)
    call_id = jobs[0].targets[0].call_ids[-1]
    for job in jobs:
        assert job.targets[0].call_ids == [call_id] and [c.call_id for c in job.calls] == [call_id]
        assert job.targets[0].user_id in job.calls[0].ids
    assert sorted(jobs[0].calls[0].targets) == sorted(f"{j}:0" for j in job_ids)


def test_one_user_named_by_five_jobs_is_sent_once(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, *["user00001@example.com"] * 5, "user00002@example.com")
    _drain(ctx)
    assert [ids for _, ids in box.calls] == [["30000001", "30000002"]]
    assert {store.load(j).state for j in job_ids} == {JobState.SUCCEEDED}


def test_a_target_protected_after_queueing_stays_out_of_the_shared_call(store: JobStore) -> None:
    box = FakeBox(users=directory(3))
    job_ids = _queued(store, make_ctx(store, box), *(u.login for u in box.users))
    _drain(make_ctx(store, box, protected=("user00002@example.com",)))  # a worker restarted with it listed
    assert [sorted(ids) for _, ids in box.calls] == [["30000001", "30000003"]]
    states = [store.load(j) for j in job_ids]
    assert [j.targets[0].status for j in states] == [TargetStatus.ACCEPTED, TargetStatus.PROTECTED,
                                                     TargetStatus.ACCEPTED]
    assert states[1].targets[0].call_ids == [] and states[1].state is JobState.REFUSED
    assert sorted(states[0].calls[0].targets) == sorted([f"{job_ids[0]}:0", f"{job_ids[2]}:0"])  # only those sent


def test_a_target_settled_meanwhile_is_not_sent_though_its_job_still_terminates(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    ctx = make_ctx(store, box)
    job_id = new_job(store, users("user00001@example.com", "user00002@example.com"))
    held = make_ctx(store, box)
    held.max_in_flight = 0
    run_job(ctx=held, job_id=job_id)
    job = store.load(job_id)
    job.targets[0].status, job.targets[0].detail = TargetStatus.DEAD, "gave up (by hand, for the test)"
    store.save_targets(job_id, {0: job.targets[0]})
    _drain(ctx)
    assert [ids for _, ids in box.calls] == [["30000002"]]
    job = store.load(job_id)
    assert job.state is JobState.PARTIAL and job.targets[0].status is TargetStatus.DEAD
    assert ctx.queue.open_targets(job_id) == 0


def test_a_job_cancelled_while_its_targets_wait_sends_none_of_them(store: JobStore) -> None:
    box = FakeBox(users=directory(3))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, *(u.login for u in box.users))
    job_actions.cancel(store=store, job_id=job_ids[0], actor="ops")
    _drain(ctx)
    assert [sorted(ids) for _, ids in box.calls] == [["30000002", "30000003"]]
    cancelled = store.load(job_ids[0])
    assert cancelled.state is JobState.CANCELLED and cancelled.targets[0].status is TargetStatus.PENDING
    assert cancelled.targets[0].detail == "not sent: the job is cancelled" and cancelled.targets[0].call_ids == []
    assert ctx.queue.open_targets(job_ids[0]) == 0


def test_the_global_brake_holds_every_target_of_a_shared_call(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    job_ids = _queued(store, make_ctx(store, box), "user00001@example.com", "user00002@example.com")
    _drain(make_ctx(store, box, dry_run=True))
    assert box.calls == []
    assert {store.load(j).state for j in job_ids} == {JobState.DRY_RUN}


def test_a_400_for_a_shared_batch_isolates_the_bad_id_and_the_other_jobs_end_accepted(store: JobStore) -> None:
    box = FakeBox(users=directory(4), answers=[refused(400, "bad"), accepted(), refused(400, "bad"), accepted(),
                                               refused(400, "bad")])
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, *(u.login for u in box.users))
    _drain(ctx)
    assert [len(ids) for _, ids in box.calls] == [4, 2, 2, 1, 1]
    jobs = [store.load(j) for j in job_ids]
    assert sorted(j.state.value for j in jobs) == ["failed", "succeeded", "succeeded", "succeeded"]
    failed = next(j for j in jobs if j.state is JobState.FAILED)
    assert failed.targets[0].detail == "Box answered 400 bad: Box says bad"
    assert len(failed.targets[0].call_ids) == 3  # the whole batch, its half, and the id alone


def test_a_call_whose_sender_died_is_sent_again_under_its_id_after_the_claim(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, "user00001@example.com", "user00002@example.com")
    taken = ctx.queue.take(USERS, call_id="c-dead", now_ms=ctx.now_ms(), claim_ms=ctx.claim_ms, batch=100, cap=4)
    assert taken.outcome is TakeOutcome.NEW  # ... and the sender that took it dies here
    _drain(ctx)
    assert box.calls == []  # its claim still stands: nobody else sends it, and nothing else waits
    _drain(make_ctx(store, box, later=ctx.claim_seconds + 1))
    assert [sorted(ids) for _, ids in box.calls] == [["30000001", "30000002"]]
    jobs = [store.load(j) for j in job_ids]
    assert all(j.state is JobState.SUCCEEDED and j.targets[0].call_ids == ["c-dead"] for j in jobs)
    assert jobs[0].calls[0].state is CallState.ANSWERED
    _drain(make_ctx(store, box, later=10 * ctx.claim_seconds))
    assert len(box.calls) == 1  # an answered call is never sent again


def test_targets_arriving_while_a_call_is_in_flight_gather_into_the_next_call(store: JobStore) -> None:
    box = FakeBox(users=directory(6))
    ctx = make_ctx(store, box)
    first = _queued(store, ctx, "user00001@example.com")
    flight = ctx.queue.take(USERS, call_id="c-first", now_ms=ctx.now_ms(), claim_ms=ctx.claim_ms, batch=100, cap=4,
                            token="t-first")
    _queued(store, ctx, *(u.login for u in box.users[1:]))
    _drain(ctx)
    assert box.calls == []  # a partial batch never starts beside a call in flight
    from worker.run.sender import carry

    carry(ctx, USERS, flight.call_id, token="t-first")  # the call in flight is answered ...
    _drain(ctx)  # ... and its sender takes what gathered meanwhile, as one call
    assert [len(ids) for _, ids in box.calls] == [1, 5]
    assert store.load(first[0]).state is JobState.SUCCEEDED


def test_full_batches_go_out_beside_each_other_up_to_the_cap(store: JobStore) -> None:
    box = FakeBox(users=directory(500))
    ctx = make_ctx(store, box)
    ctx.max_in_flight = 3
    held = make_ctx(store, box)
    held.max_in_flight = 0
    job_id = new_job(store, users(*(u.login for u in box.users)))
    run_job(ctx=held, job_id=job_id)
    now = ctx.now_ms()
    outcomes = [ctx.queue.take(USERS, call_id=f"c-{n}", now_ms=now, claim_ms=60_000, batch=100, cap=3).outcome
                for n in range(5)]
    assert outcomes == [TakeOutcome.NEW] * 3 + [TakeOutcome.BUSY] * 2


def test_a_wait_box_asks_for_keeps_the_call_with_its_sender_until_it_ends(store: JobStore) -> None:
    box = FakeBox(users=directory(1), answers=[RetryLater(300, "Box answered 503 for a while")])
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, "user00001@example.com")
    _drain(ctx)  # nothing sleeps: the call is held, and the job says what it waits for
    assert "503" in str(store.load(job_ids[0]).waiting)
    _drain(make_ctx(store, box, later=ctx.claim_seconds + 30))  # past the claim, still held: nobody sends it
    assert len(box.calls) == 1
    _drain(make_ctx(store, box, later=301))
    assert len(box.calls) == 2 and store.load(job_ids[0]).state is JobState.SUCCEEDED


def _limited(store: JobStore, ctx: RunContext, *, per_minute: int, burst: int | None = None) -> RateLimiter:
    """Give `ctx` the shared rate limit, spent by the take; the kicks it schedules are kept in `ctx.kicks`."""
    limiter = RateLimiter(store.redis, key_prefix=store.prefix, per_minute=per_minute, burst=burst)
    ctx.budget = budget_of(limiter)
    kicks: list[tuple[str, float]] = []
    ctx.kick_sender = lambda endpoint, countdown=0.0: kicks.append((endpoint, countdown))
    ctx.kicks = kicks  # type: ignore[attr-defined]
    return limiter


def _spend(limiter: RateLimiter, slots: int) -> None:
    for _ in range(slots):
        limiter.acquire(max_wait=0)


def test_no_free_slot_schedules_one_sender_for_when_it_frees_and_nobody_sleeps(store: JobStore) -> None:
    box = FakeBox(users=directory(3))
    ctx = make_ctx(store, box)
    ctx.sleep = lambda seconds: pytest.fail(f"slept {seconds} s")
    limiter = _limited(store, ctx, per_minute=60, burst=1)  # a slot a second, a burst of 1
    _spend(limiter, 1)
    _queued(store, ctx, "user00001@example.com")
    first = drain(ctx, USERS, deadline=float("inf"))
    _queued(store, ctx, "user00002@example.com", "user00003@example.com")
    second = drain(ctx, USERS, deadline=float("inf"))
    assert box.calls == [] and first.held is not None and first.held.why == "rate"
    assert second.held is not None and second.held.why == "rate"
    [(endpoint, countdown)] = ctx.kicks  # type: ignore[attr-defined]  # one sender scheduled, not two
    assert endpoint == USERS and 0 < countdown <= 1.0
    _drain(make_ctx(store, box, later=1.1))  # the scheduled sender: the slot is free; all three ride one call
    assert [len(ids) for _, ids in box.calls] == [3]


def test_while_calls_are_plentiful_the_first_target_leaves_at_once(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    ctx = make_ctx(store, box)
    _limited(store, ctx, per_minute=600)  # a burst of 60, all free
    _queued(store, ctx, "user00001@example.com")
    _drain(ctx)
    assert [len(ids) for _, ids in box.calls] == [1]


def test_while_calls_are_scarce_a_partial_batch_gathers_until_it_is_full_or_old_enough(store: JobStore) -> None:
    box = FakeBox(users=directory(5))
    ctx = make_ctx(store, box, batch_size=4)
    limiter = _limited(store, ctx, per_minute=600)  # a burst of 60 ...
    _spend(limiter, 31)  # ... more than half of it spent
    _queued(store, ctx, "user00001@example.com")
    held = drain(ctx, USERS, deadline=float("inf")).held
    assert box.calls == [] and held is not None and held.why == "gather"
    assert 0 < held.wait_ms <= ctx.gather_seconds * 1000
    _queued(store, ctx, *(f"user0000{n}@example.com" for n in (2, 3, 4, 5)))  # a full batch: it goes at once
    _drain(ctx)
    assert [len(ids) for _, ids in box.calls] == [4]
    _drain(make_ctx(store, box, later=ctx.gather_seconds + 0.1))  # the rest, once it has gathered long enough
    assert [len(ids) for _, ids in box.calls] == [4, 1]


class _Answers429Once(FakeBox):
    """Box answers the first request 429 with `retry-after: 3`: the client pauses every worker and hands the
    call back (worker/box/client.py)."""

    limiter: RateLimiter | None = None

    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        if self.calls or self.limiter is None:
            return super().terminate_users(user_ids, prior_attempts=prior_attempts, before_send=before_send)
        self.calls.append((USERS, list(user_ids)))
        self.limiter.pause(3)
        raise BatchRetryLater(3, "Box answered 429 (rate limit): every call waits 3.0 s", attempts=1,
                              rate_limited=True)


def test_calls_stay_scarce_for_a_minute_after_the_limit_ran_low_though_it_refilled(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    ctx = make_ctx(store, box, batch_size=4)
    limiter = _limited(store, ctx, per_minute=600)
    _spend(limiter, 31)
    _queued(store, ctx, "user00001@example.com")
    assert drain(ctx, USERS, deadline=float("inf")).held is not None  # low: it gathers
    store.redis.delete(limiter.key)  # the limit refilled
    _queued(store, ctx, "user00002@example.com")
    refilled = make_ctx(store, box, batch_size=4, later=1.0)
    refilled.budget = ctx.budget
    held = drain(refilled, USERS, deadline=float("inf")).held
    assert box.calls == [] and held is not None and held.why == "gather"  # still scarce: still gathering
    later = make_ctx(store, box, batch_size=4, later=61.0)
    later.budget = ctx.budget
    _drain(later)  # a minute on, the gathered pair goes
    assert [len(ids) for _, ids in box.calls] == [2]


def test_a_429_hands_the_targets_back_and_the_first_call_after_the_pause_carries_them_all(store: JobStore) -> None:
    box = _Answers429Once(users=directory(3))
    ctx = make_ctx(store, box)
    box.limiter = _limited(store, ctx, per_minute=600)
    first = _queued(store, ctx, "user00001@example.com")
    _drain(ctx)
    later = [new_job(store, users(login)) for login in ("user00002@example.com", "user00003@example.com")]
    for job_id in later:  # resolved and queued meanwhile; their runs find the pause and say so
        run_job(ctx=ctx, job_id=job_id)
    held = drain(ctx, USERS, deadline=float("inf")).held
    assert held is not None and held.why == "pause"
    jobs = [store.load(j) for j in first + later]
    assert jobs[0].calls[0].http_status == 429 and jobs[0].calls[0].attempts == 1  # answered: never sent again
    assert [(j.state, bool(j.waiting)) for j in jobs] == [(JobState.TERMINATING, True)] * 3  # each says why
    assert "429" in str(jobs[1].waiting)
    _drain(make_ctx(store, box, later=3.1))
    assert [len(ids) for _, ids in box.calls] == [1, 3]  # the call after the pause carries all three
    jobs = [store.load(j) for j in first + later]
    assert all(j.state is JobState.SUCCEEDED and not j.waiting for j in jobs)
    assert len(jobs[0].targets[0].call_ids) == 2  # the 429 and the call that carried it


def test_a_guarded_write_whose_condition_fails_writes_nothing(store: JobStore) -> None:
    from worker.transactions import GuardedWrite, GuardFailed

    store.redis.hset("t:h", "state", "terminating")
    write = GuardedWrite().hash_field_is("t:h", "state", "cancelled")
    write.write("SET", "t:written", "1")
    with pytest.raises(GuardFailed) as failed:
        write.apply(store.redis)
    assert failed.value.index == 1 and store.redis.get("t:written") is None
    ok = GuardedWrite().hash_field_is("t:h", "state", "terminating")
    position = ok.write("HINCRBY", "t:n", "x", 5)
    assert ok.apply(store.redis)[position] == 5


def test_a_call_whose_record_vanished_gives_its_targets_back_to_be_queued_again(store: JobStore) -> None:
    box = FakeBox(users=directory(2))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, "user00001@example.com", "user00002@example.com")
    taken = ctx.queue.take(USERS, call_id="c-lost", now_ms=ctx.now_ms(), claim_ms=ctx.claim_ms, batch=100, cap=4,
                           token="t-lost")
    store.redis.delete(ctx.queue.call_key(taken.call_id))  # evicted, against the advice of docs/reliability.md
    _drain(ctx)
    assert box.calls == []  # its claim stands: nothing else waits
    _drain(make_ctx(store, box, later=ctx.claim_seconds + 1))  # the claim ran out: its targets are queued again
    assert [sorted(ids) for _, ids in box.calls] == [["30000001", "30000002"]]
    jobs = [store.load(j) for j in job_ids]
    assert {j.state for j in jobs} == {JobState.SUCCEEDED}
    assert all(j.targets[0].call_ids and j.targets[0].call_ids[-1] != "c-lost" for j in jobs)


class _TokenRefused(FakeBox):
    def terminate_users(self, user_ids: object, *, prior_attempts: int = 0, before_send: object = None,
                        slot_taken: bool = False) -> object:
        from worker.errors import BoxAuthError

        raise BoxAuthError("Box refused the token request (400 invalid_grant): Grant credentials are invalid")


def test_a_refused_token_at_send_time_fails_the_call_targets_with_box_words(store: JobStore) -> None:
    box = _TokenRefused(users=directory(2))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, "user00001@example.com", "user00002@example.com")
    _drain(ctx)
    jobs = [store.load(j) for j in job_ids]
    assert {j.state for j in jobs} == {JobState.FAILED}
    assert all("invalid_grant" in (j.targets[0].detail or "") for j in jobs)
    assert jobs[0].calls[0].error_code == "token_refused" and jobs[0].calls[0].http_status is None


def test_an_outage_is_waited_out_in_rounds_and_the_record_says_what_it_waits_for(store: JobStore) -> None:
    down = refused(503, "unavailable", exhausted=True, attempts=6)
    box = FakeBox(users=directory(1), answers=[down, down])
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, "user00001@example.com")
    _drain(ctx)
    job = store.load(job_ids[0])
    assert job.state is JobState.TERMINATING and job.targets[0].status is TargetStatus.PENDING  # not dead
    assert job.waiting is not None and "Box answered 503" in job.waiting["reason"]
    assert job.waiting["attempts"] == 6 and job.waiting["next_attempt_at"] > job.waiting["since"]
    _drain(ctx)
    assert len(box.calls) == 1  # nobody tries again before the wait is over
    _drain(make_ctx(store, box, later=60))  # the second round: Box still down
    _drain(make_ctx(store, box, later=600))  # the third: Box is back
    job = store.load(job_ids[0])
    assert job.state is JobState.SUCCEEDED and job.waiting is None
    assert len(box.calls) == 3 and job.calls[0].attempts == 13  # every request Box saw, over the rounds


def test_an_outage_longer_than_the_give_up_time_ends_the_targets_dead(store: JobStore) -> None:
    down = refused(503, "unavailable", exhausted=True, attempts=6)
    box = FakeBox(users=directory(1), answers=[down, down])
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, "user00001@example.com")
    _drain(ctx)
    late = make_ctx(store, box, later=ctx.give_up_after_seconds + 1)
    _drain(late)
    job = store.load(job_ids[0])
    assert job.targets[0].status is TargetStatus.DEAD and job.state is JobState.FAILED
    assert "retries exhausted after 12 calls" in (job.targets[0].detail or "") and job.waiting is None


def test_credentials_refused_before_the_service_account_check_send_nothing_and_fail_the_targets(
        store: JobStore) -> None:
    from worker.errors import BoxAuthError

    box = FakeBox(users=directory(1))
    job_ids = _queued(store, make_ctx(store, box), "user00001@example.com")
    ctx = make_ctx(store, box)

    def refused() -> str | None:
        raise BoxAuthError("Box refused the token request (400 invalid_client): bad secret")

    ctx.service_account_id = refused
    _drain(ctx)
    job = store.load(job_ids[0])
    assert box.calls == [] and job.state is JobState.FAILED
    assert job.targets[0].status is TargetStatus.FAILED and "invalid_client" in (job.targets[0].detail or "")


class _DiesAfterSending(FakeBox):
    """Box takes the request; the sender's process dies before it hears the answer."""

    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        if self.died:
            return super().terminate_users(user_ids, prior_attempts=prior_attempts, before_send=before_send)
        self.died = True
        super().terminate_users(user_ids, prior_attempts=prior_attempts, before_send=before_send)
        raise _ProcessDied

    died = False


class _ProcessDied(BaseException):
    pass


def _sent_then_died(store: JobStore, *logins: str) -> tuple[_DiesAfterSending, RunContext, list[str]]:
    """One-user jobs queued and sent in one call whose sender died right after Box saw the request."""
    box = _DiesAfterSending(users=directory(len(logins)))
    ctx = make_ctx(store, box)
    job_ids = _queued(store, ctx, *logins)
    with pytest.raises(_ProcessDied):
        _drain(ctx)
    return box, ctx, job_ids


def test_a_request_whose_answer_a_crash_lost_is_counted_in_the_record_of_its_resend(store: JobStore) -> None:
    box, ctx, [job_id] = _sent_then_died(store, "user00001@example.com")
    _drain(make_ctx(store, box, later=ctx.claim_seconds + 1))  # its claim ran out: sent again under its id
    job = store.load(job_id)
    assert job.state is JobState.SUCCEEDED and len(box.calls) == 2
    assert [c.attempts for c in job.calls] == [2]  # Box saw two requests; the record says two


def test_a_call_left_unsent_after_a_crash_still_counts_the_request_box_saw(store: JobStore) -> None:
    # Found by the soak (seed 1): a sender died after its request reached Box; before the call was taken again
    # its only target became protected, so the call was settled unsent, and its record counted no request.
    box, ctx, [job_id] = _sent_then_died(store, "user00001@example.com")
    protected_now = make_ctx(store, box, later=ctx.claim_seconds + 1, protected=("user00001@example.com",))
    _drain(protected_now)
    job = store.load(job_id)
    assert len(box.calls) == 1 and job.targets[0].status is TargetStatus.PROTECTED
    [call] = job.calls
    assert call.state is CallState.ANSWERED and call.attempts == 1  # Box saw one request; the record says one
    assert "may have reached Box" in (call.message or "")
    assert (call.ids, call.earlier_ids) == ([], [box.users[0].id])  # and which id that request named


def test_a_resend_that_carries_fewer_ids_keeps_the_ids_its_earlier_request_named(store: JobStore) -> None:
    box, ctx, job_ids = _sent_then_died(store, "user00001@example.com", "user00002@example.com")
    _drain(make_ctx(store, box, later=ctx.claim_seconds + 1, protected=("user00001@example.com",)))
    [call] = store.load(job_ids[1]).calls
    first, second = box.users
    assert [sorted(ids) for _, ids in box.calls] == [sorted([first.id, second.id]), [second.id]]
    assert (call.ids, call.earlier_ids, call.attempts) == ([second.id], [first.id], 2)


class _RedisRefusesTheAttempt(FakeBox):
    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        def refused() -> None:
            raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'")

        return super().terminate_users(user_ids, prior_attempts=prior_attempts, before_send=refused)


def test_a_request_that_cannot_be_written_down_first_is_not_sent(store: JobStore) -> None:
    box = _RedisRefusesTheAttempt(users=directory(1))
    ctx = make_ctx(store, box)
    [job_id] = _queued(store, ctx, "user00001@example.com")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        _drain(ctx)
    assert box.calls == []
    assert store.load(job_id).state is JobState.TERMINATING


def test_an_answer_is_written_through_a_redis_fault_while_the_call_is_still_this_senders(store: JobStore) -> None:
    from worker.run.sender import _through_redis_faults

    ctx = make_ctx(store, FakeBox(users=directory(1)))
    ctx.sleep = lambda _seconds: None
    tries: list[int] = []

    def write() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise redis.ConnectionError("Redis is restarting")
        return "written"

    assert _through_redis_faults(ctx, write) == "written" and len(tries) == 3

    def never() -> str:
        raise redis.exceptions.OutOfMemoryError("full")

    clock = iter(range(0, 1000, 10))  # tenacity's clock: ten seconds a try
    with mock.patch("time.monotonic", lambda: float(next(clock))), pytest.raises(redis.exceptions.OutOfMemoryError):
        _through_redis_faults(ctx, never)  # its patience is spent: another sender's turn


def test_an_answer_is_written_through_a_failover_and_the_connections_to_the_replica_are_dropped(
        store: JobStore) -> None:
    """Just after a failover (by DNS or a proxy) a pooled connection may still reach the old primary, now a replica:
    ReadOnlyError is waited out like a restart, not taken for a refusal, and the pool's connections are dropped so
    the next write connects anew."""
    from worker.run.sender import _through_redis_faults

    ctx = make_ctx(store, FakeBox(users=directory(1)))
    ctx.sleep = lambda _seconds: None
    tries: list[int] = []

    def write() -> str:
        tries.append(1)
        if len(tries) < 2:
            raise redis.exceptions.ReadOnlyError("You can't write against a read only replica.")
        return "written"

    dropped: list[int] = []
    with mock.patch.object(store.redis.connection_pool, "disconnect", lambda *_a, **_k: dropped.append(1)):
        assert _through_redis_faults(ctx, write) == "written" and len(tries) == 2
    assert dropped == [1]
