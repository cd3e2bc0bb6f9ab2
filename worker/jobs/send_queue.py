"""The send queue: targets of every job that wait for a terminate call, and the calls in flight, in Redis.

Box calls are shared by all jobs (group commit). A job whose targets cleared policy adds them here; any worker
takes up to a batch of distinct Box ids at once and sends them as one call, whichever jobs named them. Keys
(under the settings' key prefix `P`; `{kind}` is `users` or `groups`):

    P send:{kind}:waiting    zset    Box id -> when it was first queued (ms): the ids the next call takes
    P send:{kind}:refs:{id}  set     the targets (`job:index`) waiting for that id: all of them ride one call
    P send:{kind}:flight     zset    call id -> claim deadline (ms): calls taken and not yet answered
    P send:{kind}:owner      hash    call id -> the token of the sender holding it (guards its writes)
    P send:{kind}:wake       string  when (ms) a sender is scheduled for, while the budget holds what waits
    P send:taken             hash    target ref -> the call carrying it, until that call is answered
    P send:open              hash    job id -> how many of its targets are waiting or in flight
    P call:{id}              string  the call record (see worker.jobs.store), written as the call is taken

A target is always in exactly one place: waiting (in a refs set), taken (in `taken`, carried by a call in
`flight`), or settled in its job. Taking is one Lua script, so no target is taken twice and none is lost
between the queue and its call. A call whose claim deadline passes (its sender died) is taken again and sent
under the same id; a call leaves `flight` only in the same step that records Box's answer.

When no call is in flight the first target leaves at once; while calls are in flight, arriving targets gather
and another call starts only for a full batch, up to `cap` calls in flight.

The take also spends the shared budget (worker/box/rate_limit.py), in the same step: each call it takes uses a
slot of the rate limit. While a 429 pause holds, or no slot is free, it takes nothing; and while calls are scarce
(within a minute of the limit having less than half its burst left, or of a 429 pause's end) a partial batch
gathers until it is full or its oldest target has waited `gather_ms`. Either way it says how long, and asks for
a sender to be scheduled for then unless one already is: no process sleeps on the budget, and what arrives
meanwhile joins the next call.
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

# KEYS[1] waiting, KEYS[2] flight, KEYS[3] taken, KEYS[4] owner, KEYS[5] wake, KEYS[6] the rate limit (GCRA),
# KEYS[7] the 429 pause, KEYS[8] tight (until when calls gather)
# ARGV[1] now (ms), ARGV[2] claim (ms), ARGV[3] batch size, ARGV[4] cap on calls in flight, ARGV[5] new call id,
# ARGV[6] refs key prefix, ARGV[7] call key prefix, ARGV[8] endpoint, ARGV[9] the taker's token,
# ARGV[10] the limit's interval (ms; 0: no limit), ARGV[11] its tolerance (ms), ARGV[12] its burst (slots),
# ARGV[13] how long a partial batch may gather while calls are scarce (ms), ARGV[14] how long calls stay scarce
# once the limit has less than half its burst left (ms), ARGV[15] the longest a scheduled sender may be put off (ms:
# a task's longest countdown; for a longer wait it looks again then)
# Returns {'resend', call id, claim deadline} for a call whose sender vanished, {'new', call id, claim deadline,
# ids still waiting} for a new call (either spends one slot of the shared budget), {'closed', wait (ms), why,
# wake, wake in (ms)} when the budget holds what waits (`why`: pause, rate or gather; `wake` 1: the caller must
# schedule a sender in `wake in` ms, none is yet), {'busy'} or {'empty'}.
_TAKE = """
local now, claim = tonumber(ARGV[1]), tonumber(ARGV[2])
local batch, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local interval, tolerance, burst = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
if live >= cap then return {'busy'} end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
local waiting = redis.call('ZCARD', KEYS[1])
if #stale == 0 then
  if waiting == 0 then return {'empty'} end
  if live > 0 and waiting < batch then return {'busy'} end
