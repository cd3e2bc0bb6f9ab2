"""The Box rate limit shared by every worker process, and the global pause that a 429 sets.

Both live in Redis so that all workers on all hosts draw from one budget: Box counts requests per user, and
every worker uses the same service account. The limit is a GCRA (generic cell rate algorithm): one key holds
the "theoretical arrival time" (TAT) of the next request, which may go when `TAT - burst_tolerance <= now`.

Time comes from the client (passed as ARGV), not from Redis `TIME`: the injected clock then drives both the
limit and the pause in tests, and the pause deadline written by `pause()` is on the same clock as the one the
script compares it with. Workers run on NTP-synced hosts; a skew of a few milliseconds only shifts a slot by
that much, which the margin below Box's real limit absorbs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis

from worker import metrics
from worker.errors import RetryLater

log = logging.getLogger(__name__)

# No pause lasts longer than a day, whatever a `retry-after` said: a stuck pause would stop every worker.
MAX_PAUSE_SECONDS = 86_400.0

# After a 429 pause, Box's budget is known to be scarce for this long: calls gather into full batches meanwhile.
TIGHT_AFTER_PAUSE_SECONDS = 60.0

# Take one slot now, or say how long until one is free (and do not take it).
#   KEYS[1]  the GCRA key: the theoretical arrival time of the next request, in ms
#   KEYS[2]  the pause key: the time, in ms, before which no worker may call Box
#   ARGV[1]  now, in ms (the client's clock)
#   ARGV[2]  emission interval, in ms: 60,000 / requests per minute
#   ARGV[3]  burst tolerance, in ms: how far ahead of schedule a request may go
# Returns {1, 0} when a slot was taken, {0, wait_ms} when the caller must wait wait_ms first.
_ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local pause_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause_until > now then
  return {0, pause_until - now}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local allow_at = tat - tolerance
if allow_at > now then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
"""

# Pause every worker until a deadline, keeping the later of the stored and the new deadline; and mark the budget
# tight until a while after it.
#   KEYS[1]  the pause key
#   KEYS[2]  the tight key: until when (ms) calls gather into full batches
#   ARGV[1]  the new deadline, in ms
#   ARGV[2]  now, in ms (to set the keys' expiry)
#   ARGV[3]  how long after the pause the budget stays tight, in ms
# Returns the deadline in force afterwards, in ms.
_PAUSE_LUA = """
local until_ms = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local tight = until_ms + tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') < tight then
  redis.call('SET', KEYS[2], tight, 'PX', math.ceil(tight - now) + 1000)
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= until_ms then
  return current
end
redis.call('SET', KEYS[1], until_ms, 'PX', math.ceil(until_ms - now) + 1000)
return until_ms
"""


class RateLimiter:
    """A limit of `per_minute` Box calls shared through Redis, plus a pause that stops every worker."""

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        key_prefix: str,
        per_minute: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        # A burst of a tenth of the minute's budget keeps any 60 s window under per_minute * 1.1, which the
        # default (900 of Box's ~1,000) leaves room for.
        self.burst = burst if burst is not None else max(1, per_minute // 10)
        self.interval_ms = 60_000 / per_minute
        self.key = f"{key_prefix}box:ratelimit"
        self.pause_key = f"{key_prefix}box:pause_until"
        self.tight_key = f"{key_prefix}box:tight_until"
        self._redis = redis_client
        self._clock = clock
        self._sleep = sleep
        self._acquire_script = redis_client.register_script(_ACQUIRE_LUA)
        self._pause_script = redis_client.register_script(_PAUSE_LUA)

    def acquire(self, *, max_wait: float) -> float:
        """Wait until no pause is in force and a slot is free, take the slot, and return the seconds waited.

        Raises `RetryLater` without taking a slot when the total wait would exceed `max_wait`.
        """
        started = self._clock()
        while True:
            wait = self._try_take()
            waited = self._clock() - started
            if wait is None:
                metrics.waited_for_rate(waited)
                return waited
            if waited + wait > max_wait:
                raise RetryLater(wait, "Box rate limit: no free slot or a pause in force")
            self._sleep(wait)

    def wait_seconds(self) -> float:
        """Seconds until a slot would be free (0.0 now), without taking one: a sender waits this long before it
        takes its batch, so targets that arrive meanwhile join the call."""
        now_ms = self._now_ms()
        tat, pause_until = self._redis.mget([self.key, self.pause_key])
        if pause_until is not None and float(pause_until) > now_ms:
            return (float(pause_until) - now_ms) / 1000
        allow_at = float(tat or 0) - (self.burst - 1) * self.interval_ms
        return max(0.0, (allow_at - now_ms) / 1000)

    def pause(self, seconds: float) -> None:
        """Stop every worker from calling Box for `seconds` (a later pause already set is kept)."""
        now_ms = self._now_ms()
        seconds = MAX_PAUSE_SECONDS if math.isnan(seconds) else min(max(seconds, 0.0), MAX_PAUSE_SECONDS)
        until_ms = now_ms + math.ceil(seconds * 1000)
        self._pause_script(keys=[self.pause_key, self.tight_key],
                           args=[until_ms, now_ms, int(TIGHT_AFTER_PAUSE_SECONDS * 1000)])
        metrics.paused(seconds)
        log.warning("Box calls paused for %.1f s for every worker", seconds)


    def pause_remaining(self) -> float:
        """Seconds left of the pause in force, 0.0 when none is."""
        raw = self._redis.get(self.pause_key)
        if raw is None:
            return 0.0
        return max(0.0, (float(raw) - self._now_ms()) / 1000)

    def _try_take(self) -> float | None:
        """Take a slot and return None, or return the seconds until one may be taken."""
        tolerance_ms = (self.burst - 1) * self.interval_ms
        taken, wait_ms = self._acquire_script(
            keys=[self.key, self.pause_key], args=[self._now_ms(), self.interval_ms, tolerance_ms]
        )
        if int(taken) == 1:
            return None
        return max(int(wait_ms), 1) / 1000

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
