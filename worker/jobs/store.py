"""The job store: job records, Box call records and the audit stream, in Redis.

Keys (all under the settings' key prefix `P`):

    P job:{id}            hash   the job's scalar fields (state, source, reason, ...) and `call_seq`
    P job:{id}:targets    hash   target index -> Target JSON
    P job:{id}:lease      string who is running the job now (see `lease`)
    P job:{id}:calls      list   ids of the calls that carried its targets, in the order they were planned
    P call:{call_id}      string Call JSON: a record of its own, carrying targets of any number of jobs
    P jobs                zset   every job id, scored by creation time (µs)
    P jobs:state:{state}  zset   job ids by state, same score
    P jobs:source:{source} zset  job ids by source, same score
    P jobs:dead           zset   jobs holding a target whose retries ran out
    P jobs:running        zset   jobs a run holds, scored by its lease's deadline (ms): one past it died
    P jobs:active_after   zset   jobs whose targets' users acted in Box after Box accepted their termination
    P watch               zset   `{job id}:{index}:{user id}` of users Box accepted, scored by when (ms)
    P job:{id}:activity   hash   `{index}:{event id}` -> one event by that target's user after termination
    P job:{id}:notify     hash   `{audit entry id}#{url index}` -> one notification's delivery (worker/notify)
    P audit               stream append-only: an entry per job state change, target outcome and Box call
    P job:{id}:audit      stream the same entries for that job alone, so its trail reads whole however long the
                                 main stream is (and outlives the main stream's trimming while the job is kept)
    P settled:{id}        string a settled job's packed copy (worker/jobs/document.py): its record, the calls no
                                 other job shares and its audit trail, in one key, for the hot window
    P jobs:settled        zset   settled job ids by creation time (µs): the packed copies, oldest first
    P jobs:settle_wait    zset   finished jobs not quiet yet, scored by when (epoch s) to look at them again

A finished job settles once nothing will change it any more (worker/jobs/archiving.py): its archive row is
committed, then one step replaces its working keys (record, targets, calls list, activity, notifications, audit
stream, index entries) by its packed copy, which leaves Redis when the hot window ends. Reads here see either
form; worker/jobs/history.py adds the archive.

Changes that read before they write (state transitions, leases) are Lua scripts; changes that only write
several keys together are MULTI/EXEC pipelines. Every write that changes what a job says also appends to the
audit stream in the same transaction.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from config import Settings, defaults
from worker.errors import InvalidTransition, JobNotFound, LeaseHeld
from worker.jobs.document import Settled, call_from_document, job_document, job_from_document, pack, unpack
from worker.jobs.model import Approval, Call, Job, JobState, Target, utc_now
from worker.locks import RedisLock
from worker.transactions import GuardedWrite, GuardFailed

log = logging.getLogger(__name__)

# How long a write waits for its replicas (JobStore.replicas) before it stands on the primary alone. A replica on
# the same network acknowledges in about a millisecond; this bounds the wait while one is down or far behind.
REPLICA_WAIT_MS = 1000
REPLICA_RETRY_SECONDS = 10

# The listing of jobs whose targets' users acted after termination (`boxcut jobs --state active-after`).
ACTIVE_AFTER = "active-after"

# KEYS[1] job hash, KEYS[2] its activity hash, KEYS[3] the active-after index, KEYS[4] audit stream, KEYS[5] the
# job's audit stream; ARGV[1] the activity field, ARGV[2] its JSON (the audit entry's data too), ARGV[3] the
# audit entry's time. Records one event once (an event Box repeats, or a page read again, changes nothing), and
# nothing for a job that is gone. Returns 1 when recorded now.
_NOTE_ACTIVITY = """
local score = redis.call('HGET', KEYS[1], 'created_us')
if not score then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
local job_id = redis.call('HGET', KEYS[1], 'job_id')
redis.call('ZADD', KEYS[3], score, job_id)
local entry = {'job_id', job_id, 'event', 'activity_after', 'at', ARGV[3], 'data', ARGV[2]}
local id = redis.call('XADD', KEYS[4], '*', unpack(entry))
if not pcall(redis.call, 'XADD', KEYS[5], id, unpack(entry)) then redis.call('XADD', KEYS[5], '*', unpack(entry)) end
return 1
"""

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

# KEYS[1] job hash, KEYS[2] its lease, KEYS[3] its audit stream, KEYS[4] its packed copy, KEYS[5] jobs:settled,
# KEYS[6] the watch, KEYS[7..] every other key and index entry it leaves (ARGV[6] of them keys to delete, the rest
# zsets to take the job out of); ARGV[1] the `updated_at` it was read with, ARGV[2] its audit stream's last id
# then, ARGV[3] its packed copy ('' to keep none: past the hot window), ARGV[4] job id, ARGV[5] creation (µs),
# ARGV[6] how many of KEYS[7..] are deleted, ARGV[7..] its watch entries.
# Settles the job only if nothing changed it since it was read and no run holds it; returns 1 when settled.
_SETTLE = """
if redis.call('HGET', KEYS[1], 'updated_at') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local last_id = ''
if #last > 0 then last_id = last[1][1] end
if last_id ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[4], ARGV[3])
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4])
end
redis.call('DEL', KEYS[1], KEYS[3])
local deleted = tonumber(ARGV[6])
for i = 7, 6 + deleted do redis.call('DEL', KEYS[i]) end
for i = 7 + deleted, #KEYS do redis.call('ZREM', KEYS[i], ARGV[4]) end
for i = 7, #ARGV do redis.call('ZREM', KEYS[6], ARGV[i]) end
return 1
"""

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

_JOB_ID = re.compile(r"j-[0-9a-f]{16}")

_SCALAR_FIELDS = ("job_id", "state", "source", "reason", "requested_by", "created_at", "updated_at")


@dataclass(frozen=True)
class JobSummary:
    """One line of a job listing."""

    job_id: str
    state: str
    source: str
    created_at: str
    updated_at: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


class JobStore:
    """Reads and writes job records, call records and the audit stream."""

    def __init__(self, redis_client: redis.Redis, *, key_prefix: str, replicas: int = 0,
                 watch_seconds: float = 0.0, replica_wait_ms: int = REPLICA_WAIT_MS) -> None:
        """`watch_seconds`: how long after Box accepted a user's termination the event-stream reader records what
        that user did (0: no watch; BOXCUT_WATCH_MINUTES).

        `replicas`: how many Redis replicas must hold a job's submission, and each count of a request to Box,
        before it counts as written (WAIT; BOXCUT_REDIS_WAIT_REPLICAS). While a replica acknowledges, a primary
        lost to a failover loses neither a job answered 202 nor the count of a request Box was sent (`_replicated`
        says what happens when none does), waiting up to `replica_wait_ms` for them."""
        self.redis = redis_client
        self.prefix = key_prefix
        self.replicas, self.replica_wait_ms = replicas, replica_wait_ms
        self._replicas_short_until = 0.0
        self.watch_seconds = watch_seconds
        self._transition = redis_client.register_script(_TRANSITION)
        self._settle = redis_client.register_script(_SETTLE)
        self._audit_entry = redis_client.register_script(_AUDIT)
        # Whether a job that is in neither of Redis's forms is in the archive (set where one is configured): a
        # claim of an alert's key naming such a job is a repeat, not an orphan (worker/jobs/submit.py).
        self.archived: Callable[[str], bool] = lambda _job_id: False
        self._note_activity = redis_client.register_script(_NOTE_ACTIVITY)

    @classmethod
    def from_settings(cls, redis_client: redis.Redis, settings: Settings) -> JobStore:
        """The store as settings configure it (BOXCUT_KEY_PREFIX, BOXCUT_REDIS_WAIT_REPLICAS, the watch after
        termination): every process builds it so."""
        return cls(redis_client, key_prefix=settings.key_prefix, replicas=settings.redis_wait_replicas,
                   watch_seconds=settings.watch_seconds)

    # -- keys ------------------------------------------------------------------------------------------------

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _call_key(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    def job_key(self, job_id: str) -> str:
        return self._job_key(job_id)

    def _settled_key(self, job_id: str) -> str:
        return f"{self.prefix}settled:{job_id}"

    @property
    def _settled_index(self) -> str:
        return f"{self.prefix}jobs:settled"

    @property
    def audit_key(self) -> str:
        return f"{self.prefix}audit"

    def job_audit_key(self, job_id: str) -> str:
        return f"{self._job_key(job_id)}:audit"

    def notify_key(self, job_id: str) -> str:
        """The job's notification deliveries (worker/notify/records.py writes them)."""
        return f"{self._job_key(job_id)}:notify"

    def _state_prefix(self) -> str:
        return f"{self.prefix}jobs:state:"

    # -- jobs ------------------------------------------------------------------------------------------------

    @staticmethod
    def new_job_id() -> str:
        """A short random job id, safe to paste into a shell."""
        return "j-" + secrets.token_hex(8)

    @staticmethod
    def is_job_id(text: str) -> bool:
        """Whether `text` has a job id's shape (anything else, `j-…:targets` say, names no job)."""
        return _JOB_ID.fullmatch(text) is not None

    def create(self, job: Job) -> None:
        """Store a new job with its targets, index it and note its creation in the audit stream."""
        key, created_us = self._job_key(job.job_id), int(time.time() * 1_000_000)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=_record_fields(job, created_us))
        if job.targets:
            pipe.hset(f"{key}:targets", mapping={str(i): _dumps(t.to_dict()) for i, t in enumerate(job.targets)})
        pipe.zadd(f"{self.prefix}jobs", {job.job_id: created_us})
        pipe.zadd(self._state_prefix() + job.state.value, {job.job_id: created_us})
        pipe.zadd(f"{self.prefix}jobs:source:{job.source}", {job.job_id: created_us})
        self._audit(pipe, job.job_id, "created", _creation_note(job))
        pipe.execute()

    def stage_create(self, write: GuardedWrite, job: Job) -> None:
        """`create`'s writes, within `write`: a submission in one step (worker/jobs/submit.py)."""
        key, created_us = self._job_key(job.job_id), int(time.time() * 1_000_000)
        write.write("HSET", key, *(v for pair in _record_fields(job, created_us).items() for v in pair))
        targets = [(str(i), _dumps(t.to_dict())) for i, t in enumerate(job.targets)]
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
        return {"approval": _dumps(approval.to_dict()) if approval else ""}

    def set_fields(self, job_id: str, fields: dict[str, str], *, event: str) -> None:
        """Set job fields that are not its state (e.g. the blast radius), noting them in the audit stream; only
        while the job is working (JobNotFound for a settled or removed one: a write then would leave a partial
        record behind)."""
        write = self._while_working(job_id)
        write.write("HSET", self._job_key(job_id), *(v for kv in {**fields, "updated_at": utc_now()}.items()
                                                     for v in kv))
        self._stage_audit(write, job_id, event, dict(fields))
        self._apply_while_working(write, job_id)

    def _while_working(self, job_id: str) -> GuardedWrite:
        """A guarded write that applies only while the job's working record is there."""
        return GuardedWrite().hash_field_is(self._job_key(job_id), "job_id", job_id)

    def _apply_while_working(self, write: GuardedWrite, job_id: str) -> None:
        try:
            write.apply(self.redis)
        except GuardFailed:
            raise JobNotFound(job_id) from None

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
        return state is not None and _text(state) == JobState.QUEUED.value and enqueued is None

    def forget_dead(self, job_id: str) -> None:
        """Take the job off the `dead` listing (its dead targets are being sent again)."""
        self.redis.zrem(f"{self.prefix}jobs:dead", job_id)

    def exists(self, job_id: str) -> bool:
        """Whether the job is known: working, settled in Redis, or in the archive."""
        if self.redis.exists(self._job_key(job_id), self._settled_key(job_id)):
            return True
        return self.is_job_id(job_id) and self.archived(job_id)

    def live(self, job_id: str) -> bool:
        """Whether the job is in its working form (not settled)."""
        return bool(self.redis.exists(self._job_key(job_id)))

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
        fields = {_text(k): _text(v) for k, v in fields.items()}
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
            calls=self.load_calls([_text(c) for c in call_ids]),
            activity_after=_activity_by_target(activity),
            notifications=_notifications(notifications),
        )

    def state(self, job_id: str) -> JobState:
        value = self.redis.hget(self._job_key(job_id), "state")
        if value is None:
            return self._load_settled(job_id).state
        return JobState(_text(value))

    # -- settled jobs ------------------------------------------------------------------------------------------

    def settled(self, job_id: str) -> Settled | None:
        """The job's packed copy, while it is settled and hot."""
        raw = self.redis.get(self._settled_key(job_id)) if self.is_job_id(job_id) else None
        return unpack(cast(bytes, raw)) if raw is not None else None  # the client never decodes

    def _load_settled(self, job_id: str) -> Job:
        settled = self.settled(job_id)
        if settled is None:
            raise JobNotFound(job_id)
        return self.job_of(settled)

    def job_of(self, settled: Settled) -> Job:
        """The job a packed copy holds, with its shared calls read from their records."""
        folded = [call_from_document(c)[0] for c in settled.calls]
        shared = [c for c in settled.document["call_ids"] if c not in {f.call_id for f in folded}]
        return job_from_document(settled.document, folded + self.load_calls(shared))

    def requests_sent(self, job: Job) -> dict[str, int]:
        """The requests sent for each of the job's calls (`note_attempt`'s counts, or its packed copy's)."""
        settled = self.settled(job.job_id) if not self.live(job.job_id) else None
        packed = {c["call_id"]: int(c.get("requests_sent", 0)) for c in (settled.calls if settled else [])}
        return {c.call_id: packed[c.call_id] if c.call_id in packed else self.attempts_sent(c.call_id)
                for c in job.calls}

    def created_us(self, job_id: str) -> int:
        """When the working job was created (epoch µs): its place in every index."""
        return int(self.redis.hget(self._job_key(job_id), "created_us") or 0)

    @property
    def _settle_wait_key(self) -> str:
        return f"{self.prefix}jobs:settle_wait"

    def defer_settle(self, job_id: str, *, until: float) -> None:
        """Look at the finished job again for settling no sooner than `until` (epoch s)."""
        self.redis.zadd(self._settle_wait_key, {job_id: until})

    def undefer_settle(self, job_id: str) -> None:
        """Forget when to look at the job again (it is moving again: a retry)."""
        self.redis.zrem(self._settle_wait_key, job_id)

    def settle_candidates(self, states: Iterable[JobState], *, now: float, limit: int,
                          scan_most: int = 20_000) -> list[str]:
        """Finished jobs still in their working form that are due a look (not deferred past `now`), oldest first:
        up to `limit`, reading at most `scan_most` of each state's index."""
        due: list[str] = []
        for state in states:
            key = self._state_prefix() + state.value
            for start in range(0, scan_most, 1000):
                ids = [_text(i) for i in self.redis.zrange(key, start, start + 999)]
                pipe = self.redis.pipeline(transaction=False)
                for job_id in ids:
                    pipe.zscore(self._settle_wait_key, job_id)
                due += [j for j, wait in zip(ids, pipe.execute(), strict=True) if wait is None or wait <= now]
                if len(due) >= limit or len(ids) < 1000:
                    break
            if len(due) >= limit:
                break
        return due[:limit]

    def audit_trail_raw(self, job_id: str) -> list[tuple[str, dict[str, str]]]:
        """The job's own audit stream as stored: entry ids and their fields as text (the archive keeps the
        data's JSON text as written)."""
        return [(_text(i), {_text(k): _text(v) for k, v in f.items()})
                for i, f in self.redis.xrange(self.job_audit_key(job_id)) or [] if f]

    def settle(self, job: Job, *, created_us: int, trail: list[tuple[str, dict[str, str]]],
               folded_calls: list[dict[str, Any]], keep_hot: bool) -> bool:
        """Replace a finished job's working keys by its packed copy (`keep_hot`), or by nothing (past the hot
        window), in one step; only if its record and audit stream are as they were read (`job.updated_at`, and
        `trail`, the stream as `audit_trail_raw` read it: the copy holds that very trail) and no run holds it.
        Calls only it carried (`folded_calls`, as documents) go into the copy and their records leave; shared calls
        stay until no job they carried is left (`evict`). Returns whether it settled."""
        key = self._job_key(job.job_id)
        settled = Settled(document=job_document(job, created_us=created_us), calls=folded_calls,
                          audit=[[entry_id, f["event"], f["at"], json.loads(f["data"])] for entry_id, f in trail])
        last_audit_id = trail[-1][0] if trail else ""
        folded = [c["call_id"] for c in folded_calls]
        deleted = [f"{key}:targets", f"{key}:calls", f"{key}:activity", f"{key}:notify",
                   *(k for c in folded for k in (self._call_key(c), self._attempts_key(c)))]
        zsets = [f"{self.prefix}jobs", self._state_prefix() + job.state.value, f"{self.prefix}jobs:source:{job.source}",
                 f"{self.prefix}jobs:dead", self._active_after_key, self._settle_wait_key, self._running_key]
        watched = [f"{job.job_id}:{i}:{t.user_id}" for i, t in enumerate(job.targets) if t.user_id]
        keys = [key, f"{key}:lease", self.job_audit_key(job.job_id), self._settled_key(job.job_id),
                self._settled_index, self._watch_key, *deleted, *zsets]
        args = [job.updated_at, last_audit_id, pack(settled) if keep_hot else "", job.job_id, created_us,
                len(deleted), *watched]
        return bool(self._settle(keys=keys, args=args))

    def settled_before(self, created_before_us: int, *, limit: int) -> list[str]:
        """Settled jobs created before `created_before_us`, oldest first."""
        return [_text(i) for i in self.redis.zrangebyscore(self._settled_index, "-inf", f"({created_before_us}",
                                                           start=0, num=limit)]

    def evict(self, job_id: str) -> int:
        """Let a settled job's packed copy go (its archive row holds it), and each shared call it named once no
        job the call carried is left in Redis; returns the calls deleted."""
        settled = self.settled(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self._settled_key(job_id))
        pipe.zrem(self._settled_index, job_id)
        pipe.execute()
        if settled is None:
            return 0
        folded = {c["call_id"] for c in settled.calls}
        return self.drop_orphan_calls([c for c in settled.document["call_ids"] if c not in folded], leaving=job_id)

    def drop_orphan_calls(self, call_ids: list[str], *, leaving: str) -> int:
        """Delete the records of these calls that no job but `leaving` (which is going) still has in Redis;
        returns how many."""
        orphans = [c.call_id for c in self.load_calls(call_ids)
                   if not self._any_exists(j for j in c.carried() if j != leaving)]
        if orphans:
            self.redis.delete(*(k for c in orphans for k in (self._call_key(c), self._attempts_key(c))))
        return len(orphans)

    def which_exist(self, job_ids: list[str], *, settled: bool) -> set[str]:
        """Which of the jobs have a packed copy (`settled`) or a working record (not `settled`)."""
        key = self._settled_key if settled else self._job_key
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(key(job_id))
        return {j for j, there in zip(job_ids, pipe.execute(), strict=True) if there}

    def settled_count(self) -> int:
        return int(self.redis.zcard(self._settled_index))

    def transition(
        self, job_id: str, *, to: JobState, allowed_from: Iterable[JobState], actor: str = "boxcut", note: str = "",
        fields: dict[str, str] | None = None,
    ) -> JobState:
        """Move the job to `to` if its state is one of `allowed_from`, setting `fields` in the same step;
        return the state it left."""
        allowed = [s.value for s in allowed_from]
        result = self._transition(
            keys=[self._job_key(job_id), self.audit_key, self.job_audit_key(job_id)],
            args=[to.value, utc_now(), self._state_prefix(), actor, note, _dumps(fields or {}), *allowed],
        )
        if result[0] == -1:
            raise JobNotFound(job_id)
        if result[0] == 0:
            current = _text(result[1])
            raise InvalidTransition(f"job {job_id} is {current}; it cannot become {to.value}")
        return JobState(_text(result[1]))

    def list_jobs(
        self, *, state: str | None = None, source: str | None = None, limit: int = 50, cursor: int = 0
    ) -> tuple[list[JobSummary], int | None]:
        """Jobs newest first, optionally in one state (`dead`: jobs holding dead targets) and from one source;
        and the cursor of the next page (None on the last)."""
        ids, total = self._page_of_ids(state, source, cursor, limit)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self._job_key(job_id), ["job_id", "state", "source", "created_at", "updated_at", "reason"])
        rows = [[_text(v) for v in row] for row in pipe.execute() if row[0] is not None]
        return [JobSummary(*row) for row in rows], (cursor + limit if total > cursor + limit else None)

    def _page_of_ids(self, state: str | None, source: str | None, cursor: int, limit: int) -> tuple[list[str], int]:
        indexes = [self._index_key(state)] if state or not source else []
        if source:
            indexes.append(f"{self.prefix}jobs:source:{source}")
        if len(indexes) == 1:
            ids = self.redis.zrevrange(indexes[0], cursor, cursor + limit - 1)
            return [_text(i) for i in ids], int(self.redis.zcard(indexes[0]))
        scored: list[Any] = list(self.redis.zinter(indexes, withscores=True))
        both = sorted(scored, key=lambda pair: pair[1], reverse=True)
        return [_text(pair[0]) for pair in both[cursor:cursor + limit]], len(both)

    def _index_key(self, state: str | None) -> str:
        if state is None:
            return f"{self.prefix}jobs"
        if state == "dead":
            return f"{self.prefix}jobs:dead"
        if state == ACTIVE_AFTER:
            return self._active_after_key
        return self._state_prefix() + JobState(state).value

    # -- targets and calls -----------------------------------------------------------------------------------

    def save_targets(self, job_id: str, targets: dict[int, Target], *, event: str = "targets") -> None:
        """Write changed targets, noting each new status in the audit stream; only while the job is working
        (JobNotFound otherwise)."""
        if not targets:
            return
        key = self._job_key(job_id)
        write = self._while_working(job_id)
        items = [(str(i), _dumps(t.to_dict())) for i, t in targets.items()]
        for start in range(0, len(items), 1000):  # Lua's unpack() takes a few thousand values at most
            write.write("HSET", f"{key}:targets", *(v for pair in items[start:start + 1000] for v in pair))
        write.write("HSET", key, "updated_at", utc_now())
        self._stage_audit(write, job_id, event, {"targets": [_target_note(i, t) for i, t in targets.items()]})
        if any(t.status.value == "dead" for t in targets.values()):
            write.write("ZADD", f"{self.prefix}jobs:dead", float(self.redis.hget(key, "created_us") or 0), job_id)
        self._apply_while_working(write, job_id)

    def note_attempt(self, call_id: str) -> int:
        """Count one more request for the call, before it is sent (a write Redis refuses stops the send): the
        record then counts every request Box may have seen, even one whose answer a crash lost. Returns the
        count."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(self._attempts_key(call_id))
        return int(self._replicated(pipe, f"call {call_id}'s request count")[0])

    def _replicated(self, pipe: redis.client.Pipeline, what: str) -> list[Any]:
        """Run `pipe`, then wait (up to `replica_wait_ms`) until `replicas` replicas hold what it and every write
        before it on this primary wrote (WAIT counts from the connection's last write, so it goes in the same
        pipeline, on the same connection). Too few in time: the write stands on the primary, as it would with
        no replica at all, and a warning says so; refusing would stop boxcut whenever a replica is down."""
        waits = self.replicas > 0 and time.monotonic() >= self._replicas_short_until
        if waits:
            pipe.wait(self.replicas, self.replica_wait_ms)
        results = pipe.execute()
        if waits:
            held = int(results.pop())
            if held < self.replicas:
                # Replicas down or far behind: stop waiting on them for a while, or every write would take a second.
                self._replicas_short_until = time.monotonic() + REPLICA_RETRY_SECONDS
                log.warning("%s is on the Redis primary and %d of %d replicas after %d ms: a failover now could "
                            "lose it; writes for the next %d s do not wait for replicas", what, held, self.replicas,
                            self.replica_wait_ms, REPLICA_RETRY_SECONDS)
        return list(results)

    def attempts_sent(self, call_id: str) -> int:
        """The requests sent for the call so far, by any sender (`note_attempt`)."""
        return int(self.redis.get(self._attempts_key(call_id)) or 0)

    def _attempts_key(self, call_id: str) -> str:
        return f"{self._call_key(call_id)}:sent"

    def load_call(self, call_id: str) -> Call | None:
        raw = self.redis.get(self._call_key(call_id))
        return Call.from_dict(json.loads(raw)) if raw is not None else None

    def load_carried(self, carried: dict[str, list[int]]) -> dict[str, CarriedJob]:
        """What a sender must know of each job a call carries: its state, approval, and those targets."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id, indexes in carried.items():
            pipe.hmget(self._job_key(job_id), ["state", "approval", "source", "requested_by", "created_us"])
            pipe.hmget(f"{self._job_key(job_id)}:targets", [str(i) for i in indexes])
        replies = pipe.execute()
        jobs: dict[str, CarriedJob] = {}
        for n, (job_id, indexes) in enumerate(carried.items()):
            (state, approval, source, requested_by, created_us), raw_targets = replies[2 * n], replies[2 * n + 1]
            if state is None:
                continue
            targets = {i: Target.from_dict(json.loads(raw)) for i, raw in zip(indexes, raw_targets, strict=True)
                       if raw is not None}
            jobs[job_id] = CarriedJob(
                state=JobState(_text(state)), targets=targets,
                approval=Approval.from_dict(json.loads(approval)) if approval else None,
                source=_text(source or ""), requested_by=_text(requested_by or ""),
                approval_raw=_text(approval or ""), created_us=int(created_us or 0),
            )
        return jobs

    # -- staging: the store's writes inside a sender's guarded write (worker.transactions) ------------------

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
        data = _dumps({"from": job.state.value, "to": to.value, "actor": actor, "note": note})
        for stream, entry_id in ((self.audit_key, "*"), (self.job_audit_key(job_id), "$prev")):
            write.write("XADD", stream, entry_id, "job_id", job_id, "event", "state", "at", now, "data", data)

    def stage_call(self, write: GuardedWrite, call: Call) -> None:
        write.write("SET", self._call_key(call.call_id), _dumps(call.to_dict()))

    def stage_waiting(self, write: GuardedWrite, job_id: str, waiting: dict[str, Any] | None) -> None:
        """The job's `waiting` field: what it waits for (or, None, that it waits for nothing now)."""
        write.write("HSET", self._job_key(job_id), "waiting", _dumps(waiting) if waiting else "")
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
            write.write("HSET", f"{key}:targets", *(v for i, t in part for v in (i, _dumps(t.to_dict()))))
        write.write("HSET", key, "updated_at", utc_now())
        self._stage_audit(write, job_id, event,
                          {**(data or {}), "targets": [_target_note(i, t) for i, t in targets.items()]})
        if any(t.status.value == "dead" for t in targets.values()):
            score = self.redis.hget(key, "created_us") or 0
            write.write("ZADD", f"{self.prefix}jobs:dead", float(score), job_id)
        self._stage_watch(write, job_id, targets)

    # -- the watch after termination -------------------------------------------------------------------------

    @property
    def _watch_key(self) -> str:
        return f"{self.prefix}watch"

    @property
    def _active_after_key(self) -> str:
        return f"{self.prefix}jobs:active_after"

    def _stage_watch(self, write: GuardedWrite, job_id: str, targets: dict[int, Target]) -> None:
        """Start watching each user Box just accepted (when a watch is on), and drop watches long over."""
        accepted = [(i, t.user_id) for i, t in targets.items()
                    if t.status.value == "accepted" and t.type.value == "user" and t.user_id]
        if not accepted or self.watch_seconds <= 0:
            return
        now_ms = int(time.time() * 1000)
        until = datetime.fromtimestamp(now_ms / 1000 + self.watch_seconds, UTC)
        write.write("HSET", self._job_key(job_id), "watch_until",
                    until.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        write.write("ZADD", self._watch_key, *(v for i, user in accepted for v in (now_ms, f"{job_id}:{i}:{user}")))
        write.write("ZREMRANGEBYSCORE", self._watch_key, "-inf", f"({now_ms - self.watch_horizon_ms()}")

    def watch_horizon_ms(self) -> int:
        """How long a watch is kept: its length and a margin for events Box logs late."""
        return int((self.watch_seconds + defaults.WATCH_LATE_EVENTS_SECONDS) * 1000)

    def watched(self, *, now_ms: int) -> list[Watched]:
        """The watches still open at `now_ms` (their margin for late events included), oldest first."""
        rows: list[Any] = list(self.redis.zrangebyscore(self._watch_key, now_ms - self.watch_horizon_ms(), "+inf",
                                                         withscores=True))
        watched = []
        for member, score in rows:
            parts = _text(member).split(":")
            watched.append(Watched(job_id=parts[0], index=int(parts[1]), user_id=parts[2], accepted_ms=int(score)))
        return watched

    def note_activity(self, job_id: str, index: int, activity: dict[str, Any]) -> bool:
        """Record one event by a target's user after their termination (once per event id), flag the job and
        note it in the audit; False when it was recorded before or the job is gone."""
        key = self._job_key(job_id)
        keys = [key, f"{key}:activity", self._active_after_key, self.audit_key, self.job_audit_key(job_id)]
        field = f"{index}:{activity.get('event_id', '')}"
        return bool(self._note_activity(keys=keys, args=[field, _dumps({"target": index, **activity}), utc_now()]))

    def jobs_to_resolve(self) -> int:
        """Jobs queued or resolving now: the lookups waiting across all jobs, roughly (most name one person)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._state_prefix() + JobState.QUEUED.value)
        pipe.zcard(self._state_prefix() + JobState.RESOLVING.value)
        return sum(int(n) for n in pipe.execute())

    def idle_jobs(self, states: Iterable[JobState], *, idle_seconds: float, now: float, limit: int) -> list[str]:
        """Jobs in `states` (the oldest `limit` of each) that no run holds and that neither changed nor were
        enqueued again for `idle_seconds`."""
        candidates = [_text(i) for state in states
                      for i in self.redis.zrange(self._state_prefix() + state.value, 0, limit - 1)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in candidates:
            pipe.hmget(self._job_key(job_id), ["updated_at", "requeued_at"])
            pipe.exists(f"{self._job_key(job_id)}:lease")
        replies = pipe.execute()
        idle = []
        for n, job_id in enumerate(candidates):
            (updated, requeued), leased = replies[2 * n], replies[2 * n + 1]
            last = max((_epoch(_text(v)) for v in (updated, requeued) if v), default=now)
            if not leased and now - last >= idle_seconds:
                idle.append(job_id)
        return idle

    def leased(self, job_id: str) -> bool:
        """Whether a run holds the job now."""
        return bool(self.redis.exists(f"{self._job_key(job_id)}:lease"))

    def note_requeued(self, job_id: str, *, why: str, at: float) -> None:
        """Note that the sweep enqueued the job again at `at` (epoch seconds); nothing for a job no longer working
        (settled since, say: a rescue that found its run's entry)."""
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        write = self._while_working(job_id)
        write.write("HSET", self._job_key(job_id), "requeued_at", stamp)
        self._stage_audit(write, job_id, "requeued", {"why": why})
        try:
            write.apply(self.redis)
        except GuardFailed:
            log.info("job %s is no longer working (settled or removed): not noted as enqueued again", job_id)

    def note_sweep(self) -> None:
        """The periodic sweep ran now (what `boxcut doctor` checks beat by)."""
        self.redis.set(f"{self.prefix}beat:last_sweep", time.time(), ex=86400)

    def last_sweep(self) -> float | None:
        raw = self.redis.get(f"{self.prefix}beat:last_sweep")
        return float(raw) if raw is not None else None

    def terminating_jobs(self, *, limit: int) -> list[str]:
        """The oldest jobs whose targets are being sent."""
        ids = self.redis.zrange(self._state_prefix() + JobState.TERMINATING.value, 0, limit - 1)
        return [_text(i) for i in ids]

    def load_calls(self, call_ids: list[str]) -> list[Call]:
        if not call_ids:
            return []
        raw = self.redis.mget([self._call_key(c) for c in dict.fromkeys(call_ids)])
        return [Call.from_dict(json.loads(r)) for r in raw if r is not None]

    # -- retention -------------------------------------------------------------------------------------------

    def created_before(self, created_before_us: int, *, limit: int, skip: int = 0) -> list[tuple[str, str]]:
        """The oldest jobs (up to `limit`, after the first `skip`) created before `created_before_us` (epoch µs),
        with their states."""
        ids = [_text(i) for i in self.redis.zrangebyscore(f"{self.prefix}jobs", "-inf", f"({created_before_us}",
                                                          start=skip, num=limit)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self._job_key(job_id), "state")
        return [(job_id, _text(state or "")) for job_id, state in zip(ids, pipe.execute(), strict=True)]

    def remove(self, job_id: str, *, extra_keys: Iterable[str] = ()) -> int:
        """Delete a job's record, its audit trail, its place in every index, and each call that carried its
        targets once no job it carried is left; returns the calls deleted."""
        key = self._job_key(job_id)
        state, source = (_text(v or "") for v in self.redis.hmget(key, ["state", "source"]))
        call_ids = [_text(c) for c in self.redis.lrange(f"{key}:calls", 0, -1)]
        # No MULTI: Redis refuses every command inside MULTI when full, deletions included, and a full Redis is
        # when retention matters most. Each deletion is idempotent; a pass cut short is finished by the next.
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(key, f"{key}:targets", f"{key}:calls", f"{key}:lease", f"{key}:activity", f"{key}:notify",
                    self.job_audit_key(job_id), *extra_keys)
        pipe.zrem(f"{self.prefix}jobs", job_id)
        pipe.zrem(f"{self.prefix}jobs:dead", job_id)
        pipe.zrem(self._active_after_key, job_id)
        pipe.zrem(self._settle_wait_key, job_id)
        pipe.zrem(self._state_prefix() + state, job_id)
        pipe.zrem(f"{self.prefix}jobs:source:{source}", job_id)
        pipe.execute()
        orphans = [c.call_id for c in self.load_calls(call_ids)
                   if not self._any_exists(job for job in c.carried() if job != job_id)]
        if orphans:
            self.redis.delete(*(k for c in orphans for k in (self._call_key(c), self._attempts_key(c))))
        return len(orphans)

    def _any_exists(self, job_ids: Iterable[str]) -> bool:
        """Whether any of the jobs is in Redis, working or settled."""
        keys = [k for j in job_ids for k in (self._job_key(j), self._settled_key(j))]
        return bool(keys) and int(self.redis.exists(*keys)) > 0

    def trim_audit(self, before_ms: int) -> int:
        """Drop main-stream audit entries older than `before_ms` (XTRIM MINID); returns how many."""
        return int(self.redis.xtrim(self.audit_key, minid=f"{before_ms}-0", approximate=False))

    # -- audit -----------------------------------------------------------------------------------------------

    def _audit(self, pipe: Any, job_id: str, event: str, data: dict[str, Any]) -> None:
        entry = ("job_id", job_id, "event", event, "at", utc_now(), "data", _dumps(data))
        self._audit_entry(keys=[self.audit_key, self.job_audit_key(job_id), self._job_key(job_id)], args=entry,
                          client=pipe)

    def note(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        """Append an audit entry about the job that changes nothing in its record (e.g. a notification sent)."""
        pipe = self.redis.pipeline(transaction=True)
        self._audit(pipe, job_id, event, data)
        pipe.execute()

    def _stage_audit(self, write: GuardedWrite, job_id: str, event: str, data: dict[str, Any]) -> None:
        entry = ("job_id", job_id, "event", event, "at", utc_now(), "data", _dumps(data))
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
            start = "(" + _text(entries[-1][0])

    # -- leases ----------------------------------------------------------------------------------------------

    @contextmanager
    def lease(self, job_id: str, *, ttl_seconds: float) -> Iterator[LeaseRenewer]:
        """Hold the job for one task run, so two deliveries of one job never work on it at once. While held, the
        job is listed in `jobs:running` with the lease's deadline (moved on by each renewal): a run that dies
        leaves it there past its deadline, where `died_runs` finds it."""
        lock = RedisLock(self.redis, f"{self._job_key(job_id)}:lease", ttl_ms=int(ttl_seconds * 1000))
        if not lock.acquire():
            raise LeaseHeld(max(lock.remaining_seconds(), 1.0))
        self._note_running(job_id, lock.ttl_ms)
        try:
            yield LeaseRenewer(lambda: lock.renew() and self._note_running(job_id, lock.ttl_ms, renewal=True))
        finally:
            if lock.release():
                self.redis.zrem(self._running_key, job_id)

    @property
    def _running_key(self) -> str:
        return f"{self.prefix}jobs:running"

    def _note_running(self, job_id: str, ttl_ms: int, *, renewal: bool = False) -> bool:
        """List the job as run until its lease's deadline; a renewal only moves an entry still there (one the
        release just removed stays removed)."""
        self.redis.zadd(self._running_key, {job_id: int(time.time() * 1000) + ttl_ms}, xx=renewal)
        return True

    def died_runs(self, *, now_ms: int, limit: int) -> list[str]:
        """Jobs whose run's lease ran out without being let go (the run died), oldest first; `forget_run` drops
        one once its next run is arranged."""
        died = [_text(j) for j in self.redis.zrangebyscore(self._running_key, "-inf", now_ms, start=0, num=limit)]
        return [job_id for job_id in died if not self.leased(job_id)]

    def forget_run(self, job_id: str, *, deadline_ms: int) -> bool:
        """Drop a died run's entry, unless a new run listed the job since (its deadline is later)."""
        removed = self.redis.eval(_FORGET_RUN, 1, self._running_key, job_id, deadline_ms)
        return bool(removed)


# KEYS[1] jobs:running; ARGV[1] job id, ARGV[2] a time (ms): the entry goes only if its deadline is not later.
_FORGET_RUN = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


@dataclass
class CarriedJob:
    """A job as a sender sees it: the state and approval that decide whether its targets may go, and who sent
    it (the brake's source)."""

    state: JobState
    targets: dict[int, Target]
    approval: Approval | None
    source: str = ""
    requested_by: str = ""
    approval_raw: str = ""  # the approval field as stored, for a guard that it is unchanged
    created_us: int = 0


class LeaseRenewer:
    """Extends a held lease; long runs call `renew()` between Box calls."""

    def __init__(self, renew: Callable[[], bool]) -> None:
        self._renew = renew

    def renew(self) -> bool:
        """Whether the lease is still ours, extended now."""
        return self._renew()


@dataclass(frozen=True)
class Watched:
    """One user Box accepted the termination of, whose own events the reader records for a while."""

    job_id: str
    index: int
    user_id: str
    accepted_ms: int


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


def _audit_row(entry_id: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    row = {_text(k): _text(v) for k, v in fields.items()}
    return {"id": _text(entry_id), **row, "data": json.loads(row["data"])}


def _target_note(index: int, target: Target) -> dict[str, Any]:
    return {"index": index, "status": target.status.value, "user_id": target.user_id,
            "group_id": target.group_id, "detail": target.detail}


def _record_fields(job: Job, created_us: int) -> dict[Any, Any]:
    """The job hash of a new job."""
    fields: dict[Any, Any] = {name: getattr(job, name) for name in _SCALAR_FIELDS}
    fields.update(
        dry_run=int(job.dry_run), source_event_id=job.source_event_id or "", severity=job.severity or "",
        link=job.link or "", created_us=created_us, call_seq=0, expand_groups=int(job.expand_groups),
        approval=_dumps(job.approval.to_dict()) if job.approval else "", blast_radius="", note=job.note or "",
    )
    return fields


def _creation_note(job: Job) -> dict[str, Any]:
    """The audit entry's data for a job's creation."""
    return {"source": job.source, "targets": len(job.targets), "dry_run": job.dry_run,
            "requested_by": job.requested_by}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
