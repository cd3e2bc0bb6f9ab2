"""The periodic event-stream reader (worker/event_stream/reader.py): Box Shield alerts in, activity after termination
recorded. Beat sends it every BOXCUT_EVENTS_POLL_SECONDS; one pass runs at a time across all workers (a lock),
and a pass Box or Redis stops is simply the next pass's to finish. While Box's budget is scarce and targets wait
for a terminate call, a pass is deferred (for up to a minute in a row): terminations come first."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from config import Settings
from tasks.jobs import TRANSIENT_FAULTS
from worker.errors import BoxError, RetryLater
from worker.jobs.submit import Enqueue
from worker.run.context import RunContext
from worker.run.settlement import ENDPOINTS
from worker.runtime import PerProcess, build_event_reader

log = logging.getLogger(__name__)

READ_EVENTS = "boxcut.read_events"


def register(app: Celery, *, context: Callable[[], RunContext], settings: Settings, enqueue: Enqueue) -> Any:
    """Define the reader task on `app`; its reader is built once per worker process, after the fork."""
    reader = PerProcess(lambda: build_event_reader(context(), settings, enqueue))

    @app.task(name=READ_EVENTS, acks_late=True)  # type: ignore[untyped-decorator]
    def read_events_task() -> str:
        if defer_pass(context()):
            log.debug("event stream: %s", DEFERRED)
            return DEFERRED
        try:
            passed = reader().read()
            done = passed.describe()
        except (*TRANSIENT_FAULTS, RetryLater, BoxError) as fault:  # the next pass goes on from the kept position
            done = f"stopped, to go on at the next pass: {fault}"
            log.warning("event stream: %s", done)
            return done
        # A pass that found nothing is said at DEBUG: every few seconds at INFO, idle passes buried the rest.
        (log.info if passed.alerts or passed.activity or passed.restarted else log.debug)("event stream: %s", done)
        return done

    return read_events_task


# A pass deferred because Box's budget is scarce and terminations wait for it: the position is kept, and a later
# pass reads on from it.
DEFERRED = "deferred: Box's budget is scarce and targets wait to be sent; the next pass reads on"


# Passes are deferred for at most this long in a row: Box Shield alerts still come in during a long scarce storm.
MAX_DEFER_SECONDS = 60.0


def defer_pass(ctx: RunContext) -> bool:
    """Whether this pass waits for the terminations (`terminations_wait`), unless passes have been deferred for
    MAX_DEFER_SECONDS already; a pass that goes ends the run of deferrals."""
    key = f"{ctx.store.prefix}events:deferred_since"
    if not terminations_wait(ctx):
        ctx.store.redis.delete(key)
        return False
    now = ctx.wall_clock()
    ctx.store.redis.set(key, now, nx=True, ex=int(MAX_DEFER_SECONDS * 10))
    since = float(ctx.store.redis.get(key) or now)
    if now - since < MAX_DEFER_SECONDS:
        return True
    ctx.store.redis.delete(key)
    return False


def terminations_wait(ctx: RunContext) -> bool:
    """Calls are scarce (worker/jobs/send_queue.py) and targets wait for one: a read would spend a call they need."""
    if ctx.budget is None or not ctx.queue.scarce(ctx.budget, now_ms=ctx.now_ms()):
        return False
    now_ms = ctx.now_ms()
    return any(ctx.queue.depth(endpoint, now_ms=now_ms).waiting_ids for endpoint in ENDPOINTS.values())
