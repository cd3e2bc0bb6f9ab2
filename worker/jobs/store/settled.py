"""Settled jobs: a finished job's working keys replaced, in one step, by its packed copy (worker/jobs/document.py)
for the hot window, and the copy let go once the archive holds it (worker/jobs/archiving.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from typing import Any, cast

from redis.commands.core import Script

from worker.errors import JobNotFound
from worker.jobs.document import Settled, call_from_document, job_document, job_from_document, pack, unpack
from worker.jobs.model import Job, JobState
from worker.jobs.store.base import as_text
from worker.jobs.store.calls import CallRecords

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


class SettledJobs(CallRecords):
    """Settling jobs into packed copies, reading those copies, and letting them go."""

    @cached_property
    def _settle(self) -> Script:
        return self.redis.register_script(_SETTLE)

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
                ids = [as_text(i) for i in self.redis.zrange(key, start, start + 999)]
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
        return [(as_text(i), {as_text(k): as_text(v) for k, v in f.items()})
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
        return [as_text(i) for i in self.redis.zrangebyscore(self._settled_index, "-inf", f"({created_before_us}",
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
