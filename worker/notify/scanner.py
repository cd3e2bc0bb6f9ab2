"""The scanner: follows the audit stream for jobs that come to wait for approval or end, and for the brake
engaging (once per engagement, not once per job it holds), and enqueues one delivery per receiver for each, by
one worker at a time (a Redis lock), from a position kept in Redis.

Every change of a job's state, wherever it is made (a run, the settlement of its calls, an operator's approve or
cancel, a failed submission), is a `state` entry in the audit stream, written in the same step as the change. So
following the stream misses none and needs nothing of the code that makes them.

Nothing lost, nothing repeated: a delivery whose task was lost (a retry Celery could not publish while Redis was
full) is enqueued again once it is overdue (worker/notify/records.py); the position after an entry is kept only
once the entry's deliveries are enqueued, and a delivery already recorded in its job is never enqueued again (an
entry read again after a pass was cut short). A pass that dies between enqueuing a delivery and recording it
sends that one twice rather than never: receivers de-duplicate on the body's `id`. The first pass ever starts at
the stream's end: no notifications for what happened before they were turned on.

    P notify:cursor   string the id of the last audit entry handled
    P notify:lock     string the scanner that holds the stream now (worker/locks.py)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config import defaults
from config.notify_urls import NotifyURL
from worker.jobs.brake import BRAKE_ACTOR, ENGAGED_EVENT
from worker.jobs.store import JobStore
from worker.locks import RedisLock
from worker.notify.notice import AWAITING_APPROVAL, BRAKE_ENGAGED, Notice, event_of
from worker.notify.records import DeliveryRecords

log = logging.getLogger(__name__)

# A stream's id before any entry: XRANGE from just after it reads the whole stream.
START = "0-0"

EnqueueNotice = Callable[[Notice], None]


class AuditCursor:
    """The scanner's position in the audit stream: the id of the last entry handled."""

    def __init__(self, store: JobStore) -> None:
        self.redis = store.redis
        self.key = f"{store.prefix}notify:cursor"
        self.lock_key = f"{store.prefix}notify:lock"

    def position(self) -> str | None:
        value = self.redis.get(self.key)
        return _text(value) if value is not None else None

    def save(self, entry_id: str) -> None:
        self.redis.set(self.key, entry_id)


@dataclass(frozen=True)
class ScanReport:
    """What one pass did, for the task's log line."""

    entries: int = 0
    notices: int = 0
    started: bool = False
    held_elsewhere: bool = False

    def describe(self) -> str:
        if self.held_elsewhere:
            return "another worker is following the audit stream"
        if self.started:
            return "started at the audit stream's end; earlier entries send nothing"
        return f"{self.entries} audit entries, {self.notices} notifications enqueued"


@dataclass
class NotifyScanner:
    """Follows the audit stream and enqueues the deliveries of the notifications it calls for."""

    store: JobStore
    urls: tuple[NotifyURL, ...]
    enqueue: EnqueueNotice
    page_limit: int = defaults.NOTIFY_PAGE_LIMIT
    max_pages: int = defaults.NOTIFY_MAX_PAGES_PER_PASS
    lock_seconds: float = 60.0

    def __post_init__(self) -> None:
        self.cursor = AuditCursor(self.store)
        self.records = DeliveryRecords(self.store)

    def scan(self) -> ScanReport:
        """One pass, under the scanner's lock; nothing when another worker holds it."""
        lock = RedisLock(self.store.redis, self.cursor.lock_key, ttl_ms=int(self.lock_seconds * 1000))
        if not lock.acquire():
            return ScanReport(held_elsewhere=True)
        try:
            return self._scan(lock)
        finally:
            lock.release()

    def _scan(self, lock: RedisLock) -> ScanReport:
        position = self.cursor.position()
        if position is None:
            self.cursor.save(self._stream_end())
            return ScanReport(started=True)
        entries, notices = 0, self._enqueue_stranded()
        for _ in range(self.max_pages):
            page = self.store.redis.xrange(self.store.audit_key, min="(" + position, max="+",
                                           count=self.page_limit) or []
            try:
                for entry_id, fields in page:
                    notices += self._handle(_text(entry_id), fields)
                    position, entries = _text(entry_id), entries + 1
            finally:
                self.cursor.save(position)  # up to the last entry whose deliveries are all enqueued
            if len(page) < self.page_limit or not lock.renew():
                break
        return ScanReport(entries=entries, notices=notices)

    def _enqueue_stranded(self) -> int:
        """Enqueue again each delivery whose task is overdue (lost: worker/notify/records.py); how many."""
        stranded = self.records.overdue(now_ms=int(time.time() * 1000), limit=self.page_limit)
        for notice in list(stranded):
            if not self.store.exists(notice.job_id):  # retention removed it since: nothing to tell about it
                self.records.drop(notice)
                stranded.remove(notice)
                continue
            log.warning("job %s: notification %s to receiver %d had no word for too long: enqueued again",
                        notice.job_id, notice.event, notice.url_index)
            self.enqueue(notice)
        return len(stranded)

    def _stream_end(self) -> str:
        last = self.store.redis.xrevrange(self.store.audit_key, count=1)
        return _text(last[0][0]) if last else START

    def _handle(self, entry_id: str, fields: dict[Any, Any] | None) -> int:
        """Enqueue what one audit entry calls for, once per receiver; returns how many were enqueued now."""
        row = {_text(k): _text(v) for k, v in (fields or {}).items()}
        found = _notice_of(row)
        if found is None:
            return 0
        event, state = found
        if not self.store.exists(row["job_id"]):  # retention removed it since: nothing to tell about it
            return 0
        enqueued = 0
        for index, url in enumerate(self.urls):
            notice = Notice(job_id=row["job_id"], audit_id=entry_id, event=event, state=state, url_index=index)
            if self.records.exists(notice):
                continue
            self.enqueue(notice)
            self.records.queued(notice, url)
            enqueued += 1
        if enqueued:
            log.info("job %s is %s: %d notifications enqueued", row["job_id"], state, enqueued)
        return enqueued


def _notice_of(row: dict[str, str]) -> tuple[str, str] | None:
    """The notification an audit entry calls for, as (event, state): a job that came to wait for approval or
    ended, or the brake engaging. A job the brake holds sends none of its own: the engagement is told once."""
    data = json.loads(row.get("data") or "{}")
    if row.get("event") == ENGAGED_EVENT:
        return BRAKE_ENGAGED, AWAITING_APPROVAL
    if row.get("event") != "state" or data.get("actor") == BRAKE_ACTOR:
        return None
    state = str(data.get("to") or "")
    event = event_of(state)
    return (event, state) if event is not None else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
