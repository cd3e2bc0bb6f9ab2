"""What a worker process builds from settings, in one place: the Redis client, HTTP session, Box client, job store
and the rest of the run's context (`Runtime`), the event-stream reader and the notifier; each built once per
process, after the fork (`PerProcess`).

It wires the run (worker/run), the event stream (worker/event_stream) and notifications (worker/notify) together, so it
stands above all three (its own layer in pyproject.toml's import-linter contract); the tasks and the CLI use it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import redis
import requests

from config import Settings, defaults
from config.celery_settings import max_countdown
from worker.box.auth import token_source_for
from worker.box.client import BoxClient
from worker.box.fingerprint import box_fingerprint
from worker.box.rate_limit import RateLimiter
from worker.connections import redis_client
from worker.event_stream.cursor import StreamCursor
from worker.event_stream.reader import EventReader, EventSource
from worker.jobs.brake import Brake
from worker.jobs.history import history_of
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.send_queue import Budget, SendQueue
from worker.jobs.store import JobStore
from worker.jobs.submit import Enqueue
from worker.locks import RedisLock
from worker.notify.delivery import Notifier, Post, http_post
from worker.notify.notice import Notice
from worker.notify.scanner import NotifyScanner
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


_T = TypeVar("_T")


class PerProcess(Generic[_T]):
    """A value built on first use in each process, and built again in a process forked since (a Celery pool's
    child): connections, sessions and threads must not cross a fork."""

    def __init__(self, build: Callable[[], _T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._value: _T | None = None

    def __call__(self) -> _T:
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._value = self._build()
                self._pid = os.getpid()
            return self._value


class Runtime:
    """Builds a RunContext on first use in each process (`PerProcess`), and starts the process's heartbeat.

    `kick_sender` asks a worker process to send from the queue for an endpoint, now or after a countdown (the
    tasks layer gives a Celery task); `on_beat` runs every heartbeat (the tasks layer looks for stranded work)."""

    def __init__(self, settings: Settings, *, kick_sender: KickSender = no_kick,
                 on_beat: Callable[[RunContext], object] = lambda _ctx: None) -> None:
        self.settings = settings
        self.kick_sender = kick_sender
        self.on_beat = on_beat
        self._context = PerProcess(self._build)

    def context(self) -> RunContext:
        """This process's RunContext."""
        return self._context()

    def _build(self) -> RunContext:
        settings = self.settings
        client, session = redis_client(settings), http_session(settings.max_in_flight)
        box = box_client(settings, client, session)
        store = JobStore.from_settings(client, settings)
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


def build_event_reader(ctx: RunContext, settings: Settings, enqueue: Enqueue) -> EventReader:
    """A reader of Box's event stream over the worker's own Box client, store and Redis."""
    client = ctx.store.redis
    return EventReader(
        box=cast(EventSource, ctx.box),  # the runtime's BoxClient, which reads the stream too
        store=ctx.store,
        cursor=StreamCursor(client, key_prefix=settings.key_prefix),
        keys=IdempotencyKeys(client, key_prefix=settings.key_prefix,
                             ttl_seconds=defaults.SHIELD_EVENT_KEY_TTL_SECONDS),
        enqueue=enqueue,
        rules=settings.shield_rules,
        max_position_age_seconds=settings.events_position_max_age_hours * 3600.0,
        # A page's worst case is the in-task retry budget and a read timeout or two; the lock is renewed per page.
        lock_seconds=2 * (settings.retry_budget_seconds + settings.http_read_timeout),
    )


def build_notify_scanner(ctx: RunContext, settings: Settings, enqueue: Callable[[Notice], None]) -> NotifyScanner:
    """The scanner of the audit stream, handing each notice due to `enqueue`."""
    return NotifyScanner(store=ctx.store, urls=settings.notify_urls, enqueue=enqueue)


def build_notifier(ctx: RunContext, settings: Settings, *, bound: Callable[[Post], Post] = lambda post: post
                   ) -> Notifier:
    """The delivery of notifications to the receivers settings name, over an HTTP session of its own; `bound`
    wraps each request (the tasks bound it by the task's time limit)."""
    return Notifier(store=ctx.store, urls=settings.notify_urls, secret=settings.notify_hmac_secret,
                    public_url=settings.public_url, post=bound(http_post(requests.Session())),
                    retry_seconds=settings.notify_retry_seconds, max_attempts=settings.notify_attempts,
                    slack_buttons=bool(settings.slack_approvers))
