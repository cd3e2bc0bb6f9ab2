"""Redis's headroom: how much memory boxcut's jobs take, how fast they come, and whether the hot window fits.

The shipped Redis refuses every write once it reaches `maxmemory` (policy `noeviction`): no job is recorded, no
Box call is counted, and containment stops. What a finished job leaves in Redis after it settles
(worker/jobs/archiving.py) is small and bounded by the hot window (BOXCUT_HOT_DAYS), so the memory boxcut needs
follows from two numbers measured here, the bytes a settled job takes and the jobs a day, and `boxcut doctor`
and the worker's /metrics say it before Redis fills. Every measure is bounded work: a few pipelines, a bounded
SCAN, `MEMORY USAGE` of a sample of keys; never KEYS.

    P jobs            zset   working jobs (not settled yet) by creation time (µs)
    P jobs:settled    zset   settled jobs (their packed copies `P settled:{id}`) by creation time (µs)
    P idem:{source}:… string an alert's idempotency key, expiring after BOXCUT_IDEMPOTENCY_TTL_SECONDS
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from config import defaults
from worker.jobs.model import FINAL_STATES
from worker.jobs.store import JobStore

DAY_SECONDS = 86400.0

# Bytes a settled job is taken to hold while none is settled yet to measure: a packed copy of a job with a few
# targets (one-target copies measure ~470 bytes), its entry in the settled index (~100 bytes once the zset is a
# skiplist) and its share of an idempotency key (~140 bytes for a day of a 7-day window), rounded up about twice
# over, so a new deployment's estimate errs toward needing more memory.
FALLBACK_BYTES_PER_JOB = 1300

# The hot window fits when what Redis holds now plus what the window has still to grow stays under this share of
# maxmemory: the rest is for a burst of alerts, the working set of a storm, and the broker.
FULL_FRACTION = 0.9

# A rate seen over less than this is taken over this long: a first job a minute ago is not 1,440 jobs a day.
MIN_RATE_SPAN_SECONDS = 3600.0

# The SCAN for idempotency keys to measure: at most this many rounds of this COUNT (keys examined, not found).
SCAN_ROUNDS = 4
SCAN_COUNT = 1000


@dataclass(frozen=True)
class Headroom:
    """Redis's memory against what boxcut's jobs need of it (see `measure` for how each number is had)."""

    used_bytes: int  # INFO memory used_memory: everything in Redis (jobs, broker queues, audit stream, caches)
    max_bytes: int  # INFO memory maxmemory; 0: no limit
    policy: str  # INFO memory maxmemory_policy (boxcut wants noeviction)
    jobs_working: int  # ZCARD P jobs: not settled yet (their full records)
    jobs_hot: int  # ZCARD P jobs:settled: packed copies in the hot window
    bytes_per_job: float  # what one settled job costs Redis over the hot window (see `measure`)
    sampled: int  # packed copies measured for bytes_per_job; 0: FALLBACK_BYTES_PER_JOB
    jobs_per_day: float  # jobs created a day, at the rate of the last `rate_basis_hours`
    rate_basis_hours: float  # the span the rate was seen over: 24, or less while Redis holds younger jobs only
    hot_days: float  # BOXCUT_HOT_DAYS
    hot_window_bytes: float  # bytes_per_job * jobs_per_day * hot_days: what a full hot window holds at that rate
    days_left: float | None  # (max - used) / (bytes_per_job * jobs_per_day); None: no maxmemory, or no jobs
    fits: bool  # max is 0, or used + hot_window_growth <= FULL_FRACTION * max

    @property
    def hot_window_growth(self) -> float:
        """What the hot window has still to grow at the recent rate: a full window less what is hot now (never
        below 0)."""
        return max(0.0, self.hot_window_bytes - self.jobs_hot * self.bytes_per_job)

    @property
    def limited(self) -> bool:
        """Whether Redis has a maxmemory."""
        return self.max_bytes > 0

    def describe(self) -> str:
        """One line: used against maxmemory, a job's bytes, the rate, the hot window's need, the days left."""
        limit = f"of {size(self.max_bytes)} maxmemory" if self.limited else "(no maxmemory)"
        basis = f"mean of {self.sampled} settled" if self.sampled else "assumed: none settled yet"
        rate = "last 24 h" if self.rate_basis_hours >= 24 else f"scaled up from the last {self.rate_basis_hours:.1f} h"
        left = "" if self.days_left is None else f"; {_days(self.days_left)} of jobs fit in what is free"
        return (f"{size(self.used_bytes)} used {limit}; {self.jobs_working:,} jobs working, {self.jobs_hot:,} hot; "
                f"~{self.bytes_per_job:,.0f} bytes a settled job ({basis}); {self.jobs_per_day:,.0f} jobs a day "
                f"({rate}); the {self.hot_days:g}-day hot window needs ~{size(self.hot_window_bytes)}{left}")


def measure(store: JobStore, *, hot_days: float, now: float | None = None, sample: int = 50,
            idempotency_ttl_seconds: float = defaults.IDEMPOTENCY_TTL_SECONDS) -> Headroom:
    """Measure Redis's headroom for `store`'s jobs.

    `bytes_per_job` is what one settled job costs Redis, averaged over the hot window: the mean `MEMORY USAGE` of
    the newest `sample` packed copies (`P settled:{id}`), plus its entry's share of the settled index (`MEMORY
    USAGE` of `P jobs:settled` over its size), plus the mean `MEMORY USAGE` of up to `sample` idempotency keys
    (a bounded SCAN) times idempotency TTL / hot window (a key lives for its TTL, a day by default, while the
    copy lives for the hot window; counted as if every job had one). It leaves out the working form of jobs not
    settled yet (counted in `used_bytes` as they are) and shared call records. With nothing settled, or with
    `MEMORY USAGE` refused (a managed Redis may rename it), it is FALLBACK_BYTES_PER_JOB.

    `jobs_per_day` counts the jobs created (by score) in the last day in both indexes, working and settled (a
    hot window shorter than a day: over that window). When the oldest job Redis holds is younger than that, the
    count is scaled up from the span seen (never less than an hour), and `rate_basis_hours` says over how long.

    `fits` is True when there is no maxmemory (Redis is then bounded by the host alone, which doctor warns of),
    else when `used_bytes + hot_window_growth <= FULL_FRACTION * max_bytes`, where `hot_window_growth` is what a
    full hot window holds at the recent rate less what is hot now (`hot_window_bytes - jobs_hot *
    bytes_per_job`, at least 0). `days_left` is how many days of jobs at that rate the free memory (max - used)
    holds, were nothing to leave Redis: as while the hot window fills, or while the archive takes nothing.
    """
    now = time.time() if now is None else now
    client, prefix = store.redis, store.prefix
    working_key, settled_key = f"{prefix}jobs", f"{prefix}jobs:settled"
    hot_seconds = hot_days * DAY_SECONDS
    lookback = min(DAY_SECONDS, hot_seconds) if hot_seconds > 0 else DAY_SECONDS
    since_us = int((now - lookback) * 1_000_000)

    pipe = client.pipeline(transaction=False)
    pipe.info("memory")
    pipe.zcard(working_key)
    pipe.zcard(settled_key)
    pipe.zcount(working_key, since_us, "+inf")
    pipe.zcount(settled_key, since_us, "+inf")
    pipe.zrange(working_key, 0, 0, withscores=True)
    pipe.zrange(settled_key, 0, 0, withscores=True)
    pipe.zrange(settled_key, -max(sample, 1), -1)
    info, working, hot, recent_working, recent_hot, oldest_working, oldest_hot, newest = pipe.execute()

    newest_ids = [_text(i) for i in newest] if sample > 0 else []
    idem_keys = _idempotency_keys(client, prefix, sample)
    pipe = client.pipeline(transaction=False)
    pipe.memory_usage(settled_key)
    for job_id in newest_ids:
        pipe.memory_usage(f"{prefix}settled:{job_id}")
    for key in idem_keys:
        pipe.memory_usage(key)
    sizes = [_size_or_none(s) for s in pipe.execute(raise_on_error=False)]
    index_bytes, copies, idems = sizes[0], sizes[1:1 + len(newest_ids)], sizes[1 + len(newest_ids):]

    copy_sizes = [s for s in copies if s is not None]
    if copy_sizes:
        bytes_per_job = sum(copy_sizes) / len(copy_sizes)
        if index_bytes is not None and hot:
            bytes_per_job += index_bytes / hot
        idem_sizes = [s for s in idems if s is not None]
        if idem_sizes and hot_seconds > 0:
            bytes_per_job += sum(idem_sizes) / len(idem_sizes) * idempotency_ttl_seconds / hot_seconds
    else:
        bytes_per_job = float(FALLBACK_BYTES_PER_JOB)

    oldest = [float(scores[0][1]) / 1_000_000 for scores in (oldest_working, oldest_hot) if scores]
    span = lookback
    if oldest and now - min(oldest) < lookback:
        span = max(now - min(oldest), min(MIN_RATE_SPAN_SECONDS, lookback))
    recent = int(recent_working) + int(recent_hot)
    jobs_per_day = recent * DAY_SECONDS / span if recent else 0.0

    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    per_day = bytes_per_job * jobs_per_day
    hot_window = per_day * hot_days
    growth = max(0.0, hot_window - int(hot) * bytes_per_job)
    return Headroom(
        used_bytes=used, max_bytes=limit, policy=_text(info.get("maxmemory_policy", "")),
        jobs_working=int(working), jobs_hot=int(hot), bytes_per_job=bytes_per_job, sampled=len(copy_sizes),
        jobs_per_day=jobs_per_day, rate_basis_hours=span / 3600, hot_days=hot_days, hot_window_bytes=hot_window,
        days_left=max(0, limit - used) / per_day if limit > 0 and per_day > 0 else None,
        fits=limit == 0 or used + growth <= FULL_FRACTION * limit,
    )


def waiting_to_settle(store: JobStore) -> int:
    """Finished jobs still in their working form: those the archive pass has not settled yet, whether they are
    not quiet yet (BOXCUT_SETTLE_SECONDS, the watch after termination, failed targets kept for the hot window) or
    the pass is behind (the archive does not answer, nothing runs the periodic tasks)."""
    pipe = store.redis.pipeline(transaction=False)
    for state in sorted(FINAL_STATES):
        pipe.zcard(f"{store.prefix}jobs:state:{state.value}")
    return sum(int(n) for n in pipe.execute())


def size(n: float) -> str:
    """Bytes for a person: `512 B`, `1.5 KiB`, `95.3 MiB`, `1.0 GiB` (1 GiB is Redis's `1gb`)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _days(days: float) -> str:
    return f"{days:,.1f} days" if days < 10 else f"{days:,.0f} days"


def _idempotency_keys(client: redis.Redis, prefix: str, most: int) -> list[bytes | str]:
    """Up to `most` idempotency keys, from at most SCAN_ROUNDS rounds of a SCAN (bounded, never KEYS)."""
    found: list[bytes | str] = []
    cursor: Any = 0
    for _ in range(SCAN_ROUNDS if most > 0 else 0):
        cursor, keys = client.scan(cursor, match=f"{_glob_escaped(prefix)}idem:*", count=SCAN_COUNT)
        found.extend(keys)
        if len(found) >= most or int(cursor) == 0:
            break
    return found[:most]


def _glob_escaped(text: str) -> str:
    """`text` with the characters SCAN's MATCH reads as a pattern escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _size_or_none(value: object) -> int | None:
    """A MEMORY USAGE answer: its bytes, or None for a key gone meanwhile or a refused command (an error)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
