"""The Celery app, configured from settings, with boxcut's task registered on it; and the seams (enqueue, broker
check) that the CLI hands to the parts that must not know Celery's app: the intake, submitting, operator actions."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from config import Settings
from config.celery import QUEUE, SEND_QUEUE, celery_config, max_countdown
from tasks import directory, jobs, sending
from worker.run.runtime import Runtime


def create_app(settings: Settings) -> Celery:
    """A Celery app for these settings; its worker processes build their Runtime lazily, after the fork."""
    app = Celery("boxcut", set_as_current=False)
    app.conf.update(celery_config(settings))

    def kick_sender(endpoint: str) -> None:
        app.send_task(sending.SEND, args=[endpoint], queue=SEND_QUEUE)

    runtime = Runtime(settings, kick_sender=kick_sender)
    jobs.register(app, context=runtime.context, max_countdown=max_countdown(settings))
    sending.register(app, context=runtime.context, kick=kick_sender, max_countdown=max_countdown(settings))
    directory.register(app, context=runtime.context, settings=settings, queue=SEND_QUEUE)
    return app


def enqueuer(app: Celery) -> Callable[[str], None]:
    """A function that enqueues a job id for the workers."""

    def enqueue(job_id: str) -> None:
        app.send_task(jobs.RUN_JOB, args=[job_id], queue=QUEUE)

    return enqueue


def broker_check(app: Celery) -> Callable[[], None]:
    """A function that raises unless the broker answers (one try, 2 s), for readiness checks."""

    def check() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    return check
