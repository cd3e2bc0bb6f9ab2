"""The sending tasks: drain the shared send queue, and the sweeps that let nothing wait unseen there.

Sending is Celery's work: a job task sends from the queue itself once it queued its targets; `boxcut.send`
tasks add senders beside it for bulk work, and are scheduled (a countdown) for the moment the shared budget
opens when it holds what waits. Every worker process's heartbeat (worker/run/heartbeat.py) also runs `rescue`:
one process a beat starts a sender for a call whose sender died (its claim ran out) and enqueues again a job
whose run died, seconds after the death. The periodic sweep (Celery beat, every BOXCUT_SWEEP_SECONDS) starts a
sender for what nobody carries (targets left when a run's time was up, a scheduled sender lost with its
worker), settles jobs nothing carries any more, and enqueues jobs that lost their task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from tasks.jobs import TRANSIENT_FAULTS, WORKER_LOST_RETRY_SECONDS, fault_countdown
from worker.errors import RetryLater
from worker.run.context import KickSender, RunContext
from worker.run.sender import drain
from worker.run.settlement import ENDPOINTS, settle_if_done
from worker.run.sweeper import requeue_stranded

log = logging.getLogger(__name__)

SEND = "boxcut.send"
SWEEP = "boxcut.sweep"

# Terminating jobs the sweep looks at per round, oldest first, to settle any whose last answer was recorded by
# a sender that died before it could settle them.
SWEEP_JOBS = 500


def register(app: Celery, *, context: Callable[[], RunContext], kick: KickSender,
             enqueue: Callable[[str], None], stale_job_seconds: float, max_countdown: float) -> tuple[Any, Any]:
    """Define the send and sweep tasks on `app`."""

    @app.task(name=SEND, bind=True, max_retries=None, acks_late=True,  # type: ignore[untyped-decorator]
              default_retry_delay=WORKER_LOST_RETRY_SECONDS)
    def send_task(self: Task, endpoint: str) -> str:
        ctx = context()
        try:
            drained = drain(ctx, endpoint, deadline=ctx.clock() + ctx.run_budget_seconds)
            if not drained.done:
                kick(endpoint)  # time is up and work remains: a fresh task goes on with it
                return "continued"
            if drained.held is not None:
                return f"held: {drained.held.why} for {drained.held.wait_ms} ms"
        except RetryLater as wait:
            raise self.retry(countdown=min(wait.delay, max_countdown)) from None
        except TRANSIENT_FAULTS as fault:
            log.warning("sending %s: %s; retrying", endpoint, fault)
            raise self.retry(countdown=fault_countdown(self.request.retries)) from None
        return "drained"

    @app.task(name=SWEEP, acks_late=True)  # type: ignore[untyped-decorator]
    def sweep_task() -> dict[str, int]:
        ctx = context()
        ctx.store.note_sweep()
        return sweep(ctx, kick, enqueue=enqueue, stale_job_seconds=stale_job_seconds)

    return send_task, sweep_task


def rescue(ctx: RunContext, kick: KickSender, *, enqueue: Callable[[str], None]) -> dict[str, int]:
    """What a dead worker stranded, taken over within seconds (run every heartbeat of every worker process; one
    process a beat does the work): a sender for each endpoint with a call whose claim ran out, and a fresh task
    for each job whose run's lease ran out without being let go. Returns what it found, for the log."""
    if not ctx.store.redis.set(f"{ctx.store.prefix}rescue:round", "1", nx=True, px=int(ctx.beat.interval * 1000)):
        return {}
    now_ms = ctx.now_ms()
    found = {"calls": 0, "jobs": 0}
    for endpoint in ENDPOINTS.values():
        if ctx.queue.stale_calls(endpoint, now_ms=now_ms):
            kick(endpoint)
            found["calls"] += 1
    for job_id in ctx.store.died_runs(now_ms=now_ms, limit=SWEEP_JOBS):
        ctx.store.note_requeued(job_id, why="its run stopped without letting go of it: enqueued again",
                                at=now_ms / 1000)
        enqueue(job_id)
        ctx.store.forget_run(job_id, deadline_ms=now_ms)  # only once enqueued: a failed enqueue is tried again
        found["jobs"] += 1
    if any(found.values()):
        log.warning("rescue: %s", found)
    return found


def sweep(ctx: RunContext, kick: KickSender, *, enqueue: Callable[[str], None],
          stale_job_seconds: float) -> dict[str, int]:
    """Start a sender where targets wait with no call in flight, or a call's claim ran out; settle terminating
    jobs that nothing carries any more; enqueue again idle jobs that may have lost their task
    (worker/run/sweeper.py). Returns what it found, for the log."""
    found = {"kicked": 0, "settled": 0,
             "requeued": len(requeue_stranded(ctx.store, enqueue, stale_seconds=stale_job_seconds))}
    now_ms = ctx.now_ms()
    for endpoint in ENDPOINTS.values():
        depth = ctx.queue.depth(endpoint, now_ms=now_ms)
        if (depth.waiting_ids and not depth.in_flight) or ctx.queue.stale_calls(endpoint, now_ms=now_ms):
            kick(endpoint)
            found["kicked"] += 1
    for job_id in ctx.store.terminating_jobs(limit=SWEEP_JOBS):
        if ctx.queue.open_targets(job_id) <= 0 and settle_if_done(ctx.store, ctx.queue, job_id):
            found["settled"] += 1
    if any(found.values()):
        log.info("sweep: %s", found)
    return found
