"""The brake: how many distinct users boxcut terminated lately, per source and in all, and who must wait for it.

The approval threshold counts the users of one job; a stream of one-user jobs (one Shared Signals SET, Okta event
or SIEM alert per person) never reaches it. The brake counts across jobs: the distinct users sent to Box (or
cleared to be sent) within a sliding window, per source and in total. A target that would take its source past
`BOXCUT_BRAKE_USERS` (or all sources past `BOXCUT_BRAKE_TOTAL_USERS`) is held, and so is every later target of
that source while the brake is engaged, until a person approves its job or releases the source.

A **source** is who sent the job: its `requested_by`, which every entrance writes as route and credential
(`splunk:token#1`, `okta:soc-okta`), Shared Signals as `ssf:<issuer>`, and the event-stream reader as
`box-event-stream`. Operators' jobs (`offboard`, `terminate`) are theirs to decide: they count in the source
`operator` and are never held, and they do not count toward the total, so a layoff's offboarding never stops the
alerts of an incident. A job a person approved is never held again.

Decisions are one Lua script, so concurrent senders on every worker cannot slip under the limit together.
Counting is by user, so deciding a target again (a commit that lost a race, a call sent again) never counts it
twice. A target counted and then not sent (its job cancelled a moment later) stays counted: the brake errs towards
holding.

    P brake:all                 zset  `u:<user id>` (and `g:<group id>:<n>`, a group's members) -> last counted (ms)
    P brake:src:<source>        zset  the same, for one source
    P brake:engaged:<source>    string set while the brake holds the source (`*` for all sources), to when it
                                       engaged (ms); expires one window after the last target it held
    P brake:announced:<source>  string the engagement (its `engaged` value) already told to people
    P brake:released:<source>   string set by a release, for the rest of the window (`*`: every source)
    P brake:held                hash  job id -> the source whose brake holds it

Time is Redis's (`TIME` in the script), as the keys' expiry is: a worker whose clock runs ahead cannot age the
others' counts out of the window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from config import Settings
from worker.jobs.model import Target, TargetType
from worker.transactions import GuardedWrite

# Who moved a job the brake holds to `awaiting_approval`, in its audit trail: the notification scanner sends no
# per-job notice for these, since the brake's engagement is told once.
BRAKE_ACTOR = "brake"
# The audit entry, on the job whose hold engaged the brake, that tells of the engagement (and notifies).
ENGAGED_EVENT = "brake_engaged"
# The source every operator's job counts in (never held, not in the total).
OPERATOR_SOURCE = "operator"
# Job sources that operators submit (worker/jobs/offboarding.py, `boxcut terminate`).
OPERATOR_JOB_SOURCES = frozenset({"offboarding", "cli"})
# What `release` and the keys call all sources at once.
ALL_SOURCES = "*"
# A group counts as its members, each an entry of the window; a group larger than the largest limit (or this)
# counts as one more than that limit, which decides the same and keeps the script short.
MAX_GROUP_MEMBERS_COUNTED = 10_000
# How long an engagement is remembered as told, at the most (an engagement held longer is told again daily).
ANNOUNCED_MS = 86_400_000

# KEYS[1] all-sources window, KEYS[2] all-sources engaged flag, KEYS[3] all-sources release flag, then for each
# source i (from 1): KEYS[3i+1] its window, KEYS[3i+2] its engaged flag, KEYS[3i+3] its release flag
# ARGV[1] now (ms; 0: Redis's TIME), ARGV[2] window (ms), ARGV[3] the total limit (0: off), ARGV[4] JSON
#   {"limits": [limit of source i, ...], "cands": [[source i, exempt 0/1, in_total 0/1, [member, ...]], ...]}
# Returns, per candidate in order, {verdict, count}: verdict 0 admitted, 1 held by its source's limit, 2 held by
# the total's; count is the window's count it was decided on.
_ADMIT = """
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window, total_limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local plan = cjson.decode(ARGV[4])
local cutoff = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local total = redis.call('ZCARD', KEYS[1])
local counts = {}
for i = 1, #plan.limits do
  redis.call('ZREMRANGEBYSCORE', KEYS[3 * i + 1], '-inf', cutoff)
  counts[i] = redis.call('ZCARD', KEYS[3 * i + 1])
