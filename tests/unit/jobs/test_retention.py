"""Retention: finished jobs older than the horizon leave with their calls and audit; the rest stay whole."""

from __future__ import annotations

import time

from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, users
from worker.box.answers import USERS_TERMINATE_ENDPOINT
from worker.jobs.model import JobState
from worker.jobs.retention import expire
from worker.jobs.store import JobStore
from worker.run.context import RunContext
from worker.run.runner import run_job
from worker.run.sender import drain

DAYS = 400


def _moment() -> float:
    """A time strictly between what was written before and what is written after."""
    time.sleep(0.005)
    at = time.time()
    time.sleep(0.005)
    return at


def _expire_as_of(ctx: RunContext, horizon: float) -> object:
    return expire(ctx.store, ctx.queue, retention_days=DAYS, now=lambda: horizon + DAYS * 86400)


def _holding(store: JobStore, ctx: RunContext) -> RunContext:
    """A context whose runs queue their targets and send nothing (every take is busy)."""
    held = make_ctx(store, ctx.box)  # type: ignore[arg-type]
    held.max_in_flight = 0
    return held


def _held(store: JobStore, ctx: RunContext, *logins: str) -> list[str]:
    """One job per login, resolved and queued, nothing sent yet."""
    job_ids = [new_job(store, users(login)) for login in logins]
    for job_id in job_ids:
        run_job(ctx=_holding(store, ctx), job_id=job_id)
    return job_ids


def test_a_finished_job_past_the_horizon_leaves_with_its_call_and_audit_and_a_newer_one_stays(
        store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(2)))
    old = new_job(store, users("user00001@example.com"))
    run_job(ctx=ctx, job_id=old)
    old_call = store.load(old).calls[0].call_id
    horizon = _moment()
    new = new_job(store, users("user00002@example.com"))
    run_job(ctx=ctx, job_id=new)
    assert {store.load(old).state, store.load(new).state} == {JobState.SUCCEEDED}

    done = _expire_as_of(ctx, horizon)

    assert not store.exists(old) and store.exists(new)
    assert store.load_call(old_call) is None and store.attempts_sent(old_call) == 0
    assert [s.job_id for s in store.list_jobs()[0]] == [new]
    assert store.list_jobs(state="succeeded")[0][0].job_id == new
    assert store.audit_entries(job_id=old) == []
    assert {e["job_id"] for e in store.audit_since()} == {new}  # the stream is trimmed to the horizon
    assert store.load(new).calls and store.audit_entries(job_id=new)[0]["event"] == "created"
    assert (done.jobs, done.calls) == (1, 1) and done.audit_entries > 0
    assert not [k for k in store.redis.scan_iter(match=f"{store.prefix}*{old}*")]  # nothing of the old job is left


def test_a_call_shared_with_a_kept_job_stays_until_that_job_goes_too(store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(2)))
    first = new_job(store, users("user00001@example.com"))
    horizon = _moment()
    second = new_job(store, users("user00002@example.com"))
    for job_id in (first, second):
        run_job(ctx=_holding(store, ctx), job_id=job_id)
    assert drain(ctx, USERS_TERMINATE_ENDPOINT, deadline=float("inf"))
    [shared] = {c.call_id for j in (first, second) for c in store.load(j).calls}

    _expire_as_of(ctx, horizon)
    assert not store.exists(first) and store.load_call(shared) is not None  # the second job still shows it
    assert store.load(second).calls[0].call_id == shared

    _expire_as_of(ctx, time.time() + 1)
    assert not store.exists(second) and store.load_call(shared) is None


def test_a_job_that_is_not_final_is_kept_however_old(store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(2)))
    [waiting] = _held(store, ctx, "user00001@example.com")  # its target waits in the send queue
    assert store.load(waiting).state is JobState.TERMINATING
    _expire_as_of(ctx, time.time() + 1)
    assert store.exists(waiting) and store.audit_entries(job_id=waiting)[0]["event"] == "created"


def test_a_kept_jobs_audit_trail_reads_whole_past_a_thousand_entries_among_many_others(store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(2)))
    job_id = new_job(store, users("user00001@example.com"))
    for n in range(1200):
        store.note_requeued(job_id, why=f"round {n}", at=time.time())
        store.note_requeued(new_job(store, users("user00002@example.com")) if n % 400 == 0 else job_id,
                            why="noise", at=time.time())
    for _ in range(1500):  # other jobs' entries after it, more than a thousand
        store.note_sweep()
        store.redis.xadd(store.audit_key, {"job_id": "j-0000000000000000", "event": "noise", "at": "-",
                                           "data": "{}"})
    run_job(ctx=ctx, job_id=job_id)
    trail = store.audit_entries(job_id=job_id)
    assert trail[0]["event"] == "created" and trail[-1]["event"] == "state"
    assert len([e for e in trail if e["event"] == "requeued"]) >= 2397
    assert {e["job_id"] for e in trail} == {job_id}


def test_old_jobs_that_are_kept_do_not_stop_the_finished_ones_behind_them(store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(3)))
    kept = [new_job(store, users(login)) for login in ("user00001@example.com", "user00002@example.com")]
    for job_id in kept:  # old, and waiting for a person
        run_job(ctx=make_ctx(store, ctx.box, threshold=0), job_id=job_id)  # type: ignore[arg-type]
        assert store.load(job_id).state is JobState.AWAITING_APPROVAL
    finished = new_job(store, users("user00003@example.com"))
    run_job(ctx=ctx, job_id=finished)
    done = expire(ctx.store, ctx.queue, retention_days=DAYS, now=lambda: time.time() + 1 + DAYS * 86400, page=1)
    assert done.jobs == 1 and not store.exists(finished) and all(store.exists(j) for j in kept)
