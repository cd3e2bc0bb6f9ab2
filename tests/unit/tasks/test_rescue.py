"""The heartbeat's rescue: what a dead worker stranded (a call it held, a job it ran) is taken over once."""

from __future__ import annotations

import time

from tasks.sending import rescue
from tests.unit.fake_box import FakeBox, directory, make_ctx, new_job, users
from worker.box.answers import USERS_TERMINATE_ENDPOINT
from worker.jobs.store import JobStore
from worker.run.context import RunContext
from worker.run.runner import run_job


def _rescue(ctx: RunContext, store: JobStore) -> tuple[list[str], list[str]]:
    kicked: list[str] = []
    enqueued: list[str] = []
    store.redis.delete(f"{store.prefix}rescue:round")  # a new beat's round
    rescue(ctx, lambda endpoint, countdown=0.0: kicked.append(endpoint), enqueue=enqueued.append)
    return kicked, enqueued


def test_a_job_whose_run_died_is_enqueued_again_once_and_a_live_or_finished_run_is_left_alone(
        store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(2)))
    died, finished = new_job(store, users("user00001@example.com")), new_job(store, users("user00002@example.com"))
    run_job(ctx=ctx, job_id=finished)  # its run let go of it
    lease = store.lease(died, ttl_seconds=0.05)
    lease.__enter__()  # a run holds it ...
    assert _rescue(ctx, store) == ([], [])  # ... alive: nothing to take over
    time.sleep(0.1)  # ... and dies: its lease runs out without being let go
    assert _rescue(ctx, store) == ([], [died])
    assert _rescue(ctx, store) == ([], [])  # once
    assert store.audit_entries(job_id=died)[-1]["event"] == "requeued"


def test_a_call_whose_claim_ran_out_starts_a_sender_and_one_beat_of_all_processes_does_the_work(
        store: JobStore) -> None:
    ctx = make_ctx(store, FakeBox(users=directory(1)))
    held = make_ctx(store, ctx.box)  # type: ignore[arg-type]
    held.max_in_flight = 0
    run_job(ctx=held, job_id=new_job(store, users("user00001@example.com")))
    ctx.queue.take(USERS_TERMINATE_ENDPOINT, call_id="c-dead", now_ms=ctx.now_ms() - 10_000, claim_ms=1, batch=100,
                   cap=4, token="t-dead")  # taken 10 s ago by a sender that died
    assert _rescue(ctx, store) == ([USERS_TERMINATE_ENDPOINT], [])
    kicked: list[str] = []
    rescue(ctx, lambda endpoint, countdown=0.0: kicked.append(endpoint), enqueue=lambda _job: None)
    assert kicked == []  # another process's beat in the same round: the round was taken