end
local function hold(engaged_key)
  if not redis.call('SET', engaged_key, now, 'PX', window, 'NX') then redis.call('PEXPIRE', engaged_key, window) end
end
local results = {}
for _, cand in ipairs(plan.cands) do
  local i, exempt, in_total, members = cand[1], cand[2], cand[3], cand[4]
  local window_key = KEYS[3 * i + 1]
  local new_here, new_total = 0, 0
  for _, m in ipairs(members) do
    if not redis.call('ZSCORE', window_key, m) then new_here = new_here + 1 end
    if in_total == 1 and not redis.call('ZSCORE', KEYS[1], m) then new_total = new_total + 1 end
  end
  local limit = plan.limits[i]
  local verdict, count = 0, counts[i]
  local free = exempt == 1 or redis.call('EXISTS', KEYS[3 * i + 3]) == 1 or redis.call('EXISTS', KEYS[3]) == 1
  if not free and new_here > 0 then
    if redis.call('EXISTS', KEYS[3 * i + 2]) == 1 or (limit > 0 and counts[i] + new_here > limit) then
      verdict = 1
      hold(KEYS[3 * i + 2])
    elseif in_total == 1 and new_total > 0 and (redis.call('EXISTS', KEYS[2]) == 1
        or (total_limit > 0 and total + new_total > total_limit)) then
      verdict, count = 2, total
      hold(KEYS[2])
    end
  end
  if verdict == 0 then
    for _, m in ipairs(members) do
      redis.call('ZADD', window_key, now, m)
      if in_total == 1 then redis.call('ZADD', KEYS[1], now, m) end
    end
    counts[i] = counts[i] + new_here
    total = total + new_total
    redis.call('PEXPIRE', window_key, window)
    if in_total == 1 then redis.call('PEXPIRE', KEYS[1], window) end
  end
  results[#results + 1] = {verdict, count}
end
return results
"""

# KEYS[1] the engaged flag of a hold's scope, KEYS[2] its announced flag; ARGV[1] how long to remember (ms)
# Returns 1 when this engagement was not told yet (and is now the caller's to tell), else 0.
_ANNOUNCE = """
local engaged = redis.call('GET', KEYS[1])
if not engaged or redis.call('GET', KEYS[2]) == engaged then return 0 end
redis.call('SET', KEYS[2], engaged, 'PX', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class BrakeLimits:
    """The brake's settings: users per source and in all within the window (0: that limit is off), and
    per-source limits for sources known to be busy (`BOXCUT_BRAKE_SOURCE_USERS`; 0 turns one source's brake off,
    the total's included)."""

    per_source: int
    total: int
    window_seconds: int
    overrides: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> BrakeLimits:
        return cls(per_source=settings.brake_users, total=settings.brake_total_users,
                   window_seconds=settings.brake_window_seconds, overrides=dict(settings.brake_source_users))

    @property
    def off(self) -> bool:
        return self.per_source == 0 and self.total == 0 and not any(self.overrides.values())

    @property
    def group_cap(self) -> int:
        """How many users a group counts as at most: one more than the largest limit decides the same."""
        return min(MAX_GROUP_MEMBERS_COUNTED, max(self.per_source, self.total, *self.overrides.values(), 0) + 1)

    def limit_for(self, source: str) -> int:
        """The source's own limit: its override by whole name, else by route (`okta` for `okta:token#2`)."""
        override = self._override(source)
        return self.per_source if override is None else override

    def in_total(self, source: str) -> bool:
        """Whether the source counts toward the total: not an operator's, nor one whose brake an override of 0
        turned off."""
        return source != OPERATOR_SOURCE and self._override(source) != 0

    def _override(self, source: str) -> int | None:
        if source in self.overrides:
            return self.overrides[source]
        return self.overrides.get(source.split(":", 1)[0])


@dataclass(frozen=True)
class Candidate:
    """A target a sender is about to send, as the brake counts it."""

    ref: str
    source: str
    members: tuple[str, ...]
    exempt: bool = False


@dataclass(frozen=True)
class Hold:
    """Why the brake holds a target: its source (or all sources) reached the limit within the window."""

    source: str
    scope: str  # "source" or "total"
    count: int
    limit: int
    window_seconds: int

    def reason(self) -> str:
        """The approval reason a held job records: the brake, the source and the count."""
        minutes = f"{self.window_seconds / 60:g} minutes"
        if self.scope == "total":
            return (f"brake: {self.count} users terminated from all sources in the last {minutes} (limit "
                    f"BOXCUT_BRAKE_TOTAL_USERS={self.limit}); source {self.source} waits for a person: approve "
                    f"the job, or `boxcut brake release {self.source}`")
        return (f"brake: source {self.source} had {self.count} users terminated in the last {minutes} (limit "
                f"{self.limit}); its jobs wait for a person: approve the job, or "
                f"`boxcut brake release {self.source}`")

    @property
    def engaged_as(self) -> str:
        """The name of the engagement that holds it: the source's, or `*` for all sources'."""
        return ALL_SOURCES if self.scope == "total" else self.source

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "scope": self.scope, "count": self.count, "limit": self.limit,
                "window_seconds": self.window_seconds}


@dataclass(frozen=True)
class SourceState:
    """One source as `boxcut brake` shows it."""

    source: str
    users: int
    limit: int
    engaged: bool
    released_for_seconds: float
    held_jobs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "users": self.users, "limit": self.limit, "engaged": self.engaged,
                "released_for_seconds": round(self.released_for_seconds), "held_jobs": self.held_jobs}


