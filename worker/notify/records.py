"""Each notification's delivery, recorded in its job: the hash `P job:{id}:notify`, a field per
`{audit entry id}#{url index}` holding JSON

    {event, state, audit_id, url_index, url, fingerprint, slack, status, attempts, last_http_status, last_error,
     first_at, last_at, delivered_at}

`url` is `scheme://host[:port]/…`, never a path or query (config/notify_urls.py). `status` is `queued` (the
scanner enqueued it), `retrying` (an attempt failed, another follows), `delivered` or `failed` (final).

Each delivery not final is also listed in `P notify:pending` (a zset of the notice, scored by when (ms) it is
overdue: its next attempt's time plus NOTIFY_STRANDED_SECONDS), written in the same step as its record: a delivery
whose task was lost (a retry Celery could not publish while Redis was full) is found there and enqueued again by
the scanner (worker/notify/scanner.py)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from config import defaults
from config.notify_urls import NotifyURL
from worker.jobs.model import utc_now
from worker.jobs.store import JobStore
from worker.notify.notice import Notice

QUEUED, RETRYING, DELIVERED, FAILED = "queued", "retrying", "delivered", "failed"
FINAL = frozenset({DELIVERED, FAILED})


@dataclass
class Delivery:
    """One notification's delivery to one receiver, as the job records it."""

    event: str
    state: str
    audit_id: str
    url_index: int
    url: str
    fingerprint: str
    slack: bool
    status: str = QUEUED
    attempts: int = 0
    last_http_status: int | None = None
    last_error: str | None = None
    first_at: str | None = None
    last_at: str | None = None
    delivered_at: str | None = None

    @classmethod
    def new(cls, notice: Notice, url: NotifyURL) -> Delivery:
        return cls(event=notice.event, state=notice.state, audit_id=notice.audit_id, url_index=notice.url_index,
                   url=url.shown, fingerprint=url.fingerprint, slack=url.slack, first_at=utc_now())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        known: dict[str, Any] = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryRecords:
    """Reads and writes the deliveries of jobs' notifications."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._write = store.redis.register_script(_WRITE_WHILE_THE_JOB_IS_KEPT)

    def exists(self, notice: Notice) -> bool:
        return bool(self.store.redis.hexists(self.store.notify_key(notice.job_id), notice.field))

    @property
    def pending_key(self) -> str:
        return f"{self.store.prefix}notify:pending"

    def queued(self, notice: Notice, url: NotifyURL) -> bool:
        """Record the notice as queued unless its delivery is recorded already (a fast delivery task may have
        written first); whether it was written now."""
        record = Delivery.new(notice, url)
        return bool(self._write(keys=self._keys(notice),
                                args=["HSETNX", notice.field, _dumps(record), _member(notice), self._due(0.0)]))

    def get(self, notice: Notice) -> Delivery | None:
        raw = self.store.redis.hget(self.store.notify_key(notice.job_id), notice.field)
        return Delivery.from_dict(json.loads(raw)) if raw is not None else None

    def put(self, notice: Notice, record: Delivery, *, next_in: float = 0.0) -> None:
        """Write the delivery's record; one not final is pending, overdue once `next_in` seconds (its next
        attempt) and NOTIFY_STRANDED_SECONDS have passed with no word of it."""
        due = "final" if record.status in FINAL else self._due(next_in)
        self._write(keys=self._keys(notice), args=["HSET", notice.field, _dumps(record), _member(notice), due])

    def overdue(self, *, now_ms: int, limit: int) -> list[Notice]:
        """Deliveries not final whose task is overdue (lost), oldest first; each is pushed on by another stranded
        time, so a pass that enqueues it again does not meet it again at once."""
        members = [_text(m) for m in self.store.redis.zrangebyscore(self.pending_key, "-inf", now_ms, start=0,
                                                                     num=limit)]
        if members:
            later = now_ms + int(defaults.NOTIFY_STRANDED_SECONDS * 1000)
            self.store.redis.zadd(self.pending_key, dict.fromkeys(members, later), xx=True)
        return [_notice(m) for m in members]

    def drop(self, notice: Notice) -> None:
        """No longer list the notice as pending (its job is gone)."""
        self.store.redis.zrem(self.pending_key, _member(notice))

    def _keys(self, notice: Notice) -> list[str]:
        return [self.store.job_key(notice.job_id), self.store.notify_key(notice.job_id), self.pending_key]

    @staticmethod
    def _due(next_in: float) -> str:
        return str(int((time.time() + next_in + defaults.NOTIFY_STRANDED_SECONDS) * 1000))


# KEYS[1] the job's hash, KEYS[2] its deliveries, KEYS[3] the pending deliveries; ARGV[1] HSET or HSETNX, ARGV[2]
# the field, ARGV[3] the record, ARGV[4] the notice as listed in KEYS[3], ARGV[5] when it is overdue (ms), or
# `final`. A job retention removed gets no record: a key written then would outlive it, with no expiry to find it.
_WRITE_WHILE_THE_JOB_IS_KEPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[4])
  return 0
end
local written = redis.call(ARGV[1], KEYS[2], ARGV[2], ARGV[3])
if ARGV[5] == 'final' then
  redis.call('ZREM', KEYS[3], ARGV[4])
elseif written == 1 or ARGV[1] == 'HSET' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
end
return written
"""

# A notice in `notify:pending`: its task's arguments, tab-separated (none of them holds a tab).
_SEP = "\t"


def _member(notice: Notice) -> str:
    return _SEP.join(str(part) for part in notice.args())


def _notice(member: str) -> Notice:
    job_id, audit_id, event, state, url_index = member.split(_SEP)
    return Notice(job_id=job_id, audit_id=audit_id, event=event, state=state, url_index=int(url_index))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dumps(record: Delivery) -> str:
    return json.dumps(record.to_dict(), separators=(",", ":"))
