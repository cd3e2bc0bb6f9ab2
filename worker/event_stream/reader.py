"""The event-stream reader: one pass over Box's enterprise event stream (`admin_logs_streaming`), by one worker
at a time (a Redis lock), from the position kept in Redis.

Each page's events are handled before the position after them is kept, and handling is safe to repeat: a
`SHIELD_ALERT` becomes a job through the one submit path under its Box event id (a repeat, from Box, from a page
read again after a crash, or from a SIEM relaying the same alert, returns the first job), and an event by a
watched user is recorded once per event id. So a pass cut short anywhere loses nothing and repeats nothing.

Box's quirks: it repeats events and sends them out of order (handled by event id, above); a page may hold
fewer events than asked, even none, while more remain (the pass goes on while the position moves); a position
older than the two weeks or so Box keeps cannot be read on (the reader starts again from `now`, and says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from config import defaults
from config.shield_rules import ShieldRule
from worker import metrics
from worker.box.answers import EventPage
from worker.errors import AdapterError, BoxPermanentError, describe_error
from worker.event_stream.cursor import StreamCursor
from worker.event_stream.shield import SHIELD_ALERT, ShieldAlert, action_of
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.store import JobStore, Watched
from worker.jobs.submit import Enqueue, build_job, submit
from worker.locks import RedisLock

log = logging.getLogger(__name__)

NOW = "now"
REQUESTED_BY = "box-event-stream"
# Box's "Unknown User": the envelope of a SHIELD_ALERT, and of events no signed-in user made.
UNKNOWN_USER_ID = "2"


class EventSource(Protocol):
    """The Box call the reader makes."""

    def admin_events(self, stream_position: str, *, limit: int) -> EventPage: ...


@dataclass(frozen=True)
class PassReport:
    """What one pass did, for the task's log line."""

    pages: int = 0
    events: int = 0
    alerts: int = 0
    activity: int = 0
    held_elsewhere: bool = False
    restarted: str | None = None

    def describe(self) -> str:
        if self.held_elsewhere:
            return "another worker is reading the event stream"
        restarted = f"; started again from now ({self.restarted})" if self.restarted else ""
        return (f"{self.pages} pages, {self.events} events, {self.alerts} Box Shield alerts, "
                f"{self.activity} events after termination{restarted}")


