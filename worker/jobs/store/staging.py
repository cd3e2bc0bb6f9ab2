"""Staging: the store's writes inside a sender's guarded write (worker/transactions.py), so a call's commit or
answer lands in one step with the guards that decide it (worker/run/sender.py)."""

from __future__ import annotations

from typing import Any

from worker.jobs.model import Call, JobState, Target, utc_now
from worker.jobs.store.audit import AuditTrail, target_note
from worker.jobs.store.base import to_json
from worker.jobs.store.calls import CarriedJob
from worker.jobs.store.watch import Watch
from worker.transactions import GuardedWrite


class Staging(AuditTrail, Watch):
    """Job, target and call writes staged into a guarded write."""

    def require_state(self, write: GuardedWrite, job_id: str, state: JobState) -> None:
        """The write applies only while the job is in `state`."""
        write.hash_field_is(self._job_key(job_id), "state", state.value)

    def stage_transition(self, write: GuardedWrite, job_id: str, job: CarriedJob, *, to: JobState, actor: str,
                         note: str, fields: dict[str, str]) -> None:
        """Move a carried job from the state it was seen in to `to` inside a guarded write, as `transition` does
        (fields, state index, a `state` audit entry): guarded on that state and on its approval being unchanged,
        so a job approved since it was seen is not moved."""
        key = self._job_key(job_id)
        write.hash_field_is(key, "state", job.state.value).hash_field_is(key, "approval", job.approval_raw)
        now = utc_now()
        write.write("HSET", key, "state", to.value, "updated_at", now, *(v for kv in fields.items() for v in kv))
        write.write("ZREM", self._state_prefix() + job.state.value, job_id)
        write.write("ZADD", self._state_prefix() + to.value, job.created_us, job_id)
        data = to_json({"from": job.state.value, "to": to.value, "actor": actor, "note": note})
        for stream, entry_id in ((self.audit_key, "*"), (self.job_audit_key(job_id), "$prev")):
            write.write("XADD", stream, entry_id, "job_id", job_id, "event", "state", "at", now, "data", data)

    def stage_call(self, write: GuardedWrite, call: Call) -> None:
        write.write("SET", self._call_key(call.call_id), to_json(call.to_dict()))

    def stage_waiting(self, write: GuardedWrite, job_id: str, waiting: dict[str, Any] | None) -> None:
        """The job's `waiting` field: what it waits for (or, None, that it waits for nothing now)."""
        write.write("HSET", self._job_key(job_id), "waiting", to_json(waiting) if waiting else "")
        if waiting:
            self._stage_audit(write, job_id, "waiting", waiting)

    def stage_call_listed(self, write: GuardedWrite, job_id: str, call_id: str) -> None:
        """The job's record lists the call among those that carried its targets."""
        write.write("RPUSH", f"{self._job_key(job_id)}:calls", call_id)

    def stage_targets(self, write: GuardedWrite, job_id: str, targets: dict[int, Target], *, event: str,
                      data: dict[str, Any] | None = None) -> None:
        """Write changed targets of one job, with an audit entry (and the `dead` listing when one died)."""
        key = self._job_key(job_id)
        items = list(targets.items())
        for start in range(0, len(items), 1000):  # Lua's unpack() takes a few thousand values at most
            part = items[start:start + 1000]
            write.write("HSET", f"{key}:targets", *(v for i, t in part for v in (i, to_json(t.to_dict()))))
        write.write("HSET", key, "updated_at", utc_now())
        self._stage_audit(write, job_id, event,
                          {**(data or {}), "targets": [target_note(i, t) for i, t in targets.items()]})
        if any(t.status.value == "dead" for t in targets.values()):
            score = self.redis.hget(key, "created_us") or 0
            write.write("ZADD", f"{self.prefix}jobs:dead", float(score), job_id)
        self._stage_watch(write, job_id, targets)
