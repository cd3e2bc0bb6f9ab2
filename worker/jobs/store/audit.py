"""The audit stream: an entry per job state change, target outcome and Box call, appended in the same step as the
write it tells of, to the main stream and to the job's own (so a job's trail reads whole however long the main
stream is); and reading them back, from either form of a job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from redis.commands.core import Script

from worker.jobs.model import Target, utc_now
from worker.jobs.store.base import as_text, to_json
from worker.jobs.store.settled import SettledJobs
from worker.transactions import GuardedWrite

# KEYS[1] the audit stream, KEYS[2] the job's own, KEYS[3] the job's hash; ARGV the entry's fields. Appends the
# entry to the main stream, and to the job's own under the same id while the job is working (a settled job's trail
# is its packed copy and the archive's: a stream made now would outlive it). Returns the entry's id.
_AUDIT = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
if redis.call('EXISTS', KEYS[3]) == 1 then
  if not pcall(redis.call, 'XADD', KEYS[2], id, unpack(ARGV)) then redis.call('XADD', KEYS[2], '*', unpack(ARGV)) end
end
return id
"""


class AuditTrail(SettledJobs):
    """Appending audit entries, and reading a job's trail or the main stream. It stands on the settled part: a
    settled job's trail is read from its packed copy."""

    @cached_property
    def _audit_entry(self) -> Script:
        return self.redis.register_script(_AUDIT)

    def _audit(self, pipe: Any, job_id: str, event: str, data: dict[str, Any]) -> None:
        entry = ("job_id", job_id, "event", event, "at", utc_now(), "data", to_json(data))
        self._audit_entry(keys=[self.audit_key, self.job_audit_key(job_id), self._job_key(job_id)], args=entry,
                          client=pipe)

    def note(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        """Append an audit entry about the job that changes nothing in its record (e.g. a notification sent)."""
        pipe = self.redis.pipeline(transaction=True)
        self._audit(pipe, job_id, event, data)
        pipe.execute()

    def _stage_audit(self, write: GuardedWrite, job_id: str, event: str, data: dict[str, Any]) -> None:
        entry = ("job_id", job_id, "event", event, "at", utc_now(), "data", to_json(data))
        write.write("XADD", self.audit_key, "*", *entry)
        write.write("XADD", self.job_audit_key(job_id), "$prev", *entry)  # the same id in the job's own stream

    def audit_entries(self, *, job_id: str | None = None, count: int = 1000) -> list[dict[str, Any]]:
        """Audit entries oldest first: one job's whole trail, or the newest `count` entries of all jobs."""
        if job_id is not None:
            settled = None if self.live(job_id) else self.settled(job_id)
            if settled is not None:
                return settled.audit_entries()
            if self.redis.exists(self.job_audit_key(job_id)) or not self.live(job_id):
                return list(self.audit_since(stream=self.job_audit_key(job_id)))
            # A job recorded before jobs kept their own stream: its entries are in the main one only.
            return [r for r in self.audit_entries(count=max(count, 100_000)) if r["job_id"] == job_id]
        return [_audit_row(entry_id, fields) for entry_id, fields in reversed(
            self.redis.xrevrange(self.audit_key, count=count) or []) if fields]

    def audit_since(self, *, since_ms: int = 0, stream: str | None = None, page: int = 1000
                    ) -> Iterator[dict[str, Any]]:
        """Audit entries from `since_ms` (epoch ms) on, oldest first, read a page at a time: the main stream,
        or `stream` (a job's)."""
        key, start = stream or self.audit_key, f"{since_ms}-0"
        while True:
            entries = self.redis.xrange(key, min=start, max="+", count=page) or []
            for entry_id, fields in entries:
                if fields:
                    yield _audit_row(entry_id, fields)
            if len(entries) < page:
                return
            start = "(" + as_text(entries[-1][0])


def _audit_row(entry_id: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    row = {as_text(k): as_text(v) for k, v in fields.items()}
    return {"id": as_text(entry_id), **row, "data": json.loads(row["data"])}


def target_note(index: int, target: Target) -> dict[str, Any]:
    return {"index": index, "status": target.status.value, "user_id": target.user_id,
            "group_id": target.group_id, "detail": target.detail}
