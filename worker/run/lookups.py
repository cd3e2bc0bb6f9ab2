"""Shared lookups: a login named by many jobs at once is looked up in Box once, for all of them.

When no directory copy is in place, each alert's job looks its user up. In a storm several alerts name the same
person within seconds; the first job to ask Box holds a short lock, and the others wait for its answer, kept in
Redis for a few seconds. Only the answer to a login lookup is shared (the exact-match filtering is the client's,
so every job sees the same exact matches); ids, groups and errors go to Box as before. Keys (prefix `P`):

    P lookup:login:{login}        string  the users Box answered for that login (JSON), for ANSWER_SECONDS
    P lookup:login:{login}:lock   string  held by the one worker asking Box
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict

import redis

from worker.box.answers import BoxGroup, BoxUser
from worker.identity import login_key
from worker.locks import RedisLock
from worker.run.resolver import DirectoryLookups

# How long an answer serves other jobs: long enough for a burst of alerts, short enough that a user created or
# renamed a moment ago is not missed for long.
ANSWER_SECONDS = 10
# How long a job waits for another's lookup before asking Box itself.
WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.02


class SharedLookups:
    """DirectoryLookups whose login lookups are shared across jobs and workers through Redis."""

    def __init__(self, box: DirectoryLookups, client: redis.Redis, *, key_prefix: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._box = box
        self._redis = client
        self._prefix = f"{key_prefix}lookup:login:"
        self._sleep = sleep

    def find_users_by_login(self, login: str) -> list[BoxUser]:
        key = self._prefix + login_key(login)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            known = self._redis.get(key)
            if known is not None:
                return [BoxUser(**entry) for entry in json.loads(known)]
            lock = RedisLock(self._redis, f"{key}:lock", ttl_ms=int(WAIT_SECONDS * 1000))
            if lock.acquire():
                try:
                    users = self._box.find_users_by_login(login)
                    self._redis.set(key, json.dumps([asdict(u) for u in users]), ex=ANSWER_SECONDS)
                    return users
                finally:
                    lock.release()
            if time.monotonic() > deadline:  # the asker is slow or gone: ask Box ourselves
                return self._box.find_users_by_login(login)
            self._sleep(_POLL_SECONDS)

    def get_user(self, user_id: str) -> BoxUser | None:
        return self._box.get_user(user_id)

    def find_groups_by_name(self, name: str) -> list[BoxGroup]:
        return self._box.find_groups_by_name(name)

    def get_group(self, group_id: str) -> BoxGroup | None:
        return self._box.get_group(group_id)
