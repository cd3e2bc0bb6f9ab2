"""Job records: a job's creation (alone, or within a submission's one step), its fields, targets and state
transitions, reading it whole (from its working record or its packed copy), and the listings by state and
source."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from redis.commands.core import Script

from worker.archive.store import JobLine
from worker.errors import InvalidTransition, JobNotFound
from worker.jobs.model import Approval, Job, JobState, Target, utc_now
from worker.jobs.store.audit import AuditTrail, target_note
from worker.jobs.store.base import as_text, to_json
from worker.transactions import GuardedWrite

# The listing of jobs whose targets' users acted after termination (`boxcut jobs --state active-after`).
ACTIVE_AFTER = "active-after"


# KEYS[1] job hash, KEYS[2] audit stream, KEYS[3] the job's audit stream
# ARGV[1] new state, ARGV[2] now (ISO), ARGV[3] state zset key prefix, ARGV[4] actor, ARGV[5] note,
# ARGV[6] a JSON object of further job fields to set in the same step (e.g. an approval), ARGV[7..] the states
# the job may move from
# Returns {1, old_state} when moved, {0, current_state} when the current state does not allow it, {-1} if absent.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {-1} end
local allowed = false
for i = 7, #ARGV do if ARGV[i] == current then allowed = true end end
if not allowed then return {0, current} end
local job_id = redis.call('HGET', KEYS[1], 'job_id')
local score = redis.call('HGET', KEYS[1], 'created_us')
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at', ARGV[2])
for name, value in pairs(cjson.decode(ARGV[6])) do redis.call('HSET', KEYS[1], name, value) end
redis.call('ZREM', ARGV[3] .. current, job_id)
redis.call('ZADD', ARGV[3] .. ARGV[1], score, job_id)
local data = cjson.encode({from = current, to = ARGV[1], actor = ARGV[4], note = ARGV[5]})
local id = redis.call('XADD', KEYS[2], '*', 'job_id', job_id, 'event', 'state', 'at', ARGV[2], 'data', data)
if not pcall(redis.call, 'XADD', KEYS[3], id, 'job_id', job_id, 'event', 'state', 'at', ARGV[2], 'data', data) then
  redis.call('XADD', KEYS[3], '*', 'job_id', job_id, 'event', 'state', 'at', ARGV[2], 'data', data)
end
return {1, current}
"""


_SCALAR_FIELDS = ("job_id", "state", "source", "reason", "requested_by", "created_at", "updated_at")


@dataclass(frozen=True)
class JobSummary(JobLine):
    """One line of a job listing."""

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


