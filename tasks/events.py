"""The periodic event-stream reader (worker/events/reader.py): Box Shield alerts in, activity after termination
recorded. Beat sends it every BOXCUT_EVENTS_POLL_SECONDS; one pass runs at a time across all workers (a lock),
and a pass Box or Redis stops is simply the next pass's to finish. While Box's budget is scarce and targets wait
for a terminate call, a pass is deferred (for up to a minute in a row): terminations come first."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, cast

from celery import Celery

from config import Settings, defaults
from tasks.jobs import TRANSIENT_FAULTS
from worker.errors import BoxError, RetryLater
from worker.events.cursor import StreamCursor
from worker.events.reader import EventReader, EventSource
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.submit import Enqueue
from worker.run.runner import RunContext
from worker.run.settlement import ENDPOINTS

log = logging.getLogger(__name__)

READ_EVENTS = "boxcut.read_events"


def register(app: Celery, *, context: Callable[[], RunContext], settings: Settings, enqueue: Enqueue) -> Any:
    """Define the reader task on `app`; its reader is built once per worker process, after the fork."""
    readers: dict[int, EventReader] = {}

    def reader() -> EventReader:
        if os.getpid() not in readers:
            readers.clear()
            readers[os.getpid()] = event_reader(context(), settings, enqueue)
        return readers[os.getpid()]

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


def event_reader(ctx: RunContext, settings: Settings, enqueue: Enqueue) -> EventReader:
    """A reader over the worker's own Box client, store and Redis."""
    client = ctx.store.redis
    return EventReader(
        box=cast(EventSource, ctx.box),  # the runtime's BoxClient, which reads the stream too
        store=ctx.store,
        cursor=StreamCursor(client, key_prefix=settings.key_prefix),
        keys=IdempotencyKeys(client, key_prefix=settings.key_prefix,
                             ttl_seconds=defaults.SHIELD_EVENT_KEY_TTL_SECONDS),
        enqueue=enqueue,
        rules=settings.shield_rules,
        max_position_age_seconds=settings.events_position_max_age_hours * 3600.0,
        # A page's worst case is the in-task retry budget and a read timeout or two; the lock is renewed per page.
        lock_seconds=2 * (settings.retry_budget_seconds + settings.http_read_timeout),
    )
