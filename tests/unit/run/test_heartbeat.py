"""The heartbeat keeps a process's claims and leases; the flights keep a wake when calls are in flight."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, users
from worker.box.answers import USERS_TERMINATE_ENDPOINT, CallResult
from worker.box.rate_limit import RateLimiter
from worker.jobs.send_queue import SendQueue, TakeOutcome
from worker.jobs.store import JobStore
from worker.run.flights import Flights
from worker.run.heartbeat import Heartbeat
from worker.run.runner import run_job
from worker.run.sender import drain
from worker.runtime import budget_of

USERS = USERS_TERMINATE_ENDPOINT


def _taken(queue: SendQueue, store: JobStore, call_id: str, token: str, now_ms: int) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(1)))
    ctx.max_in_flight = 0
    run_job(ctx=ctx, job_id=new_job(store, users("user00001@example.com")))
    taken = queue.take(USERS, call_id=call_id, now_ms=now_ms, claim_ms=6000, batch=100, cap=4, token=token)
    assert taken.outcome is TakeOutcome.NEW


def test_a_claim_is_renewed_only_for_its_holder_and_never_moved_earlier(store: JobStore) -> None:
    queue = SendQueue(store.redis, key_prefix=store.prefix)
    now = int(time.time() * 1000)
    _taken(queue, store, "c-1", "t-1", now)
    flight = queue.flight_key(USERS)
    assert queue.renew(USERS, [("c-1", "t-other")], until_ms=now + 60_000) == 0  # not its holder
    assert queue.renew(USERS, [("c-1", "t-1")], until_ms=now + 60_000) == 1
    assert store.redis.zscore(flight, "c-1") == now + 60_000
    assert queue.renew(USERS, [("c-1", "t-1")], until_ms=now + 10_000) == 0  # held into a pause: kept later
    assert store.redis.zscore(flight, "c-1") == now + 60_000


def test_a_lease_the_heartbeat_cannot_renew_is_marked_lost_and_a_call_let_go_is_not_renewed(
        store: JobStore) -> None:
    queue = SendQueue(store.redis, key_prefix=store.prefix)
    now = int(time.time() * 1000)
    _taken(queue, store, "c-1", "t-1", now)
    beat = Heartbeat(queue, claim_seconds=6)
    with beat.holding_lease(lambda: False) as lost, beat.holding_lease(lambda: True) as kept:
        with beat.holding_call(USERS, "c-1", "t-1"):
            beat.renew()
        assert lost.lost and not kept.lost
    renewed = store.redis.zscore(queue.flight_key(USERS), "c-1")
    assert renewed is not None and renewed > now + 6000
    store.redis.zadd(queue.flight_key(USERS), {"c-1": now})
    beat.renew()  # the call was let go: its claim is left to run out
    assert store.redis.zscore(queue.flight_key(USERS), "c-1") == now


class _Slow(FakeBox):
    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        time.sleep(0.2)
        return super().terminate_users(user_ids, prior_attempts=prior_attempts, before_send=before_send)


def test_a_sender_is_scheduled_when_the_budget_closes_while_calls_of_this_drain_are_in_flight(
        store: JobStore) -> None:
    box = _Slow(users=directory(3))
    ctx = make_ctx(store, box, batch_size=1)
    ctx.flights = Flights(3)
    held = make_ctx(store, box)
    held.max_in_flight = 0
    for login in ("user00001@example.com", "user00002@example.com", "user00003@example.com"):
        run_job(ctx=held, job_id=new_job(store, users(login)))
    ctx.budget = budget_of(RateLimiter(store.redis, key_prefix=store.prefix, per_minute=6, burst=2))
    kicks: list[float] = []
    ctx.kick_sender = lambda _endpoint, countdown=0.0: kicks.append(countdown)
    drained = drain(ctx, USERS, deadline=float("inf"))
    assert len(box.calls) == 2 and drained.held is not None and drained.held.why == "rate"
    scheduled = [countdown for countdown in kicks if countdown > 0]  # (the others: senders beside, at once)
    assert len(scheduled) == 1 and scheduled[0] <= 10  # the third waits for a slot, and a sender is scheduled for it
