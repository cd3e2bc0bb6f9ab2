"""Notifications (worker/notify): the periodic scanner of the audit stream (on SEND_QUEUE, like the other
periodic tasks), and the delivery task it enqueues per receiver on NOTIFY_QUEUE (config/celery_settings.py), retried
with back-off through Celery. Beat sends the scanner every BOXCUT_NOTIFY_POLL_SECONDS when receivers are
named; one pass runs at a time across all workers (a lock)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import MaxRetriesExceededError, SoftTimeLimitExceeded

from config import Settings, defaults
from config.celery_settings import NOTIFY_QUEUE
from worker import logs
from worker.connections import TRANSIENT_REDIS_FAULTS, recover_from
from worker.notify.delivery import Answer, Post, backoff
from worker.notify.notice import Notice
from worker.run.context import RunContext
from worker.runtime import PerProcess, build_notifier, build_notify_scanner

log = logging.getLogger(__name__)

NOTIFY = "boxcut.notify"
SCAN = "boxcut.scan_notifications"

# Celery's own bound on retries, above any BOXCUT_NOTIFY_ATTEMPTS (the record's count is what stops them).
MAX_TASK_RETRIES = 100


def register(app: Celery, *, context: Callable[[], RunContext], settings: Settings, max_countdown: float) -> Any:
    """Define the scanner and the delivery task on `app`; what they use is built once per worker process."""
    def enqueue(notice: Notice) -> None:
        app.send_task(NOTIFY, args=notice.args(), queue=NOTIFY_QUEUE)

    scanner = PerProcess(lambda: build_notify_scanner(context(), settings, enqueue))
    delivery = PerProcess(lambda: build_notifier(context(), settings, bound=_within_the_time_limit))

    @app.task(name=SCAN, acks_late=True)  # type: ignore[untyped-decorator]
    def scan_task() -> str:
        try:
            done = scanner().scan().describe()
        except TRANSIENT_REDIS_FAULTS as fault:  # the next pass goes on from the kept position
            recover_from(context().store.redis, fault)
            done = f"stopped, to go on at the next pass: {fault}"
            log.warning("notifications: %s", done)
            return done
        log.debug("notifications: %s", done)
        return done

    @app.task(name=NOTIFY, bind=True, acks_late=True, max_retries=MAX_TASK_RETRIES,  # type: ignore[untyped-decorator]
              default_retry_delay=settings.notify_retry_seconds, soft_time_limit=defaults.NOTIFY_TASK_SOFT_SECONDS,
              time_limit=defaults.NOTIFY_TASK_SOFT_SECONDS + 10)
    def notify_task(self: Task, job_id: str, audit_id: str, event: str, state: str, url_index: int) -> str:
        notice = Notice(job_id=job_id, audit_id=audit_id, event=event, state=state, url_index=int(url_index))
        notifier = delivery()
        with logs.context(job_id=job_id):
            try:
                attempted = notifier.attempt(notice)
            # A fault of Redis itself (the record could not be read or written): the attempt is tried again with
            # the same back-off; its count is the record's, so this never sends more than BOXCUT_NOTIFY_ATTEMPTS.
            except TRANSIENT_REDIS_FAULTS as fault:
                log.warning("job %s: notification %s not recorded (Redis: %s); trying again", job_id, event, fault)
                recover_from(context().store.redis, fault)
                raise self.retry(countdown=min(max_countdown, backoff(
                    self.request.retries + 1, base=settings.notify_retry_seconds, cap=max_countdown))) from None
            except Exception as error:  # not a fault to wait out: said in the record, never left `queued`
                log.exception("job %s: notification %s stopped by an unexpected %s", job_id, event,
                              type(error).__name__)
                notifier.give_up(notice, f"stopped by an unexpected {type(error).__name__}")
                raise
            if attempted.retry_in is None:
                return attempted.status
            try:
                raise self.retry(countdown=min(attempted.retry_in, max_countdown))
            except MaxRetriesExceededError:
                notifier.give_up(notice, f"gave up after {MAX_TASK_RETRIES} task retries")
                raise

    return scan_task, notify_task


def _within_the_time_limit(post: Post) -> Post:
    """A receiver that keeps the request open (a byte every few seconds, each inside the read timeout) is cut
    off by the task's soft time limit: that attempt had no answer, and is tried again like one."""

    def bounded(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            return post(url, body, headers)
        except SoftTimeLimitExceeded:
            return Answer(None, f"the receiver did not answer within {defaults.NOTIFY_TASK_SOFT_SECONDS:g} s")

    return bounded
