"""The fleet: the live workers on one key prefix (so on one set of queues) and the Box each of them talks to.

Every worker that takes jobs or sends Box calls keeps a heartbeat under the prefix: its name, its Box API URL and
the fingerprint of its Box and client (worker/box/fingerprint.py). A worker about to start compares itself with the
live ones. One talking to another Box API than theirs (boxsim where they reach the real Box) is refused: it would
take their jobs and run them against the wrong Box. One with the same API but another client (an app being
rotated, say) is logged as an ERROR, at start and whenever such a worker appears. `boxcut doctor` names both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from config import Settings
from worker.box.fingerprint import box_fingerprint

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
# A heartbeat older than this is a worker gone (killed, its host lost): forgotten, never compared with.
LIVE_SECONDS = 60.0


@dataclass(frozen=True)
class Member:
    """One worker as its heartbeat describes it."""

    worker: str
    box_api: str
    fingerprint: str
    seen_at: float = 0.0

    @classmethod
    def of(cls, settings: Settings, worker: str | None = None) -> Member:
        """This process (or `worker`) with the Box these settings name."""
        return cls(worker or f"{socket.gethostname()}:{os.getpid()}", settings.box_api_base_url,
                   box_fingerprint(settings))

    def describe(self) -> str:
        return f"{self.worker} (Box API {self.box_api}, Box and client fingerprint {self.fingerprint})"


@dataclass(frozen=True)
class Differences:
    """The live workers that differ from one: another Box API (`other_api`), or the same API and another client."""

    other_api: list[Member] = field(default_factory=list)
    other_client: list[Member] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.other_api or self.other_client)


def differences(me: Member, members: Iterable[Member]) -> Differences:
    """How the live workers other than `me` differ from it."""
    others = [m for m in members if m.worker != me.worker and m.fingerprint != me.fingerprint]
    return Differences(other_api=[m for m in others if m.box_api != me.box_api],
                       other_client=[m for m in others if m.box_api == me.box_api])


class Fleet:
    """The heartbeats of the workers on one key prefix, in one Redis hash (worker name → what it talks to)."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.key = f"{key_prefix}workers:box"
        self._clock = clock

    def beat(self, member: Member) -> None:
        """Say `member` is alive now."""
        self.redis.hset(self.key, member.worker, json.dumps(
            {"box_api": member.box_api, "fingerprint": member.fingerprint, "seen_at": self._clock()}))

    def leave(self, worker: str) -> None:
        """Forget a worker that stops."""
        self.redis.hdel(self.key, worker)

    def live(self) -> list[Member]:
        """The workers whose heartbeat is recent, by name; older entries are dropped."""
        now, members, gone = self._clock(), [], []
        raw: dict[Any, Any] = self.redis.hgetall(self.key)  # type: ignore[assignment]
        for name, value in raw.items():
            member = _member(name, value)
            if member is None or now - member.seen_at > LIVE_SECONDS:
                gone.append(name)
            else:
                members.append(member)
        if gone:
            self.redis.hdel(self.key, *gone)
        return sorted(members, key=lambda m: m.worker)


def _member(name: Any, value: Any) -> Member | None:
    try:
        data = json.loads(value)
        return Member(name.decode() if isinstance(name, bytes) else str(name), str(data["box_api"]),
                      str(data["fingerprint"]), float(data["seen_at"]))
    except (ValueError, KeyError, TypeError):
        return None  # not ours to read: dropped like a stale one


def refusal(me: Member, found: Differences) -> str | None:
    """Why a worker may not start beside the live ones (they talk to another Box API), or None."""
    if not found.other_api:
        return None
    others = "; ".join(m.describe() for m in found.other_api)
    return (f"this worker talks to the Box API at {me.box_api}, but live workers on the same queues talk to "
            f"another: {others}. It would take their jobs and run them against the wrong Box. Use a key prefix of "
            "its own (BOXCUT_KEY_PREFIX), or stop those workers first (forgotten "
            f"{LIVE_SECONDS:.0f} s after their last heartbeat)")


def warn_other_clients(me: Member, found: Differences) -> None:
    """An ERROR line for each live worker with the same Box API but another client (or auth, or enterprise)."""
    for other in found.other_client:
        log.error("a live worker on the same queues uses another Box client than this one (%s): %s; jobs run by "
                  "either go to Box with different credentials", me.fingerprint, other.describe())


class Heartbeat:
    """A daemon thread that keeps a worker's heartbeat fresh and logs an ERROR for each worker talking to another
    Box that appears later (two starting at once see nothing of each other at start)."""

    def __init__(self, fleet: Fleet, me: Member, *, every: float = HEARTBEAT_SECONDS,
                 told: Iterable[str] = ()) -> None:
        self.fleet, self.me, self.every = fleet, me, every
        self._stop = threading.Event()
        self._told = set(told)  # workers already logged about
        self._thread = threading.Thread(target=self._run, name="boxcut-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and leave the fleet (so a restart with new settings is not compared with this one)."""
        self._stop.set()
        with contextlib.suppress(redis.RedisError):  # forgotten anyway once its heartbeat is LIVE_SECONDS old
            self.fleet.leave(self.me.worker)

    def beat_once(self) -> None:
        """Beat, and log what differs that was not logged before."""
        self.fleet.beat(self.me)
        found = differences(self.me, self.fleet.live())
        new = Differences([m for m in found.other_api if m.worker not in self._told],
                          [m for m in found.other_client if m.worker not in self._told])
        for other in new.other_api:
            log.error("a live worker on the same queues talks to another Box API than this one (%s): %s; each may "
                      "run the other's jobs against the wrong Box", self.me.box_api, other.describe())
        warn_other_clients(self.me, new)
        self._told.update(m.worker for m in [*new.other_api, *new.other_client])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except redis.RedisError as error:
                log.debug("worker heartbeat not written: %s", type(error).__name__)  # Redis down: said elsewhere
            self._stop.wait(self.every)


class OtherBox(Exception):
    """A worker may not start: live workers on its queues talk to another Box API (the message says which)."""


def join(settings: Settings, client: redis.Redis) -> Heartbeat:
    """Check this worker against the live ones on its prefix and start its heartbeat. Raises OtherBox when they
    talk to another Box API; logs an ERROR for another client. Redis down: checked by the heartbeat once it is up."""
    me, fleet = Member.of(settings), Fleet(client, key_prefix=settings.key_prefix)
    try:
        found = differences(me, fleet.live())
    except redis.RedisError as error:
        log.warning("cannot compare this worker's Box with the other workers' (%s): the heartbeat will, once Redis "
                    "answers", type(error).__name__)
        found = Differences()
    why = refusal(me, found)
    if why is not None:
        raise OtherBox(why)
    warn_other_clients(me, found)
    return Heartbeat(fleet, me, told=[m.worker for m in found.other_client]).start()
