"""The send queue: targets of every job that wait for a terminate call, and the calls in flight, in Redis.

Box calls are shared by all jobs (group commit). A job whose targets cleared policy adds them here; any worker
takes up to a batch of distinct Box ids at once and sends them as one call, whichever jobs named them. Keys
(under the settings' key prefix `P`; `{kind}` is `users` or `groups`):

    P send:{kind}:waiting    zset    Box id -> when it was first queued (ms): the ids the next call takes
    P send:{kind}:refs:{id}  set     the targets (`job:index`) waiting for that id: all of them ride one call
    P send:{kind}:flight     zset    call id -> claim deadline (ms): calls taken and not yet answered
    P send:taken             hash    target ref -> the call carrying it, until that call is answered
    P send:open              hash    job id -> how many of its targets are waiting or in flight
    P call:{id}              string  the call record (see worker.jobs.store), written as the call is taken

A target is always in exactly one place: waiting (in a refs set), taken (in `taken`, carried by a call in
`flight`), or settled in its job. Taking is one Lua script, so no target is taken twice and none is lost
between the queue and its call. A call whose claim deadline passes (its sender died) is taken again and sent
under the same id; a call leaves `flight` only in the same step that records Box's answer.

When no call is in flight the first target leaves at once; while calls are in flight, arriving targets gather
and another call starts only for a full batch, up to `cap` calls in flight.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import redis

from worker.jobs.model import parse_target_ref, target_ref
from worker.transactions import GuardedWrite

# KEYS[1] waiting, KEYS[2] taken, KEYS[3] open
# ARGV[1] now (ms), ARGV[2] refs key prefix, ARGV[3..] triples of job id, target index, Box id
# Adds each target not already waiting or taken; returns how many were added.
_ADD = """
local added = 0
for i = 3, #ARGV, 3 do
  local job, box = ARGV[i], ARGV[i + 2]
  local ref = job .. ':' .. ARGV[i + 1]
  if redis.call('HEXISTS', KEYS[2], ref) == 0 and redis.call('SADD', ARGV[2] .. box, ref) == 1 then
    redis.call('ZADD', KEYS[1], 'NX', ARGV[1], box)
    redis.call('HINCRBY', KEYS[3], job, 1)
    added = added + 1
  end
end
return added
"""

# KEYS[1] waiting, KEYS[2] flight, KEYS[3] taken
# ARGV[1] now (ms), ARGV[2] claim (ms), ARGV[3] batch size, ARGV[4] cap on calls in flight, ARGV[5] new call id,
# ARGV[6] refs key prefix, ARGV[7] call key prefix, ARGV[8] endpoint
# Returns {'resend', call id, claim deadline} for a call whose sender vanished, {'new', call id, claim deadline,
# ids still waiting} for a new call, {'busy'} or {'empty'}.
_TAKE = """
local now, claim = tonumber(ARGV[1]), tonumber(ARGV[2])
local batch, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
if live >= cap then return {'busy'} end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
if #stale > 0 then
  redis.call('ZADD', KEYS[2], now + claim, stale[1])
  return {'resend', stale[1], tostring(now + claim)}