end
local function closed(wait, why)
  local wake_in = math.min(wait, tonumber(ARGV[15]))
  local at = now + wake_in
  local wake = tonumber(redis.call('GET', KEYS[5]) or '0')
  if wake >= now and wake <= at then return {'closed', tostring(wait), why, '0', tostring(wake_in)} end
  redis.call('SET', KEYS[5], at, 'PX', wake_in + 5000)
  return {'closed', tostring(wait), why, '1', tostring(wake_in)}
end
local pause = tonumber(redis.call('GET', KEYS[7]) or '0')
if pause > now then return closed(pause - now, 'pause') end
local tat = now
if interval > 0 then
  tat = math.max(tonumber(redis.call('GET', KEYS[6]) or '0'), now)
  if tat - tolerance > now then return closed(math.ceil(tat - tolerance - now), 'rate') end
end
if #stale == 0 and waiting < batch then
  local slots = interval > 0 and math.floor((now + tolerance - tat) / interval) + 1 or burst
  local tight = tonumber(redis.call('GET', KEYS[8]) or '0') > now
  if slots * 2 <= burst then
    redis.call('SET', KEYS[8], now + tonumber(ARGV[14]), 'PX', tonumber(ARGV[14]) + 1000)
    tight = true
  end
  if tight then
    local ready = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) + tonumber(ARGV[13])
    if ready > now then return closed(ready - now, 'gather') end
  end
