"""The watch after termination: for a while after Box accepted a user's termination, the event-stream reader
records what that user did (BOXCUT_WATCH_MINUTES), and flags the job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from redis.commands.core import Script

from config import defaults
from worker.jobs.model import Target, utc_now
from worker.jobs.store.base import StoreBase, as_text, to_json
from worker.transactions import GuardedWrite

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


class Watch(StoreBase):
    """The users watched after their termination, and what they did."""

    @cached_property
    def _note_activity(self) -> Script:
        return self.redis.register_script(_NOTE_ACTIVITY)

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
            parts = as_text(member).split(":")
            watched.append(Watched(job_id=parts[0], index=int(parts[1]), user_id=parts[2], accepted_ms=int(score)))
        return watched

    def note_activity(self, job_id: str, index: int, activity: dict[str, Any]) -> bool:
        """Record one event by a target's user after their termination (once per event id), flag the job and
        note it in the audit; False when it was recorded before or the job is gone."""
        key = self._job_key(job_id)
        keys = [key, f"{key}:activity", self._active_after_key, self.audit_key, self.job_audit_key(job_id)]
        field = f"{index}:{activity.get('event_id', '')}"
        return bool(self._note_activity(keys=keys, args=[field, to_json({"target": index, **activity}), utc_now()]))


@dataclass(frozen=True)
class Watched:
    """One user Box accepted the termination of, whose own events the reader records for a while."""

    job_id: str
    index: int
    user_id: str
    accepted_ms: int
