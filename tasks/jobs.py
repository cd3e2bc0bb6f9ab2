"""The job task: load a job by id, run it, and turn waits and faults into Celery retries."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import MaxRetriesExceededError, SoftTimeLimitExceeded

from worker import logs
from worker.connections import TRANSIENT_REDIS_FAULTS, recover_from
from worker.errors import (
    BoxAuthError,
    BoxRetryableError,
    BoxTransportError,
    BoxUnauthorized,
    JobNotFound,
    LeaseHeld,
    RetryLater,
    describe_error,
)
from worker.jobs.model import FAULT_EVENT
from worker.run.context import RunContext
from worker.run.runner import RunOutcome, fail_for_credentials, give_up, run_job

log = logging.getLogger(__name__)

RUN_JOB = "boxcut.run_job"

# Celery retries of one job, across waits, faults and worker losses; RetryLater waits are at most
# MAX_COUNTDOWN_SECONDS, so this bounds a stuck job to many hours before its targets end `dead`.
MAX_TASK_RETRIES = 100

# Faults that may heal on their own (Box down, credentials being fixed, Redis restarting, full or failing over:
# worker/connections.py lists Redis's): retry with back-off. A retry that Redis cannot take (down, or full) makes
# Celery drop the message (`Reject(requeue=False)`); the job record still says where it stood, and the sweep
# enqueues it again once Redis is back (worker/run/sweeper.py).
TRANSIENT_FAULTS = (BoxTransportError, BoxRetryableError, BoxUnauthorized, *TRANSIENT_REDIS_FAULTS)


def fault_countdown(retries: int) -> float:
    """Back-off for transient faults: 5 s, 10 s, 20 s ... capped at 5 minutes."""
    return float(min(300, 5 * 2 ** min(retries, 6)))


# A task whose pool process died (killed, OOM) runs again after this long: Celery's retry on a lost worker uses
# the task's default retry delay, 180 s unless set, three minutes of containment lost. Every other retry here
# gives its own countdown.
WORKER_LOST_RETRY_SECONDS = 2

# A held lease is checked again after at most this long, so a job whose holder died resumes soon.
LEASE_RECHECK_SECONDS = 30.0


def register(app: Celery, *, context: Callable[[], RunContext], max_countdown: float) -> Any:
    """Define the job task on `app`; `context` gives this worker process's RunContext."""

    @app.task(name=RUN_JOB, bind=True, max_retries=MAX_TASK_RETRIES, acks_late=True,  # type: ignore[untyped-decorator]
              default_retry_delay=WORKER_LOST_RETRY_SECONDS)
    def run_job_task(self: Task, job_id: str) -> str:
        with logs.context(job_id=job_id):
            return _run(self, context(), job_id, max_countdown)

    return run_job_task


def _run(task: Task, ctx: RunContext, job_id: str, max_countdown: float) -> str:
    """One run of the job task: run the job and turn its waits and faults into Celery retries."""
    try:
        outcome = run_job(ctx=ctx, job_id=job_id)
    except JobNotFound:
        log.error("job %s: no such job record; dropping the task", job_id)
        return "missing"
    except RetryLater as wait:
        log.info("job %s: waiting %.1f s (%s)", job_id, wait.delay, wait.reason)
        _retry(task, ctx, job_id, countdown=min(wait.delay, max_countdown))
    except BoxAuthError as refused:
        # Box refused the credentials themselves: permanent, so said at once, not waited out for hours.
        log.error("job %s: %s", job_id, refused)
        fail_for_credentials(store=ctx.store, job_id=job_id, error=refused)
        return RunOutcome.SETTLED.value
    except LeaseHeld as held:
        _retry(task, ctx, job_id, countdown=min(held.ttl, LEASE_RECHECK_SECONDS))
    except TRANSIENT_FAULTS as fault:
        log.warning("job %s: %s; retrying", job_id, fault)
        recover_from(ctx.store.redis, fault)
        _note_fault(ctx, job_id, fault, retries=task.request.retries)
        _retry(task, ctx, job_id, countdown=fault_countdown(task.request.retries))
    except SoftTimeLimitExceeded:
        log.warning("job %s: the run overran its time limit; a fresh run continues it", job_id)
        _continue(task, job_id)
        return RunOutcome.CONTINUE.value
    except Exception as error:
        # Not a fault boxcut knows to wait out: say so in the record (targets end `dead`, listed by
        # `boxcut jobs --state dead`, sent again by `boxcut retry`) rather than leave the job stuck.
        log.exception("job %s: unexpected %s; ending its pending targets", job_id, type(error).__name__)
        give_up(store=ctx.store, job_id=job_id, why=f"stopped by an unexpected {type(error).__name__}: {error}")
        raise
    if outcome is RunOutcome.CONTINUE:
        _continue(task, job_id)
    return outcome.value


def _note_fault(ctx: RunContext, job_id: str, fault: Exception, *, retries: int) -> None:
    """Record the fault in the job's trail, so whoever waits for the job reads why it does not move: at the first
    retry and then at the 1st, 2nd, 4th, 8th... (at most 8 entries over a job's 100 retries, however long an outage
    lasts); best effort (Redis may be the fault)."""
    if retries & (retries - 1):
        return
    with contextlib.suppress(redis.RedisError):
        ctx.store.note(job_id, FAULT_EVENT, {"error": describe_error(fault)})


def _continue(task: Task, job_id: str) -> None:
    """Hand the rest of a long job to a fresh run; a hand-over is not a retry, so it spends none."""
    task.apply_async(args=[job_id], countdown=0)


def _retry(task: Task, ctx: RunContext, job_id: str, *, countdown: float) -> None:
    """Ask Celery to run the job again later; when its retries are spent, end the job's pending targets."""
    try:
        raise task.retry(countdown=countdown)
    except MaxRetriesExceededError:
        why = f"gave up after {task.max_retries} task retries"
        log.error("job %s: %s", job_id, why)
        give_up(store=ctx.store, job_id=job_id, why=why)
        raise