@dataclass
class EventReader:
    """Reads the stream for Box Shield alerts and for what watched users did after their termination."""

    box: EventSource
    store: JobStore
    cursor: StreamCursor
    keys: IdempotencyKeys
    enqueue: Enqueue
    rules: tuple[ShieldRule, ...]
    page_limit: int = defaults.EVENTS_PAGE_LIMIT
    max_pages: int = defaults.EVENTS_MAX_PAGES_PER_PASS
    max_position_age_seconds: float = defaults.EVENTS_POSITION_MAX_AGE_HOURS * 3600.0
    lock_seconds: float = 120.0
    clock: Callable[[], float] = field(default=time.time)

    def read(self) -> PassReport:
        """One pass, under the reader's lock; nothing when another worker holds it."""
        lock = RedisLock(self.store.redis, self.cursor.lock_key, ttl_ms=int(self.lock_seconds * 1000))
        if not lock.acquire():
            return PassReport(held_elsewhere=True)
        try:
            return self._read(lock)
        except BoxPermanentError:
            raise  # noted where it was understood
        except Exception as stopped:
            self.cursor.note_problem(f"the last pass stopped: {describe_error(stopped)}")
            raise
        finally:
            lock.release()

    def _read(self, lock: RedisLock) -> PassReport:
        position, restarted = self._start()
        pages = events = alerts = activity = 0
        while pages < self.max_pages:
            try:
                page = self.box.admin_events(position, limit=self.page_limit)
            except BoxPermanentError as refused:
                if refused.status != 400 or position == NOW or restarted == "refused":  # once a pass at most
                    self.cursor.note_problem(_refusal(refused))
                    raise
                position, restarted = self._restart(f"Box refused the kept position ({refused})", "refused"), "refused"
                continue
            pages += 1
            handled = self._handle(page.entries)
            alerts, activity = alerts + handled[0], activity + handled[1]
            events += len(page.entries)
            self.cursor.save(page.next_position, events=len(page.entries))
            metrics.events_read(len(page.entries))
            moved, position = page.next_position != position, page.next_position
            if not page.entries and not moved:
                break  # caught up with the stream
            if not lock.renew():
                log.warning("event stream: the reader's lock ran out mid-pass; another worker goes on")
                break
        self.cursor.clear_problem()
        return PassReport(pages=pages, events=events, alerts=alerts, activity=activity, restarted=restarted)

    def _start(self) -> tuple[str, str | None]:
        """The position to read from, starting again from `now` when there is none or it is too old."""
        position = self.cursor.position()
        if position is None:
            return self._restart("no position kept yet: reading begins now; earlier events are not read",
                                 "first"), "first"
        age = self.cursor.age_seconds()
        if age is not None and age > self.max_position_age_seconds:
            return self._restart(f"the kept position is {age / 3600:.0f} hours old, older than Box keeps the "
                                 "stream: events since then are not read", "too_old"), "too_old"
        return position, None

    def _restart(self, why: str, label: str) -> str:
        page = self.box.admin_events(NOW, limit=1)
        self.cursor.restart(page.next_position, why=why)
        metrics.stream_restarted(label)
        (log.info if label == "first" else log.warning)("event stream: starting from now: %s", why)
        return page.next_position

    def _handle(self, entries: list[dict[str, object]]) -> tuple[int, int]:
        """Handle one page's events once each (Box repeats some); returns the alerts and activity recorded."""
        watched = _by_user(self.store.watched(now_ms=int(self.clock() * 1000)))
        seen: set[str] = set()
        alerts = activity = 0
        for event in entries:
            event_id = str(event.get("event_id") or "")
            if event_id in seen:
                continue
            seen.add(event_id)
            if event.get("event_type") == SHIELD_ALERT:
                alerts += self._alert(event)
            else:
                activity += self._activity(event, watched)
        return alerts, activity

    def _alert(self, event: dict[str, Any]) -> int:
        self.cursor.note_shield_alert()
        try:
            alert = ShieldAlert.of(event)
        except AdapterError as unusable:
            # One odd event must not stop the stream behind it: it is logged, counted and passed.
            log.warning("event stream: Box Shield alert %s names nobody usable (%s); skipped",
                        event.get("event_id"), unusable)
            metrics.shield_alert("skipped")
            return 0
        request = alert.request(self.rules, requested_by=REQUESTED_BY)
        made = submit(store=self.store, enqueue=self.enqueue, job=build_job(request), keys=self.keys,
                      key=alert.event_id)
        if not made.duplicate:
            metrics.shield_alert(action_of(request))
            log.info("event stream: Box Shield alert %s is job %s (%s)", alert.event_id, made.job_id,
                     action_of(request))
        return 0 if made.duplicate else 1

    def _activity(self, event: dict[str, Any], watched: dict[str, list[Watched]]) -> int:
        user_id = _created_by(event)
        if user_id is None or user_id not in watched:
            return 0
        created_ms = _epoch_ms(event.get("created_at"))
        if created_ms is None:
            return 0
        recorded = 0
        for watch in watched[user_id]:
            # Box's times are to the second: an event in the acceptance's own second counts as after it.
            after_ms = created_ms - (watch.accepted_ms // 1000) * 1000
            if not 0 <= after_ms <= self.store.watch_seconds * 1000:
                continue
            if self.store.note_activity(watch.job_id, watch.index, _activity(event, watch, created_ms)):
                metrics.activity_after()
                log.warning("job %s: user %s acted in Box %.0f s after Box accepted their termination (%s)",
                            watch.job_id, user_id, max(0, created_ms - watch.accepted_ms) / 1000,
                            event.get("event_type"))
                recorded += 1
        return recorded


def _activity(event: dict[str, Any], watch: Watched, created_ms: int) -> dict[str, Any]:
    """What a job keeps of an event by its user after termination."""
    kept: dict[str, Any] = {
        "event_id": event.get("event_id"), "event_type": event.get("event_type"),
        "created_at": event.get("created_at"), "session_id": event.get("session_id"),
        "seconds_after": round(max(0, created_ms - watch.accepted_ms) / 1000, 3),
    }
    if event.get("ip_address"):
        kept["ip_address"] = event.get("ip_address")
    return kept


def _by_user(watched: list[Watched]) -> dict[str, list[Watched]]:
    users: dict[str, list[Watched]] = {}
    for watch in watched:
        users.setdefault(watch.user_id, []).append(watch)
    return users


def _created_by(event: dict[str, Any]) -> str | None:
    creator = event.get("created_by")
    user_id = creator.get("id") if isinstance(creator, dict) else None
    text = str(user_id) if isinstance(user_id, (str, int)) and not isinstance(user_id, bool) else None
    return None if text in (None, "", UNKNOWN_USER_ID) else text


def _epoch_ms(value: object) -> int | None:
    """An event's `created_at` (ISO 8601 with an offset, as Box writes it) in epoch ms; None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(when.timestamp() * 1000) if when.tzinfo is not None else None


def _refusal(error: BoxPermanentError) -> str:
    if error.status == 403:
        return (f"Box refused to read the event stream ({describe_error(error)}): the service account needs to "
                "be an admin or a co-admin with 'Run new reports and access existing reports'")
    return f"Box refused to read the event stream ({describe_error(error)})"