end
local waiting = redis.call('ZCARD', KEYS[1])
if waiting == 0 then return {'empty'} end
if live > 0 and waiting < batch then return {'busy'} end
local ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)
local refs = {}
for _, id in ipairs(ids) do
  for _, ref in ipairs(redis.call('SMEMBERS', ARGV[6] .. id)) do
    refs[#refs + 1] = ref
    redis.call('HSET', KEYS[3], ref, ARGV[5])
  end
  redis.call('DEL', ARGV[6] .. id)
end
redis.call('ZREM', KEYS[1], unpack(ids))
local call = {call_id = ARGV[5], endpoint = ARGV[8], ids = ids, targets = refs, state = 'planned',
              http_status = cjson.null, message = cjson.null, error_code = cjson.null, request_id = cjson.null,
              attempts = 0, started_at = cjson.null, finished_at = cjson.null, exhausted = false}
redis.call('SET', ARGV[7] .. ARGV[5], cjson.encode(call))
redis.call('ZADD', KEYS[2], now + claim, ARGV[5])
return {'new', ARGV[5], tostring(now + claim), tostring(waiting - #ids)}
"""


# Target refs per write in a guarded write (each write's arguments are unpacked onto Lua's stack).
_REFS_PER_WRITE = 1000


class TakeOutcome(enum.Enum):
    NEW = "new"  # a new call, its ids taken from the waiting queue
    RESEND = "resend"  # a call whose sender vanished before recording Box's answer: send it again, same id
    BUSY = "busy"  # calls are in flight and what waits does not fill a batch (or the cap is reached)
    EMPTY = "empty"  # nothing waits and nothing is stranded


@dataclass(frozen=True)
class Taken:
    outcome: TakeOutcome
    call_id: str = ""
    claim: int = 0  # the claim deadline (ms): the call is this sender's until then
    still_waiting: int = 0  # Box ids left waiting after a new call took its batch


@dataclass(frozen=True)
class Depth:
    """How much waits for one endpoint, for status and metrics."""

    waiting_ids: int
    in_flight: int


def endpoint_kind(endpoint: str) -> str:
    """`/users/terminate_sessions` -> `users`."""
    return endpoint.strip("/").split("/")[0]


class SendQueue:
    """Adds targets, takes calls, and stages the queue's part of a call's commit and answer."""

    def __init__(self, client: redis.Redis, *, key_prefix: str) -> None:
        self.redis = client
        self.prefix = key_prefix
        self.taken_key = f"{key_prefix}send:taken"
        self.open_key = f"{key_prefix}send:open"
        self._add = client.register_script(_ADD)
        self._take = client.register_script(_TAKE)

    def _key(self, endpoint: str, part: str) -> str:
        return f"{self.prefix}send:{endpoint_kind(endpoint)}:{part}"

    def flight_key(self, endpoint: str) -> str:
        return self._key(endpoint, "flight")

    def call_key(self, call_id: str) -> str:
        """The call record's key; the same as `JobStore.call_key`, since the take script writes it."""
        return f"{self.prefix}call:{call_id}"

    def add(self, endpoint: str, targets: list[tuple[str, int, str]], *, now_ms: int) -> int:
        """Queue (job id, target index, Box id) triples not already waiting or taken; return how many were."""
        if not targets:
            return 0
        args: list[Any] = [now_ms, self._key(endpoint, "refs:")]
        for job_id, index, box_id in targets:
            args += [job_id, index, box_id]
        return int(self._add(keys=[self._key(endpoint, "waiting"), self.taken_key, self.open_key], args=args))

    def take(self, endpoint: str, *, call_id: str, now_ms: int, claim_ms: int, batch: int, cap: int) -> Taken:
        """Take a call to send: a stranded one first, else up to `batch` waiting ids as a new call `call_id`."""
        reply = self._take(
            keys=[self._key(endpoint, "waiting"), self.flight_key(endpoint), self.taken_key],
            args=[now_ms, claim_ms, batch, cap, call_id, self._key(endpoint, "refs:"), self.call_key(""), endpoint],
        )
        values = [_text(v) for v in reply]
        outcome = TakeOutcome(values[0])
        if outcome is TakeOutcome.NEW:
            return Taken(outcome, values[1], int(values[2]), int(values[3]))
        if outcome is TakeOutcome.RESEND:
            return Taken(outcome, values[1], int(values[2]))
        return Taken(outcome)

    def depth(self, endpoint: str, *, now_ms: int) -> Depth:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._key(endpoint, "waiting"))
        pipe.zcount(self.flight_key(endpoint), f"({now_ms}", "+inf")
        waiting, flight = pipe.execute()
        return Depth(int(waiting), int(flight))

    def forget_job(self, job_id: str) -> None:
        """Drop a removed job's open count (retention)."""
        self.redis.hdel(self.open_key, job_id)

    def open_targets(self, job_id: str) -> int:
        """How many of the job's targets are waiting or in flight."""
        return int(self.redis.hget(self.open_key, job_id) or 0)

    def refs_taken_by(self, call_id: str) -> dict[str, list[int]]:
        """The targets a call holds, by job, read from `taken` (a scan: only for a call whose record is gone)."""
        refs: dict[str, list[int]] = {}
        for ref, holder in self.redis.hscan_iter(self.taken_key, count=1000):
            if _text(holder) == call_id:
                job_id, index = parse_target_ref(_text(ref))
                refs.setdefault(job_id, []).append(index)
        return refs

    def stale_calls(self, endpoint: str, *, now_ms: int) -> int:
        """Calls whose claim ran out without an answer (their sender died or was cut off)."""
        return int(self.redis.zcount(self.flight_key(endpoint), "-inf", now_ms))

    def postpone(self, write: GuardedWrite, endpoint: str, call_id: str, *, until_ms: int) -> None:
        """Keep a call this sender holds until `until_ms` (Box asked to wait), so nobody sends it into the wait."""
        write.write("ZADD", self.flight_key(endpoint), "XX", until_ms, call_id)

    # -- staging: the queue's writes inside a sender's guarded write -----------------------------------------

    def hold_claim(self, write: GuardedWrite, endpoint: str, call_id: str, claim: int) -> None:
        """The write applies only while this sender's claim on the call stands."""
        write.score_is(self.flight_key(endpoint), call_id, claim)

    def in_flight(self, write: GuardedWrite, endpoint: str, call_id: str) -> None:
        """The write applies only while the call has no recorded answer."""
        write.is_member(self.flight_key(endpoint), call_id)

    def release(self, write: GuardedWrite, refs: dict[str, list[int]]) -> dict[str, int]:
        """Targets leave the queue (settled, or no longer sendable): returns the result index, per job, of its
        open count after the write."""
        positions: dict[str, int] = {}
        for job_id, indexes in refs.items():
            if not indexes:
                continue
            for start in range(0, len(indexes), _REFS_PER_WRITE):
                part = indexes[start:start + _REFS_PER_WRITE]
                write.write("HDEL", self.taken_key, *(target_ref(job_id, i) for i in part))
            positions[job_id] = write.write("HINCRBY", self.open_key, job_id, -len(indexes))
        return positions

    def answered(self, write: GuardedWrite, endpoint: str, call_id: str) -> None:
        """The call leaves flight: it has its answer."""
        write.write("ZREM", self.flight_key(endpoint), call_id)

    def plan_part(self, write: GuardedWrite, endpoint: str, call_id: str, refs: list[str], *,
                  ready_at_ms: int) -> None:
        """A new call for part of an answered one (a split batch): its targets move to it, and it is ready to be
        taken from `ready_at_ms` (a time already past: parts are taken in the order of these times)."""
        for start in range(0, len(refs), _REFS_PER_WRITE):  # Lua's unpack() takes a few thousand values at most
            part = refs[start:start + _REFS_PER_WRITE]
            write.write("HSET", self.taken_key, *(item for ref in part for item in (ref, call_id)))
        write.write("ZADD", self.flight_key(endpoint), ready_at_ms, call_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