class JobRecords(AuditTrail):
    """Creating, reading, changing and listing job records."""

    @cached_property
    def _transition(self) -> Script:
        return self.redis.register_script(_TRANSITION)

    def create(self, job: Job) -> None:
        """Store a new job with its targets, index it and note its creation in the audit stream."""
        key, created_us = self._job_key(job.job_id), int(time.time() * 1_000_000)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=_record_fields(job, created_us))
        if job.targets:
            pipe.hset(f"{key}:targets", mapping={str(i): to_json(t.to_dict()) for i, t in enumerate(job.targets)})
        pipe.zadd(f"{self.prefix}jobs", {job.job_id: created_us})
        pipe.zadd(self._state_prefix() + job.state.value, {job.job_id: created_us})
        pipe.zadd(f"{self.prefix}jobs:source:{job.source}", {job.job_id: created_us})
        self._audit(pipe, job.job_id, "created", _creation_note(job))
        pipe.execute()

    def stage_create(self, write: GuardedWrite, job: Job) -> None:
        """`create`'s writes, within `write`: a submission in one step (worker/jobs/submit.py)."""
        key, created_us = self._job_key(job.job_id), int(time.time() * 1_000_000)
        write.write("HSET", key, *(v for pair in _record_fields(job, created_us).items() for v in pair))
        targets = [(str(i), to_json(t.to_dict())) for i, t in enumerate(job.targets)]
        for start in range(0, len(targets), 1000):  # Lua's unpack() takes a few thousand values at most
            write.write("HSET", f"{key}:targets", *(v for pair in targets[start:start + 1000] for v in pair))
        for index in (f"{self.prefix}jobs", self._state_prefix() + job.state.value,
                      f"{self.prefix}jobs:source:{job.source}"):
            write.write("ZADD", index, created_us, job.job_id)
        self._stage_audit(write, job.job_id, "created", _creation_note(job))

    def apply_submission(self, write: GuardedWrite, job: Job) -> None:
        """Apply a submission in one step: `write` (its claim, `stage_create`'s writes and its task's message),
        with the mark `mark_enqueued` (or `mark_kept`, for a job recorded only) would write, and wait for the
        replicas as they do. GuardFailed when the claim was taken: nothing was written."""
        field = "kept_at" if job.state.is_final else "enqueued_at"
        write.write("HSET", self._job_key(job.job_id), field, utc_now())
        if self.replicas <= 0:
            write.apply(self.redis)
            return
        pipe = self.redis.pipeline(transaction=False)
        write.stage(self.redis, pipe)
        write.outcome(self._replicated(pipe, f"job {job.job_id}")[0])

    @staticmethod
    def approval_fields(approval: Approval | None) -> dict[str, str]:
        """The job fields that record `approval`, for a transition to set in the same step."""
        return {"approval": to_json(approval.to_dict()) if approval else ""}

    def set_fields(self, job_id: str, fields: dict[str, str], *, event: str) -> None:
        """Set job fields that are not its state (e.g. the blast radius), noting them in the audit stream; only
        while the job is working (JobNotFound for a settled or removed one: a write then would leave a partial
        record behind)."""
        write = self._while_working(job_id)
        write.write("HSET", self._job_key(job_id), *(v for kv in {**fields, "updated_at": utc_now()}.items()
                                                     for v in kv))
        self._stage_audit(write, job_id, event, dict(fields))
        self._apply_while_working(write, job_id)

    def mark_enqueued(self, job_id: str) -> None:
        """Note that the job's task reached the broker (a job without the mark may have been stranded). This is a
        submission's last write, after its record and its task: the replicas' holding it holds them too."""
        self._mark_submitted(job_id, "enqueued_at")

    def mark_kept(self, job_id: str) -> None:
        """The last write of a submission that is never enqueued (a job recorded only), waiting for the replicas
        as `mark_enqueued` does: a job answered 202 is on them too."""
        self._mark_submitted(job_id, "kept_at")

    def _mark_submitted(self, job_id: str, field: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self._job_key(job_id), field, utc_now())
        self._replicated(pipe, f"job {job_id}")

    def stranded(self, job_id: str) -> bool:
        """Whether the job is still `queued` and its task was never recorded as reaching the broker."""
        state, enqueued = self.redis.hmget(self._job_key(job_id), ["state", "enqueued_at"])
        return state is not None and as_text(state) == JobState.QUEUED.value and enqueued is None

    def forget_dead(self, job_id: str) -> None:
        """Take the job off the `dead` listing (its dead targets are being sent again)."""
        self.redis.zrem(f"{self.prefix}jobs:dead", job_id)

    def exists(self, job_id: str) -> bool:
        """Whether the job is known: working, settled in Redis, or in the archive."""
        if self.redis.exists(self._job_key(job_id), self._settled_key(job_id)):
            return True
        return self.is_job_id(job_id) and self.archived(job_id)

    def load(self, job_id: str) -> Job:
        """The whole job record: fields, targets in input order, and every call its targets point to."""
        if not self.is_job_id(job_id):
            raise JobNotFound(job_id)
        key = self._job_key(job_id)
        # Not MULTI: Redis refuses MULTI when it is full (noeviction), and the record must stay readable then.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(key)
        pipe.hgetall(f"{key}:targets")
        pipe.lrange(f"{key}:calls", 0, -1)
        pipe.hvals(f"{key}:activity")
        pipe.hvals(f"{key}:notify")
        fields, raw_targets, call_ids, activity, notifications = pipe.execute()
        if b"job_id" not in fields and "job_id" not in fields:  # none, or fields a late write left: no record
            return self._load_settled(job_id)
        fields = {as_text(k): as_text(v) for k, v in fields.items()}
        targets = [Target.from_dict(json.loads(raw_targets[k])) for k in sorted(raw_targets, key=int)]
        return Job(
            job_id=fields["job_id"],
            state=JobState(fields["state"]),
            source=fields["source"],
            reason=fields["reason"],
            requested_by=fields["requested_by"],
            dry_run=fields["dry_run"] == "1",
            created_at=fields["created_at"],
            updated_at=fields["updated_at"],
            source_event_id=fields["source_event_id"] or None,
            severity=fields.get("severity") or None,
            link=fields.get("link") or None,
            expand_groups=fields.get("expand_groups") == "1",
            approval=Approval.from_dict(json.loads(fields["approval"])) if fields.get("approval") else None,
            blast_radius=int(fields["blast_radius"]) if fields.get("blast_radius") else None,
            note=fields.get("note") or None,
            waiting=json.loads(fields["waiting"]) if fields.get("waiting") else None,
            watch_until=fields.get("watch_until") or None,
            brake=json.loads(fields["brake"]) if fields.get("brake") else None,
            targets=targets,
            calls=self.load_calls([as_text(c) for c in call_ids]),
            activity_after=_activity_by_target(activity),
            notifications=_notifications(notifications),
        )

    def state(self, job_id: str) -> JobState:
        value = self.redis.hget(self._job_key(job_id), "state")
        if value is None:
            return self._load_settled(job_id).state
        return JobState(as_text(value))

    def created_us(self, job_id: str) -> int:
        """When the working job was created (epoch µs): its place in every index."""
        return int(self.redis.hget(self._job_key(job_id), "created_us") or 0)

    def transition(
        self, job_id: str, *, to: JobState, allowed_from: Iterable[JobState], actor: str = "boxcut", note: str = "",
        fields: dict[str, str] | None = None,
    ) -> JobState:
        """Move the job to `to` if its state is one of `allowed_from`, setting `fields` in the same step;
        return the state it left."""
        allowed = [s.value for s in allowed_from]
        result = self._transition(
            keys=[self._job_key(job_id), self.audit_key, self.job_audit_key(job_id)],
            args=[to.value, utc_now(), self._state_prefix(), actor, note, to_json(fields or {}), *allowed],
        )
        if result[0] == -1:
            raise JobNotFound(job_id)
        if result[0] == 0:
            current = as_text(result[1])
            raise InvalidTransition(f"job {job_id} is {current}; it cannot become {to.value}")
        return JobState(as_text(result[1]))

    def save_targets(self, job_id: str, targets: dict[int, Target], *, event: str = "targets") -> None:
        """Write changed targets, noting each new status in the audit stream; only while the job is working
        (JobNotFound otherwise)."""
        if not targets:
            return
        key = self._job_key(job_id)
        write = self._while_working(job_id)
        items = [(str(i), to_json(t.to_dict())) for i, t in targets.items()]
        for start in range(0, len(items), 1000):  # Lua's unpack() takes a few thousand values at most
            write.write("HSET", f"{key}:targets", *(v for pair in items[start:start + 1000] for v in pair))
        write.write("HSET", key, "updated_at", utc_now())
        self._stage_audit(write, job_id, event, {"targets": [target_note(i, t) for i, t in targets.items()]})
        if any(t.status.value == "dead" for t in targets.values()):
            write.write("ZADD", f"{self.prefix}jobs:dead", float(self.redis.hget(key, "created_us") or 0), job_id)
        self._apply_while_working(write, job_id)

    def list_jobs(
        self, *, state: str | None = None, source: str | None = None, limit: int = 50, cursor: int = 0
    ) -> tuple[list[JobSummary], int | None]:
        """Jobs newest first, optionally in one state (`dead`: jobs holding dead targets) and from one source;
        and the cursor of the next page (None on the last)."""
        ids, total = self._page_of_ids(state, source, cursor, limit)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self._job_key(job_id), ["job_id", "state", "source", "created_at", "updated_at", "reason"])
        rows = [[as_text(v) for v in row] for row in pipe.execute() if row[0] is not None]
        return [JobSummary(*row) for row in rows], (cursor + limit if total > cursor + limit else None)

    def _page_of_ids(self, state: str | None, source: str | None, cursor: int, limit: int) -> tuple[list[str], int]:
        indexes = [self._index_key(state)] if state or not source else []
        if source:
            indexes.append(f"{self.prefix}jobs:source:{source}")
        if len(indexes) == 1:
            ids = self.redis.zrevrange(indexes[0], cursor, cursor + limit - 1)
            return [as_text(i) for i in ids], int(self.redis.zcard(indexes[0]))
        scored: list[Any] = list(self.redis.zinter(indexes, withscores=True))
        both = sorted(scored, key=lambda pair: pair[1], reverse=True)
        return [as_text(pair[0]) for pair in both[cursor:cursor + limit]], len(both)

    def _index_key(self, state: str | None) -> str:
        if state is None:
            return f"{self.prefix}jobs"
        if state == "dead":
            return f"{self.prefix}jobs:dead"
        if state == ACTIVE_AFTER:
            return self._active_after_key
        return self._state_prefix() + JobState(state).value


