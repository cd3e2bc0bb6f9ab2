"""The sending tasks: drain the shared send queue, and the periodic sweep that lets nothing wait unseen there.

Sending is Celery's work: a job task sends from the queue itself once it queued its targets; `boxcut.send`
tasks add senders beside it for bulk work; the sweep (Celery beat, every BOXCUT_SWEEP_SECONDS) starts a sender
for what nobody carries: a call whose sender died (its claim ran out), or targets left when a run's time was up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from tasks.jobs import TRANSIENT_FAULTS, WORKER_LOST_RETRY_SECONDS, fault_countdown
from worker.errors import RetryLater
from worker.run.runner import RunContext
from worker.run.sender import drain
from worker.run.settlement import ENDPOINTS, settle_if_done
from worker.run.sweeper import requeue_stranded

log = logging.getLogger(__name__)

SEND = "boxcut.send"
SWEEP = "boxcut.sweep"

# Terminating jobs the sweep looks at per round, oldest first, to settle any whose last answer was recorded by
# a sender that died before it could settle them.
SWEEP_JOBS = 500


def register(app: Celery, *, context: Callable[[], RunContext], kick: Callable[[str], None],
             enqueue: Callable[[str], None], stale_job_seconds: float, max_countdown: float) -> tuple[Any, Any]:
    """Define the send and sweep tasks on `app`."""

    @app.task(name=SEND, bind=True, max_retries=None, acks_late=True,  # type: ignore[untyped-decorator]
              default_retry_delay=WORKER_LOST_RETRY_SECONDS)
    def send_task(self: Task, endpoint: str) -> str:
        ctx = context()
        try:
            if not drain(ctx, endpoint, deadline=ctx.clock() + ctx.run_budget_seconds):
                kick(endpoint)  # time is up and work remains: a fresh task goes on with it
                return "continued"
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


def sweep(ctx: RunContext, kick: Callable[[str], None], *, enqueue: Callable[[str], None],
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
