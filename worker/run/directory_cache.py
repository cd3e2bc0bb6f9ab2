"""A short-lived copy of the enterprise's users in Redis, shared by every worker, for resolving large jobs.

Resolving 5,000 logins one lookup at a time costs 5,000 calls against a limit of about 1,000 a minute; paging
the directory costs one call per 1,000 users. Keys (under the settings' key prefix `P`):

    P directory:logins   hash    lower-cased login -> JSON list of users with that login (several: ambiguous)
    P directory:ids      hash    user id -> JSON user
    P directory:built    string  when the copy was made; present only while a complete copy exists
    P directory:size     string  how many users the enterprise had at the last count (kept a week)
    P directory:lock     string  held by the one worker building the copy

A copy is built under new names and renamed into place, so a reader never sees half of one. Everything expires
after the TTL; a login the copy lacks is looked up directly, so a user created since is still found. Where the
enterprise is small enough, a periodic task (`refresh`) keeps a copy fresh, so alerts resolve without a call.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import redis

from worker.box.answers import BoxUser
from worker.identity import login_key
from worker.jobs.model import utc_now
from worker.locks import RedisLock

log = logging.getLogger(__name__)

# Users written to Redis per round trip while building.
_CHUNK = 1000

# Users per page of Box's directory listing: what a copy costs, in calls.
PAGE_USERS = 1000

_SIZE_TTL_SECONDS = 7 * 86400


class DirectoryCache:
    """Builds, reads and expires the shared copy of the directory."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, ttl_seconds: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.redis = client
        self.ttl = ttl_seconds
        self.logins_key = f"{key_prefix}directory:logins"
        self.ids_key = f"{key_prefix}directory:ids"
        self.built_key = f"{key_prefix}directory:built"
        self.lock_key = f"{key_prefix}directory:lock"
        self.size_key = f"{key_prefix}directory:size"
        self._sleep = sleep

    def ready(self) -> bool:
        """Whether a complete copy exists now."""
        return bool(self.redis.exists(self.built_key))

    def ensure(self, users: Callable[[], Iterable[BoxUser]], *, wait_seconds: float = 120.0) -> bool:
        """Make sure a copy exists, building it from `users()` unless another worker is; False when none could
        be had in time (the caller then looks users up one by one)."""
        deadline = time.monotonic() + wait_seconds
        while not self.ready():
            lock = RedisLock(self.redis, self.lock_key, ttl_ms=int(wait_seconds * 1000))
            if lock.acquire():
                try:
                    self._build(users())
                finally:
                    lock.release()
                return True
            if time.monotonic() > deadline:
                return False
            self._sleep(0.2)
        return True

    def built_at(self) -> str | None:
        """When the copy in place was made (ISO UTC), or None when there is none."""
        raw = self.redis.get(self.built_key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def age_seconds(self) -> float | None:
        built = self.built_at()
        if built is None:
            return None
        return max(0.0, time.time() - datetime.fromisoformat(built.replace("Z", "+00:00")).timestamp())

    def known_size(self) -> int | None:
        """The enterprise's user count at the last copy or count, if one was made this week."""
        raw = self.redis.get(self.size_key)
        return int(raw) if raw is not None else None

    def note_size(self, users: int) -> None:
        self.redis.set(self.size_key, users, ex=_SIZE_TTL_SECONDS)

    def pages(self) -> int | None:
        """What a copy costs, in calls, when the enterprise's size is known."""
        size = self.known_size()
        return None if size is None else max(1, math.ceil(size / PAGE_USERS))

    def refresh(self, users: Callable[[], Iterable[BoxUser]]) -> bool:
        """Build a new copy now (replacing the one in place) unless another worker is building one."""
        lock = RedisLock(self.redis, self.lock_key, ttl_ms=120_000)
        if not lock.acquire():
            return False
        try:
            self._build(users())
        finally:
            lock.release()
        return True

    def snapshot(self, *, logins: Iterable[str], ids: Iterable[str]) -> DirectorySnapshot:
        """The copy's entries for these logins and ids, read in a few round trips (a 10,000-user job would
        otherwise make 10,000), to resolve from in memory."""
        by_login = self._read_many(self.logins_key, {login_key(login) for login in logins})
        by_id = self._read_many(self.ids_key, {user_id.strip() for user_id in ids})
        return DirectorySnapshot(
            logins={key: [_user(entry) for entry in json.loads(raw)] for key, raw in by_login.items()},
            ids={key: _user(json.loads(raw)) for key, raw in by_id.items()},
        )

    def _read_many(self, key: str, fields: set[str]) -> dict[str, Any]:
        wanted, found = sorted(fields), {}
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start:start + _CHUNK]
            found.update({name: raw for name, raw in zip(part, self.redis.hmget(key, part), strict=True) if raw})
        return found

    def by_login(self, login: str) -> list[BoxUser]:
        raw = self.redis.hget(self.logins_key, login_key(login))
        return [_user(entry) for entry in json.loads(raw)] if raw else []

    def by_id(self, user_id: str) -> BoxUser | None:
        raw = self.redis.hget(self.ids_key, user_id.strip())
        return _user(json.loads(raw)) if raw else None

    def _build(self, users: Iterable[BoxUser]) -> None:
        suffix = secrets.token_hex(4)
        logins_tmp, ids_tmp = f"{self.logins_key}:{suffix}", f"{self.ids_key}:{suffix}"
        by_login: dict[str, list[dict[str, Any]]] = {}
        count, chunk = 0, dict[Any, Any]()
        for user in users:
            entry = asdict(user)
            by_login.setdefault(login_key(user.login), []).append(entry)
            chunk[user.id] = json.dumps(entry)
            count += 1
            if len(chunk) >= _CHUNK:
                self._write_part(ids_tmp, chunk)
                chunk = {}
        if chunk:
            self._write_part(ids_tmp, chunk)
        logins = list(by_login.items())
        for start in range(0, len(logins), _CHUNK):
            part: dict[Any, Any] = {login: json.dumps(entries) for login, entries in logins[start:start + _CHUNK]}
            self._write_part(logins_tmp, part)
        self._publish(logins_tmp, ids_tmp, count)

    def _write_part(self, key: str, values: dict[Any, Any]) -> None:
        # A build cut short (a 429 that sends the run away, a crash) must not leave its half copy behind.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=values)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def _publish(self, logins_tmp: str, ids_tmp: str, count: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        if count:
            pipe.rename(logins_tmp, self.logins_key)
            pipe.rename(ids_tmp, self.ids_key)
            pipe.expire(self.logins_key, self.ttl)
            pipe.expire(self.ids_key, self.ttl)
        pipe.set(self.built_key, utc_now(), ex=self.ttl)
        pipe.set(self.size_key, count, ex=_SIZE_TTL_SECONDS)
        pipe.execute()
        log.info("copied the Box directory (%d users) for %d s", count, self.ttl)


class DirectorySnapshot:
    """Part of the directory copy, read at once: what one job's resolution needs."""

    def __init__(self, *, logins: dict[str, list[BoxUser]], ids: dict[str, BoxUser]) -> None:
        self._logins = logins
        self._ids = ids

    def by_login(self, login: str) -> list[BoxUser]:
        return list(self._logins.get(login_key(login), []))

    def by_id(self, user_id: str) -> BoxUser | None:
        return self._ids.get(user_id.strip())


def _user(entry: dict[str, Any]) -> BoxUser:
    return BoxUser(**entry)