def source_of(*, job_source: str, requested_by: str) -> str:
    """The brake's source for a job: `operator` for operators' jobs, else who sent it (`requested_by`)."""
    return OPERATOR_SOURCE if job_source in OPERATOR_JOB_SOURCES else requested_by


def members_of(target: Target, *, cap: int = MAX_GROUP_MEMBERS_COUNTED) -> tuple[str, ...]:
    """The users a target's termination reaches, as the brake counts them: the user, or a group's members (at
    most `cap` of them)."""
    if target.type is TargetType.USER:
        return (f"u:{target.user_id}",)
    count = min(max(target.member_count or 1, 1), cap)
    return tuple(f"g:{target.group_id}:{n}" for n in range(count))


class Brake:
    """The brake's counts and holds in Redis, shared by every worker."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, limits: BrakeLimits) -> None:
        self.redis = client
        self.prefix = f"{key_prefix}brake:"
        self.limits = limits
        self._admit = client.register_script(_ADMIT)
        self._announce = client.register_script(_ANNOUNCE)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> Brake:
        return cls(client, key_prefix=settings.key_prefix, limits=BrakeLimits.from_settings(settings))

    def _key(self, kind: str, source: str) -> str:
        return f"{self.prefix}{kind}:{source}"

    def _keys(self, source: str) -> list[str]:
        return [self._key("src", source), self._key("engaged", source), self._key("released", source)]

    @property
    def held_key(self) -> str:
        return f"{self.prefix}held"

    def candidate(self, ref: str, target: Target, *, source: str, exempt: bool) -> Candidate:
        """A target about to be sent, as this brake counts it."""
        return Candidate(ref=ref, source=source, members=members_of(target, cap=self.limits.group_cap),
                         exempt=exempt)

    def admit(self, candidates: Iterable[Candidate], *, now_ms: int = 0) -> dict[str, Hold]:
        """Count the candidates the brake lets go and return those it holds, by ref; in one step for all workers,
        at Redis's time (`now_ms`: a test's). With the brake off, every candidate goes and nothing is counted."""
        wanted = list(candidates)
        if not wanted or self.limits.off:
            return {}
        sources = sorted({c.source for c in wanted})
        index = {source: i for i, source in enumerate(sources, start=1)}
        keys = [f"{self.prefix}all", *self._keys(ALL_SOURCES)[1:], *(k for s in sources for k in self._keys(s))]
        limits = [self.limits.limit_for(source) for source in sources]
        plan = {"limits": limits, "cands": [[index[c.source], int(c.exempt), int(self.limits.in_total(c.source)),
                                             list(c.members)] for c in wanted]}
        window_ms = self.limits.window_seconds * 1000
        replies = self._admit(keys=keys, args=[now_ms, window_ms, self.limits.total, json.dumps(plan)])
        held: dict[str, Hold] = {}
        for candidate, (verdict, count) in zip(wanted, replies, strict=True):
            if int(verdict) == 0:
                continue
            scope = "source" if int(verdict) == 1 else "total"
            limit = limits[index[candidate.source] - 1] if scope == "source" else self.limits.total
            held[candidate.ref] = Hold(source=candidate.source, scope=scope, count=int(count), limit=limit,
                                       window_seconds=self.limits.window_seconds)
        return held

    def stage_hold(self, write: GuardedWrite, job_id: str, hold: Hold) -> None:
        """Inside the sender's guarded write: remember the job as held for its source, applied only while neither
        that source nor every source is released (a release just made lets it go instead)."""
        write.is_absent(self._key("released", hold.source)).is_absent(self._key("released", ALL_SOURCES))
        write.write("HSET", self.held_key, job_id, hold.source)

    def announce(self, hold: Hold) -> bool:
        """Whether the engagement holding `hold` is still untold, claiming it for the caller to tell: true once
        per engagement, for whichever sender holds a job of it first, however a sender before it stopped."""
        scope = hold.engaged_as
        keys = [self._key("engaged", scope), self._key("announced", scope)]
        return bool(self._announce(keys=keys, args=[ANNOUNCED_MS]))

    def held_jobs(self, source: str | None = None) -> dict[str, str]:
        """Job id -> source of the jobs the brake has held (and nobody released yet), of one source or all."""
        held = _held(self.redis, self.held_key)
        return {j: s for j, s in held.items() if source in (None, ALL_SOURCES, s)}

    def forget(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.redis.hdel(self.held_key, *ids)

    def knows(self, source: str) -> bool:
        """Whether the brake counts, holds or released anything of `source` (a release names a source it knows)."""
        if source == ALL_SOURCES or source in self.held_jobs().values():
            return True
        return bool(self.redis.exists(*(self._key(kind, source) for kind in ("src", "engaged", "released"))))

    def release(self, source: str) -> None:
        """Let `source` (or `*`, every source) go unheld for the rest of the window, and disengage it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._key("released", source), "1", px=self.limits.window_seconds * 1000)
        pipe.delete(self._key("engaged", source))
        if source == ALL_SOURCES:
            for key in self.redis.scan_iter(match=f"{self.prefix}engaged:*", count=1000):
                pipe.delete(key)
        pipe.execute()

    def sources(self, *, now_ms: int | None = None) -> list[SourceState]:
        """Every source counted within the window, engaged, released or holding a job; the busiest first."""
        cutoff = self._now_ms(now_ms) - self.limits.window_seconds * 1000
        held = self.held_jobs()
        names: set[str] = set(held.values())
        for kind in ("src", "engaged", "released"):
            for key in self.redis.scan_iter(match=self._key(kind, "*"), count=1000):
                names.add(_text(key)[len(self._key(kind, "")):])
        names.discard(ALL_SOURCES)
        states = [self._state(name, cutoff, [j for j, s in held.items() if s == name]) for name in names]
        return sorted(states, key=lambda s: (-s.users, s.source))

    def totals(self, *, now_ms: int | None = None) -> SourceState:
        """All sources together (`*`): the users counted toward BOXCUT_BRAKE_TOTAL_USERS."""
        cutoff = self._now_ms(now_ms) - self.limits.window_seconds * 1000
        state = self._state(ALL_SOURCES, cutoff, [])
        return SourceState(source=ALL_SOURCES, users=state.users, limit=self.limits.total, engaged=state.engaged,
                           released_for_seconds=state.released_for_seconds, held_jobs=list(self.held_jobs()))

    def _now_ms(self, now_ms: int | None) -> int:
        if now_ms is not None:
            return now_ms
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _state(self, source: str, cutoff: int, held: list[str]) -> SourceState:
        window_key = f"{self.prefix}all" if source == ALL_SOURCES else self._key("src", source)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(window_key, f"({cutoff}", "+inf")
        pipe.exists(self._key("engaged", source))
        pipe.pttl(self._key("released", source))
        users, engaged, released_ms = pipe.execute()
        return SourceState(source=source, users=int(users), limit=self.limits.limit_for(source),
                           engaged=bool(engaged), released_for_seconds=max(0, int(released_ms)) / 1000,
                           held_jobs=sorted(held))


def jobs_held(client: redis.Redis, *, key_prefix: str, source: str) -> int:
    """How many jobs the brake holds for `source` now (the count an engagement's notification gives)."""
    return sum(1 for held in _held(client, f"{key_prefix}brake:held").values() if held == source)


def _held(client: redis.Redis, key: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(key).items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
