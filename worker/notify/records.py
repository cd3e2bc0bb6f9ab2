"""Each notification's delivery, recorded in its job: the hash `P job:{id}:notify`, a field per
`{audit entry id}#{url index}` holding JSON

    {event, state, audit_id, url_index, url, fingerprint, slack, status, attempts, last_http_status, last_error,
     first_at, last_at, delivered_at}

`url` is `scheme://host[:port]/…`, never a path or query (config/notify_urls.py). `status` is `queued` (the
scanner enqueued it), `retrying` (an attempt failed, another follows), `delivered` or `failed` (final)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

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

    def queued(self, notice: Notice, url: NotifyURL) -> bool:
        """Record the notice as queued unless its delivery is recorded already (a fast delivery task may have
        written first); whether it was written now."""
        record = Delivery.new(notice, url)
        return bool(self._write(keys=[self.store.job_key(notice.job_id), self.store.notify_key(notice.job_id)],
                                args=["HSETNX", notice.field, _dumps(record)]))

    def get(self, notice: Notice) -> Delivery | None:
        raw = self.store.redis.hget(self.store.notify_key(notice.job_id), notice.field)
        return Delivery.from_dict(json.loads(raw)) if raw is not None else None

    def put(self, notice: Notice, record: Delivery) -> None:
        self._write(keys=[self.store.job_key(notice.job_id), self.store.notify_key(notice.job_id)],
                    args=["HSET", notice.field, _dumps(record)])


# KEYS[1] the job's hash, KEYS[2] its deliveries; ARGV[1] HSET or HSETNX, ARGV[2] the field, ARGV[3] the record.
# A job retention removed gets no record: a key written then would outlive it, with no expiry to find it.
_WRITE_WHILE_THE_JOB_IS_KEPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call(ARGV[1], KEYS[2], ARGV[2], ARGV[3])
"""


def _dumps(record: Delivery) -> str:
    return json.dumps(record.to_dict(), separators=(",", ":"))
