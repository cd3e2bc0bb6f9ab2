"""What every part of the job store stands on: the Redis client and key prefix, the key layout (the package's
docstring lists it), writes guarded on a job's working record, writes that wait for the replicas, and the
codecs every part writes with."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Self

import redis

from config import Settings
from worker.errors import JobNotFound
from worker.transactions import GuardedWrite, GuardFailed

log = logging.getLogger(__name__)


# How long a write waits for its replicas (JobStore.replicas) before it stands on the primary alone. A replica on
# the same network acknowledges in about a millisecond; this bounds the wait while one is down or far behind.
REPLICA_WAIT_MS = 1000
REPLICA_RETRY_SECONDS = 10


_JOB_ID = re.compile(r"j-[0-9a-f]{16}")


class StoreBase:
    """The connection, the keys and the guards the store's parts share."""

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
        # Whether a job that is in neither of Redis's forms is in the archive (set where one is configured): a
        # claim of an alert's key naming such a job is a repeat, not an orphan (worker/jobs/submit.py).
        self.archived: Callable[[str], bool] = lambda _job_id: False

    @classmethod
    def from_settings(cls, redis_client: redis.Redis, settings: Settings) -> Self:
        """The store as settings configure it (BOXCUT_KEY_PREFIX, BOXCUT_REDIS_WAIT_REPLICAS, the watch after
        termination): every process builds it so."""
        return cls(redis_client, key_prefix=settings.key_prefix, replicas=settings.redis_wait_replicas,
                   watch_seconds=settings.watch_seconds)

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

    @property
    def _watch_key(self) -> str:
        return f"{self.prefix}watch"

    @property
    def _active_after_key(self) -> str:
        return f"{self.prefix}jobs:active_after"

    @property
    def _running_key(self) -> str:
        return f"{self.prefix}jobs:running"

    @property
    def _settle_wait_key(self) -> str:
        return f"{self.prefix}jobs:settle_wait"

    def _attempts_key(self, call_id: str) -> str:
        return f"{self._call_key(call_id)}:sent"

    @staticmethod
    def new_job_id() -> str:
        """A short random job id, safe to paste into a shell."""
        return "j-" + secrets.token_hex(8)

    @staticmethod
    def is_job_id(text: str) -> bool:
        """Whether `text` has a job id's shape (anything else, `j-…:targets` say, names no job)."""
        return _JOB_ID.fullmatch(text) is not None

    def live(self, job_id: str) -> bool:
        """Whether the job is in its working form (not settled)."""
        return bool(self.redis.exists(self._job_key(job_id)))

    def _any_exists(self, job_ids: Iterable[str]) -> bool:
        """Whether any of the jobs is in Redis, working or settled."""
        keys = [k for j in job_ids for k in (self._job_key(j), self._settled_key(j))]
        return bool(keys) and int(self.redis.exists(*keys)) > 0

    def _while_working(self, job_id: str) -> GuardedWrite:
        """A guarded write that applies only while the job's working record is there."""
        return GuardedWrite().hash_field_is(self._job_key(job_id), "job_id", job_id)

    def _apply_while_working(self, write: GuardedWrite, job_id: str) -> None:
        try:
            write.apply(self.redis)
        except GuardFailed:
            raise JobNotFound(job_id) from None

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


def epoch_of(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def to_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
