"""The per-process runtime: Redis client, HTTP session, Box client, job store, built once after the fork."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import redis
import requests

from config import Settings
from config.celery import max_countdown
from worker.box.auth import token_source_for
from worker.box.client import BoxClient
from worker.box.fingerprint import box_fingerprint
from worker.box.rate_limit import RateLimiter
from worker.connections import redis_client
from worker.jobs.brake import Brake
from worker.jobs.history import history_of
from worker.jobs.send_queue import Budget, SendQueue
from worker.jobs.store import JobStore
from worker.locks import RedisLock
from worker.run.context import KickSender, RunContext, no_kick
from worker.run.directory_cache import DirectoryCache
from worker.run.flights import Flights
from worker.run.heartbeat import Heartbeat
from worker.run.policy import Policy


def box_client(settings: Settings, client: redis.Redis, session: requests.Session) -> BoxClient:
    """A Box client sharing its token cache and rate limit with every worker through Redis."""
    limiter = RateLimiter(client, key_prefix=settings.key_prefix, per_minute=settings.rate_limit_per_minute)
    tokens = token_source_for(settings=settings, redis=client, session=session)
    return BoxClient(session=session, settings=settings, tokens=tokens, limiter=limiter)


class ServiceAccount:
    """The id of the user boxcut's token acts as (GET /users/me): asked of Box once, shared by every process
    through Redis for a day, then kept in each process. So a process that starts during a 429 pause (or a Box
    outage) does not wait for Box to learn it."""

    TTL_SECONDS = 86_400
    ASK_SECONDS = 10.0

    def __init__(self, box: BoxClient, client: redis.Redis, *, key: str) -> None:
        self._box = box
        self._redis = client
        self._key = key
        self._id: str | None = None

    def __call__(self) -> str | None:
        if self._id is None:
            self._id = self._shared() or self._ask_box()
        return self._id

    def _shared(self) -> str | None:
        raw = self._redis.get(self._key)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    def _ask_box(self) -> str:
        """Ask Box, one process at a time: processes starting together wait (up to ASK_SECONDS) for the first
        one's answer instead of each spending a call on it."""
        lock = RedisLock(self._redis, f"{self._key}:asking", ttl_ms=int(self.ASK_SECONDS * 1000))
        deadline = time.monotonic() + self.ASK_SECONDS
        while not lock.acquire():
            time.sleep(0.05)
            shared = self._shared()
            if shared is not None:
                return shared
            if time.monotonic() > deadline:
                break
        try:
            user_id = self._box.current_user().id
            self._redis.set(self._key, user_id, ex=self.TTL_SECONDS)
            return user_id
        finally:
            lock.release()


def http_session(max_in_flight: int) -> requests.Session:
    """A session whose connection pool keeps a connection for each call in flight at once (threads), beside the
    lookups and token requests; requests keeps 10 by default."""
    session = requests.Session()
    size = max(10, max_in_flight + 4)
    for scheme in ("https://", "http://"):
        session.mount(scheme, requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size))
    return session


def budget_of(limiter: RateLimiter) -> Budget:
    """The rate limiter as the send queue's take spends it."""
    return Budget(rate_key=limiter.key, pause_key=limiter.pause_key, tight_key=limiter.tight_key,
                  interval_ms=limiter.interval_ms, tolerance_ms=(limiter.burst - 1) * limiter.interval_ms,
                  burst=limiter.burst)


class Runtime:
    """Builds a RunContext on first use in each process (connections and threads must not cross a fork), and
    starts the process's heartbeat.

    `kick_sender` asks a worker process to send from the queue for an endpoint, now or after a countdown (the
    tasks layer gives a Celery task); `on_beat` runs every heartbeat (the tasks layer looks for stranded work)."""

    def __init__(self, settings: Settings, *, kick_sender: KickSender = no_kick,
                 on_beat: Callable[[RunContext], object] = lambda _ctx: None) -> None:
        self.settings = settings
        self.kick_sender = kick_sender
        self.on_beat = on_beat
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._context: RunContext | None = None

    def context(self) -> RunContext:
        with self._lock:
            if self._context is None or self._pid != os.getpid():
                self._context = self._build()
                self._pid = os.getpid()
            return self._context

    def _build(self) -> RunContext:
        settings = self.settings
        client, session = redis_client(settings), http_session(settings.max_in_flight)
        box = box_client(settings, client, session)
        store = JobStore(client, key_prefix=settings.key_prefix, replicas=settings.redis_wait_replicas,
                         watch_seconds=settings.watch_seconds)
        queue = SendQueue(client, key_prefix=settings.key_prefix)
        archive = history_of(settings, store).archive
        heartbeat = Heartbeat(queue, claim_seconds=settings.call_claim_seconds)
        context = RunContext(
            store=store,
            box=box,
            policy=Policy.from_settings(settings),
            batch_size=settings.batch_size,
            run_budget_seconds=settings.run_budget_seconds,
            # Twice a claim: a run whose heartbeat misses a beat or two (a busy process) keeps its job.
            lease_seconds=2 * settings.call_claim_seconds,
            directory=DirectoryCache(client, key_prefix=settings.key_prefix,
                                     ttl_seconds=settings.directory_cache_ttl_seconds),
            directory_min_targets=settings.directory_cache_min_targets,
            service_account_id=ServiceAccount(
                box, client, key=f"{settings.key_prefix}box:service_account:{box_fingerprint(settings)}"),
            send_queue=queue,
            max_in_flight=settings.max_in_flight,
            give_up_after_seconds=settings.give_up_after_seconds,
            claim_seconds=settings.call_claim_seconds,
            budget=budget_of(box.limiter),
            gather_seconds=settings.gather_seconds,
            max_countdown_seconds=max_countdown(settings),
            kick_sender=self.kick_sender,
            brake=Brake.from_settings(client, settings),
            flights=Flights(settings.max_in_flight),
            heartbeat=heartbeat,
            archive=archive,
        )
        heartbeat.on_beat = lambda: self.on_beat(context)
        heartbeat.start()
        return context

