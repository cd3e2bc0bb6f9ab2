"""The periodic moves of finished work out of Redis: the archive pass (every BOXCUT_ARCHIVE_EVERY_SECONDS: the
audit stream shipped, quiet jobs settled, hot copies past BOXCUT_HOT_DAYS evicted; worker/jobs/archiving.py) and
the expiry (hourly: what is older than BOXCUT_RETENTION_DAYS leaves the archive, and Redis;
worker/jobs/retention.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from config import Settings, defaults
from worker.archive.migrate import upgrade
from worker.archive.store import ArchiveError
from worker.errors import describe_error
from worker.jobs.archiving import Archiver
from worker.jobs.retention import expire
from worker.locks import RedisLock
from worker.notify.scanner import AuditCursor
from worker.run.context import RunContext

log = logging.getLogger(__name__)

EXPIRE = "boxcut.expire"
ARCHIVE = "boxcut.archive"


def register(app: Celery, *, context: Callable[[], RunContext], settings: Settings) -> tuple[Any, Any]:
    """Define the expiry and the archive pass on `app`."""

    @app.task(name=EXPIRE, acks_late=True)  # type: ignore[untyped-decorator]
    def expire_task() -> dict[str, int]:
        ctx = context()
        done = expire(ctx.store, ctx.queue, retention_days=settings.retention_days).to_dict()
        if ctx.archive is not None:
            if ctx.archive.embedded:
                upgrade(settings.archive_location)  # made here if no archive pass has made it yet
            horizon_us = int((time.time() - settings.retention_days * 86400) * 1_000_000)
            archived = ctx.archive.expire(created_before_us=horizon_us)
            done.update(archived_jobs=archived.jobs, archived_calls=archived.calls,
                        archived_audit_entries=archived.audit_entries)
        return done

    @app.task(name=ARCHIVE, acks_late=True)  # type: ignore[untyped-decorator]
    def archive_task() -> dict[str, int]:
        ctx = context()
        if ctx.archive is None:
            return {}
        # One pass at a time; one that outlives the lock (or whose worker died) overlaps the next harmlessly:
        # every step is guarded or idempotent.
        lock = RedisLock(ctx.store.redis, f"{ctx.store.prefix}archive:lock",
                         ttl_ms=int(max(settings.archive_every_seconds * 6, 30) * 1000))
        if not lock.acquire():
            return {"held_elsewhere": 1}
        try:
            return archiver(ctx, settings).run().to_dict()
        except ArchiveError as error:
            # Nothing leaves Redis: the jobs wait there, working, until the archive answers again.
            log.error("archive pass stopped: %s; finished jobs stay in Redis until it answers",
                      describe_error(error))
            return {"archive_errors": 1}
        finally:
            lock.release()

    return expire_task, archive_task


def archiver(ctx: RunContext, settings: Settings) -> Archiver:
    """The archive pass over `ctx`'s store and archive, with the settings' windows. The embedded SQLite archive
    is made, or brought to this version's schema, here (one host, nothing to coordinate); a database server's
    schema is `boxcut migrate`'s, and a pass refuses to run on one that is behind (SchemaBehind)."""
    assert ctx.archive is not None
    if ctx.archive.embedded:
        upgrade(settings.archive_location)
    cursor = AuditCursor(ctx.store)
    return Archiver(ctx.store, ctx.queue, ctx.archive, hot_seconds=settings.hot_seconds,
                    settle_seconds=settings.settle_seconds,
                    late_events_seconds=defaults.WATCH_LATE_EVENTS_SECONDS,
                    scanned_to=cursor.position if settings.notifies else None)
