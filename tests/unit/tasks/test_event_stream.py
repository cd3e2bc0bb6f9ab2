"""The event-stream pass defers to terminations while Box's budget is scarce and targets wait for a call."""

from __future__ import annotations

from tasks.event_stream import MAX_DEFER_SECONDS, defer_pass, terminations_wait
from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, users
from worker.box.rate_limit import RateLimiter
from worker.jobs.store import JobStore
from worker.run.runner import run_job
from worker.runtime import budget_of


def test_a_pass_waits_only_while_calls_are_scarce_and_targets_wait_for_one(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    ctx = make_ctx(store, box)
    limiter = RateLimiter(store.redis, key_prefix=store.prefix, per_minute=600)
    ctx.budget = budget_of(limiter)
    assert not terminations_wait(ctx)  # plentiful, nothing waiting
    limiter.pause(3)
    assert not terminations_wait(ctx)  # scarce, but nothing waits: the read goes
    run_job(ctx=ctx, job_id=new_job(store, users("user00001@example.com")))  # queued into the pause
    assert terminations_wait(ctx)
    store.redis.delete(limiter.pause_key, limiter.tight_key)
    assert not terminations_wait(ctx)  # plentiful again: the read goes, though the target still waits


def test_passes_are_deferred_for_a_minute_in_a_row_at_most(store: JobStore) -> None:
    box = FakeBox(users=directory(1))
    ctx = make_ctx(store, box)
    limiter = RateLimiter(store.redis, key_prefix=store.prefix, per_minute=600)
    ctx.budget = budget_of(limiter)
    limiter.pause(600)
    run_job(ctx=ctx, job_id=new_job(store, users("user00001@example.com")))
    assert defer_pass(ctx) and defer_pass(ctx)
    later = make_ctx(store, box, later=MAX_DEFER_SECONDS + 1)
    later.budget = ctx.budget
    assert not defer_pass(later)  # a minute of deferrals: this pass reads
    assert defer_pass(later)  # and the next may wait again
