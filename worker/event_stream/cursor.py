"""Where the event-stream reader is in Box's stream, and what it has seen, kept in Redis for every worker.

    P events:stream   hash   position, saved_at, started_at, last_read_at, last_shield_alert_at, restarted_at,
                             restart_why, last_problem, last_problem_at, events_read
    P events:lock     string the reader that holds the stream now (worker/locks.py)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class StreamStatus:
    """What `boxcut doctor` and the metrics say about the reader; times are epoch seconds."""

    position: str | None
    saved_at: float | None
    started_at: float | None
    last_read_at: float | None
    last_shield_alert_at: float | None
    restarted_at: float | None
    restart_why: str | None
    last_problem: str | None
    last_problem_at: float | None
    events_read: int

    def shield_quiet_seconds(self, now: float) -> float | None:
        """How long no SHIELD_ALERT has come through the stream (since reading began, when none ever has)."""
        since = self.last_shield_alert_at or self.started_at
        return None if since is None else max(0.0, now - since)


class StreamCursor:
    """The reader's position in the stream, saved only once the events before it are handled."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.key = f"{key_prefix}events:stream"
        self.lock_key = f"{key_prefix}events:lock"
        self._clock = clock

    def position(self) -> str | None:
        value = self.redis.hget(self.key, "position")
        return _text(value) if value is not None else None

    def age_seconds(self) -> float | None:
        """How long ago the kept position was saved (Box keeps the stream about two weeks)."""
        saved = self.redis.hget(self.key, "saved_at")
        return None if saved is None else self._clock() - float(saved)

    def save(self, position: str, *, events: int) -> None:
        """Keep `position`: every event before it has been handled."""
        now = self._clock()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key, mapping={"position": position, "saved_at": now, "last_read_at": now})
        pipe.hsetnx(self.key, "started_at", now)
        if events:
            pipe.hincrby(self.key, "events_read", events)
        pipe.execute()

    def restart(self, position: str, *, why: str) -> None:
        """Keep `position` (Box's `now`), noting that the stream was started again there and why."""
        now = self._clock()
        self.save(position, events=0)
        self.redis.hset(self.key, mapping={"restarted_at": now, "restart_why": why})

    def note_shield_alert(self) -> None:
        self.redis.hset(self.key, "last_shield_alert_at", self._clock())

    def note_problem(self, problem: str) -> None:
        """What stopped the last pass (Box refusing, a 429 pause), for doctor; cleared by the next good page."""
        self.redis.hset(self.key, mapping={"last_problem": problem, "last_problem_at": self._clock()})

    def clear_problem(self) -> None:
        self.redis.hdel(self.key, "last_problem", "last_problem_at")

    def status(self) -> StreamStatus:
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(self.key).items()}

        def seconds(name: str) -> float | None:
            return float(raw[name]) if raw.get(name) else None

        return StreamStatus(
            position=raw.get("position"), saved_at=seconds("saved_at"), started_at=seconds("started_at"),
            last_read_at=seconds("last_read_at"), last_shield_alert_at=seconds("last_shield_alert_at"),
            restarted_at=seconds("restarted_at"), restart_why=raw.get("restart_why"),
            last_problem=raw.get("last_problem"), last_problem_at=seconds("last_problem_at"),
            events_read=int(raw.get("events_read") or 0),
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