end
if interval > 0 then
  redis.call('SET', KEYS[6], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
end
if #stale > 0 then
  redis.call('ZADD', KEYS[2], now + claim, stale[1])
  redis.call('HSET', KEYS[4], stale[1], ARGV[9])
  return {'resend', stale[1], tostring(now + claim)}
end
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
redis.call('HSET', KEYS[4], ARGV[5], ARGV[9])
return {'new', ARGV[5], tostring(now + claim), tostring(waiting - #ids)}
"""

# KEYS[1] flight, KEYS[2] owner; ARGV[1] the new claim deadline (ms), ARGV[2..] pairs of call id and its holder's
# token. Moves the claim of each call still held by that token to the deadline, never earlier (a call postponed
# into a pause keeps its later time); returns how many it moved.
_RENEW = """
local renewed = 0
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) and redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
"""


# Once the rate limit has less than half its burst left, calls count as scarce for this long (ms): a budget that
# refills between two full batches would otherwise send a few ids at once, each time it is above half again.
TIGHT_AFTER_LOW_MS = 60_000

# Target refs per write in a guarded write (each write's arguments are unpacked onto Lua's stack).
_REFS_PER_WRITE = 1000


@dataclass(frozen=True)
class Budget:
    """The shared rate limit as a take spends it, one slot a call (worker/box/rate_limit.py keeps it): its keys
    and its parameters, in ms."""

    rate_key: str
    pause_key: str
    tight_key: str
    interval_ms: float
    tolerance_ms: float
    burst: int


class TakeOutcome(enum.Enum):
    NEW = "new"  # a new call, its ids taken from the waiting queue
    RESEND = "resend"  # a call whose sender vanished before recording Box's answer: send it again, same id
    CLOSED = "closed"  # the shared budget holds what waits (a pause, no free slot, or a batch still gathering)
    BUSY = "busy"  # calls are in flight and what waits does not fill a batch (or the cap is reached)
    EMPTY = "empty"  # nothing waits and nothing is stranded


@dataclass(frozen=True)
class Taken:
    outcome: TakeOutcome
    call_id: str = ""
    claim: int = 0  # the claim deadline (ms): the call is this sender's until then
    still_waiting: int = 0  # Box ids left waiting after a new call took its batch
    wait_ms: int = 0  # CLOSED: how long until the budget lets a call go
    why: str = ""  # CLOSED: pause (Box's 429), rate (boxcut's limit) or gather (calls are scarce)
    wake: bool = False  # CLOSED: no sender is scheduled for then yet; the caller must schedule one
    wake_in_ms: int = 0  # CLOSED: when to schedule it (the wait, or a task's longest countdown if shorter)


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
        self._renew = client.register_script(_RENEW)

    def _key(self, endpoint: str, part: str) -> str:
        return f"{self.prefix}send:{endpoint_kind(endpoint)}:{part}"

    def flight_key(self, endpoint: str) -> str:
        return self._key(endpoint, "flight")

    def owner_key(self, endpoint: str) -> str:
        """The hash of call id -> the token of the sender that holds it."""
        return self._key(endpoint, "owner")

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

    def take(self, endpoint: str, *, call_id: str, now_ms: int, claim_ms: int, batch: int, cap: int,
             token: str = "", budget: Budget | None = None, gather_ms: int = 0,
             max_wake_ms: int = 600_000) -> Taken:
        """Take a call to send, spending one slot of `budget` with it: a stranded one first, else up to `batch`
        waiting ids as a new call `call_id`, held by `token` until its claim runs out (`renew` moves it on).

        While the budget holds (a 429 pause, no free slot; or, when calls are scarce, a partial batch younger
        than `gather_ms`) nothing is taken: the answer says how long, and whether a sender must be scheduled."""
        budget_args: list[Any] = ([budget.interval_ms, budget.tolerance_ms, budget.burst] if budget is not None
                                  else [0, 0, 1])
        reply = self._take(
            keys=[self._key(endpoint, "waiting"), self.flight_key(endpoint), self.taken_key,
                  self.owner_key(endpoint), self._key(endpoint, "wake"),
                  budget.rate_key if budget else self._key(endpoint, "no-limit"),
                  budget.pause_key if budget else f"{self.prefix}box:pause_until",
                  budget.tight_key if budget else f"{self.prefix}box:tight_until"],
            args=[now_ms, claim_ms, batch, cap, call_id, self._key(endpoint, "refs:"), self.call_key(""), endpoint,
                  token, *budget_args, gather_ms, TIGHT_AFTER_LOW_MS, max_wake_ms],
        )
        values = [_text(v) for v in reply]
        outcome = TakeOutcome(values[0])
        if outcome is TakeOutcome.NEW:
            return Taken(outcome, values[1], int(values[2]), int(values[3]))
        if outcome is TakeOutcome.RESEND:
            return Taken(outcome, values[1], int(values[2]))
        if outcome is TakeOutcome.CLOSED:
            return Taken(outcome, wait_ms=int(float(values[1])), why=values[2], wake=values[3] == "1",
                         wake_in_ms=int(float(values[4])))
        return Taken(outcome)

    def scarce(self, budget: Budget, *, now_ms: int) -> bool:
        """Whether calls count as scarce now (as the take judges it): a 429 pause in force, or the tight mark
        (within a minute of the limit running low, or of a pause's end)."""
        pause, tight = self.redis.mget([budget.pause_key, budget.tight_key])
        return any(value is not None and float(value) > now_ms for value in (pause, tight))

    def renew(self, endpoint: str, held: list[tuple[str, str]], *, until_ms: int) -> int:
        """Move the claim of each (call id, token) still held by that token to `until_ms` (never earlier)."""
        if not held:
            return 0
        return int(self._renew(keys=[self.flight_key(endpoint), self.owner_key(endpoint)],
                               args=[until_ms, *(item for pair in held for item in pair)]))

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

    def hold_claim(self, write: GuardedWrite, endpoint: str, call_id: str, token: str) -> None:
        """The write applies only while the call is still this sender's (`token`): nobody took it over."""
        write.hash_field_is(self.owner_key(endpoint), call_id, token)

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
        write.write("HDEL", self.owner_key(endpoint), call_id)

    def requeue(self, write: GuardedWrite, endpoint: str, targets: list[tuple[str, str]], *, now_ms: int) -> None:
        """(target ref, Box id) pairs a call carried go back to waiting, for the next call to take (Box answered
        429: it did nothing with them); they stay open."""
        for start in range(0, len(targets), _REFS_PER_WRITE):
            part = targets[start:start + _REFS_PER_WRITE]
            write.write("HDEL", self.taken_key, *(ref for ref, _ in part))
        for ref, box_id in targets:
            write.write("SADD", self._key(endpoint, "refs:") + box_id, ref)
            write.write("ZADD", self._key(endpoint, "waiting"), "NX", now_ms, box_id)

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
