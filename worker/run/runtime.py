"""The per-process runtime: Redis client, HTTP session, Box client, job store, built once after the fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import redis
import requests

from config import Settings
from worker.box.auth import token_source_for
from worker.box.client import BoxClient
from worker.box.rate_limit import RateLimiter
from worker.connections import redis_client
from worker.jobs.brake import Brake
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore
from worker.run.directory_cache import DirectoryCache
from worker.run.policy import Policy
from worker.run.runner import RunContext


def box_client(settings: Settings, client: redis.Redis, session: requests.Session) -> BoxClient:
    """A Box client sharing its token cache and rate limit with every worker through Redis."""
    limiter = RateLimiter(client, key_prefix=settings.key_prefix, per_minute=settings.rate_limit_per_minute)
    tokens = token_source_for(settings=settings, redis=client, session=session)
    return BoxClient(session=session, settings=settings, tokens=tokens, limiter=limiter)


class ServiceAccount:
    """The id of the user boxcut's token acts as (GET /users/me), asked once per process and then kept."""

    def __init__(self, box: BoxClient) -> None:
        self._box = box
        self._id: str | None = None

    def __call__(self) -> str | None:
        if self._id is None:
            self._id = self._box.current_user().id
        return self._id


class Runtime:
    """Builds a RunContext on first use in each process (connections must not cross a fork).

    `kick_sender` asks another process to send from the queue for an endpoint (the tasks layer gives a Celery
    task's `delay`)."""

    def __init__(self, settings: Settings, *, kick_sender: Callable[[str], None] = lambda _endpoint: None) -> None:
        self.settings = settings
        self.kick_sender = kick_sender
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
        client, session = redis_client(settings), requests.Session()
        box = box_client(settings, client, session)
        store = JobStore(client, key_prefix=settings.key_prefix, replicas=settings.redis_wait_replicas,
                         watch_seconds=settings.watch_seconds)
        return RunContext(
            store=store,
            box=box,
            policy=Policy.from_settings(settings),
            batch_size=settings.batch_size,
            run_budget_seconds=settings.run_budget_seconds,
            lease_seconds=settings.task_time_limits[1],
            directory=DirectoryCache(client, key_prefix=settings.key_prefix,
                                     ttl_seconds=settings.directory_cache_ttl_seconds),
            directory_min_targets=settings.directory_cache_min_targets,
            service_account_id=ServiceAccount(box),
            send_queue=SendQueue(client, key_prefix=settings.key_prefix),
            max_in_flight=settings.max_in_flight,
            give_up_after_seconds=settings.give_up_after_seconds,
            claim_seconds=settings.call_claim_seconds,
            rate_wait=box.limiter.wait_seconds,
            max_rate_wait=settings.retry_budget_seconds,
            kick_sender=self.kick_sender,
            brake=Brake.from_settings(client, settings),
        )