def _activity_by_target(rows: Iterable[Any]) -> dict[int, list[dict[str, Any]]]:
    """A job's recorded activity, by target index, oldest event first."""
    by_target: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        entry = json.loads(row)
        by_target.setdefault(int(entry.pop("target")), []).append(entry)
    for entries in by_target.values():
        entries.sort(key=lambda e: (str(e.get("created_at") or ""), str(e.get("event_id") or "")))
    return by_target


def _notifications(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """A job's notification deliveries, the first queued first."""
    return sorted((json.loads(row) for row in rows),
                  key=lambda n: (str(n.get("first_at") or ""), str(n.get("audit_id") or ""), n.get("url_index", 0)))


def _record_fields(job: Job, created_us: int) -> dict[Any, Any]:
    """The job hash of a new job."""
    fields: dict[Any, Any] = {name: getattr(job, name) for name in _SCALAR_FIELDS}
    fields.update(
        dry_run=int(job.dry_run), source_event_id=job.source_event_id or "", severity=job.severity or "",
        link=job.link or "", created_us=created_us, call_seq=0, expand_groups=int(job.expand_groups),
        approval=to_json(job.approval.to_dict()) if job.approval else "", blast_radius="", note=job.note or "",
    )
    return fields


def _creation_note(job: Job) -> dict[str, Any]:
    """The audit entry's data for a job's creation."""
    return {"source": job.source, "targets": len(job.targets), "dry_run": job.dry_run,
            "requested_by": job.requested_by}
