"""The console's "now": what boxcut is doing at this moment, read from Redis as the worker's metrics read it.

Calls in flight and Box ids waiting per endpoint (the send queue), the shared rate limit's burst in use and the
Box calls answered in the last minute against the per-minute budget, a 429 pause in force, the jobs waiting out
Box (their `waiting` field), the brake per source (as `GET /v1/brake` shows it), the event stream's last read,
the live workers (their heartbeats), the jobs awaiting approval, and the last hour minute by minute: targets Box
accepted (counted from the audit trail's `call` entries, read incrementally and cached for CHART_CACHE_SECONDS)
and targets waiting (sampled: whoever computes the snapshot, the page's polling, appends the count to a capped
Redis list at most once a minute, keyed by the minute so that several intakes do not count it twice).

    P console:waiting            list    JSON {"minute": <epoch minute>, "waiting": <ids waiting>}, newest first (60)
    P console:waiting:at:<min>   string  the minute's sample is taken (expires after a few minutes)
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from config import Settings
from worker.box.rate_limit import RateLimiter
from worker.event_stream.cursor import StreamCursor
from worker.jobs import actions as job_actions
from worker.jobs.brake import Brake
from worker.jobs.history import JobHistory
from worker.jobs.model import JobState
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore
from worker.run.fleet import Fleet
from worker.run.settlement import ENDPOINTS

MINUTES = 60
CHART_CACHE_SECONDS = 10.0
# Terminating jobs whose `waiting` field is read for a snapshot (the oldest first); more are said as "at least".
WAITING_JOBS_READ = 2000
# The event stream counts as behind when its last read is older than this many poll intervals.
STREAM_BEHIND_POLLS = 6


@dataclass(frozen=True)
class Endpoint:
    endpoint: str
    in_flight: int
    waiting: int


@dataclass(frozen=True)
class RateBudget:
    """The shared rate limit: the per-minute budget, the burst and how much of it is in use now, and the Box
    calls answered in the last minute (from the audit trail)."""

    per_minute: int
    burst: int
    burst_used: int
    calls_last_minute: int


@dataclass(frozen=True)
class WaitingOut:
    """Jobs whose calls wait out Box (a 429 pause, 5xx, no answer): how many, and why (reason, jobs)."""

    jobs: int
    reasons: list[tuple[str, int]]
    more: bool = False  # more terminating jobs than were read


@dataclass(frozen=True)
class EventStream:
    reading: bool  # BOXCUT_EVENTS_POLL_SECONDS is not 0
    last_read_at: str | None
    age_seconds: float | None
    behind: bool
    problem: str | None


@dataclass(frozen=True)
class Worker:
    worker: str
    box_api: str
    seen_seconds_ago: float


@dataclass(frozen=True)
class Minute:
    """One minute of the last hour: its start (UTC), the targets Box accepted in it, the ids waiting when it was
    sampled (None: no sample)."""

    minute: str
    accepted: int
    waiting: int | None


@dataclass(frozen=True)
class Now:
    at: str
    endpoints: list[Endpoint]
    rate: RateBudget
    pause_seconds: float  # a 429 pause in force: seconds left (0: none)
    waiting_out: WaitingOut
    brake: dict[str, Any]
    event_stream: EventStream
    workers: list[Worker]
    awaiting_approval: int
    chart: list[Minute] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return sum(e.in_flight for e in self.endpoints)

    @property
    def waiting(self) -> int:
        return sum(e.waiting for e in self.endpoints)

    @property
    def engaged_sources(self) -> list[str]:
        return [s["source"] for s in self.brake.get("sources", []) if s.get("engaged")]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["in_flight"], data["waiting"] = self.in_flight, self.waiting
        data["waiting_out"]["reasons"] = [{"reason": r, "jobs": n} for r, n in self.waiting_out.reasons]
        return data


class HourCounts:
    """Targets Box accepted, and the distinct calls answered, per minute over the last hour, from the audit
    trail's `call` entries: read from where the last read stopped, at most every CHART_CACHE_SECONDS."""

    def __init__(self, history: JobHistory, *, clock: Callable[[], float] = time.time,
                 cache_seconds: float = CHART_CACHE_SECONDS) -> None:
        self.history, self.clock, self.cache_seconds = history, clock, cache_seconds
        self.accepted: Counter[int] = Counter()
        self.calls: dict[int, set[str]] = {}
        self._last: tuple[int, int] | None = None
        self._read_at = -math.inf
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            now = self.clock()
            if now - self._read_at < self.cache_seconds:
                return
            first = int(now // 60) - MINUTES + 1
            since_ms = first * 60_000 if self._last is None else max(self._last[0], first * 60_000)
            for entry in self.history.audit_since(since_ms=since_ms):
                order = _order(str(entry["id"]))
                if self._last is not None and order <= self._last:
                    continue
                self._last = order
                if entry.get("event") != "call":
                    continue
                minute = order[0] // 60_000
                data = entry.get("data") or {}
                self.accepted[minute] += sum(1 for t in data.get("targets") or [] if t.get("status") == "accepted")
                if data.get("call_id"):
                    self.calls.setdefault(minute, set()).add(str(data["call_id"]))
            for minute in [m for m in self.accepted if m < first]:
                del self.accepted[minute]
            for minute in [m for m in self.calls if m < first]:
                del self.calls[minute]
            self._read_at = now

    def calls_since(self, since: float) -> int:
        """Distinct calls answered in the minutes from the one holding `since` on."""
        start = int(since // 60)
        return len({c for minute, calls in self.calls.items() if minute >= start for c in calls})


class NowReader:
    """Reads the snapshot; one per console (it keeps the hour's counts between reads)."""

    def __init__(self, settings: Settings, store: JobStore, history: JobHistory, *,
                 clock: Callable[[], float] = time.time) -> None:
        client = store.redis
        prefix = settings.key_prefix
        self.settings, self.store, self.clock = settings, store, clock
        self.queue = SendQueue(client, key_prefix=prefix)
        self.limiter = RateLimiter(client, key_prefix=prefix, per_minute=settings.rate_limit_per_minute,
                                   clock=clock)
        self.brake = Brake.from_settings(client, settings)
        self.cursor = StreamCursor(client, key_prefix=prefix, clock=clock)
        self.fleet = Fleet(client, key_prefix=prefix, clock=clock)
        self.hour = HourCounts(history, clock=clock)
        self.samples_key = f"{prefix}console:waiting"

    @property
    def redis(self) -> redis.Redis:
        return self.store.redis

    def read(self) -> Now:
        now = self.clock()
        now_ms = int(now * 1000)
        endpoints = []
        for endpoint in ENDPOINTS.values():
            depth = self.queue.depth(endpoint, now_ms=now_ms)
            endpoints.append(Endpoint(endpoint, depth.in_flight, depth.waiting_ids))
        waiting = sum(e.waiting for e in endpoints)
        self._sample_waiting(now, waiting)
        self.hour.refresh()
        return Now(
            at=_iso(now),
            endpoints=endpoints,
            rate=self._rate(now_ms, now),
            pause_seconds=round(self.limiter.pause_remaining(), 1),
            waiting_out=self._waiting_out(),
            brake=job_actions.brake_status(store=self.store, brake=self.brake, now_ms=now_ms),
            event_stream=self._event_stream(now),
            workers=[Worker(m.worker, m.box_api, round(max(0.0, now - m.seen_at), 1)) for m in self.fleet.live()],
            awaiting_approval=int(self.redis.zcard(f"{self.store.prefix}jobs:state:"
                                                   f"{JobState.AWAITING_APPROVAL.value}")),
            chart=self._chart(now),
        )

    def _rate(self, now_ms: int, now: float) -> RateBudget:
        limiter = self.limiter
        tat = float(self.redis.get(limiter.key) or 0)
        tolerance = (limiter.burst - 1) * limiter.interval_ms
        free = limiter.burst if tat <= now_ms else math.floor((now_ms + tolerance - tat) / limiter.interval_ms) + 1
        used = min(limiter.burst, max(0, limiter.burst - free))
        return RateBudget(per_minute=self.settings.rate_limit_per_minute, burst=limiter.burst, burst_used=used,
                          calls_last_minute=self.hour.calls_since(now - 60))

    def _waiting_out(self) -> WaitingOut:
        """Terminating jobs whose `waiting` field is set: a call carrying their targets waits out Box."""
        job_ids = self.store.terminating_jobs(limit=WAITING_JOBS_READ + 1)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids[:WAITING_JOBS_READ]:
            pipe.hget(self.store.job_key(job_id), "waiting")
        reasons: Counter[str] = Counter()
        for raw in pipe.execute() if job_ids else []:
            if not raw:
                continue
            try:
                waiting = json.loads(raw)
            except ValueError:
                continue
            reasons[str(waiting.get("reason") or "waiting out Box")] += 1
        return WaitingOut(jobs=sum(reasons.values()), reasons=reasons.most_common(5),
                          more=len(job_ids) > WAITING_JOBS_READ)

    def _event_stream(self, now: float) -> EventStream:
        status = self.cursor.status()
        reading = self.settings.reads_events
        age = None if status.last_read_at is None else round(max(0.0, now - status.last_read_at), 1)
        behind = reading and (age is None or age > STREAM_BEHIND_POLLS * self.settings.events_poll_seconds)
        return EventStream(reading=reading, last_read_at=_iso(status.last_read_at) if status.last_read_at else None,
                           age_seconds=age, behind=behind, problem=status.last_problem)

    def _sample_waiting(self, now: float, waiting: int) -> None:
        """The minute's sample of ids waiting, taken by the first snapshot of that minute on any intake."""
        minute = int(now // 60)
        if self.redis.set(f"{self.samples_key}:at:{minute}", "1", nx=True, ex=300):
            pipe = self.redis.pipeline(transaction=True)
            pipe.lpush(self.samples_key, json.dumps({"minute": minute, "waiting": waiting}))
            pipe.ltrim(self.samples_key, 0, MINUTES - 1)
            pipe.execute()

    def _chart(self, now: float) -> list[Minute]:
        last = int(now // 60)
        samples: dict[int, int] = {}
        for raw in self.redis.lrange(self.samples_key, 0, MINUTES - 1):
            try:
                sample = json.loads(raw)
                samples.setdefault(int(sample["minute"]), int(sample["waiting"]))
            except (ValueError, KeyError, TypeError):
                continue
        return [Minute(minute=_iso(m * 60), accepted=self.hour.accepted.get(m, 0), waiting=samples.get(m))
                for m in range(last - MINUTES + 1, last + 1)]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
