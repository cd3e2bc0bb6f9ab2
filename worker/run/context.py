"""What a run needs, built once per worker process and handed in: the `RunContext`, and the seams it names (the
Box calls a run makes, the way to ask another process to send).

Its own module, below both the runner (worker/run/runner.py) and the sender (worker/run/sender.py), so each
takes it from here and neither imports the other for it. worker/runtime.py builds it from settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from config import defaults
from worker.archive.store import Archive
from worker.box.answers import BoxUser, CallResult
from worker.jobs.brake import Brake
from worker.jobs.send_queue import Budget, SendQueue
from worker.jobs.store import JobStore
from worker.run.directory_cache import DirectoryCache
from worker.run.flights import Flights
from worker.run.heartbeat import Heartbeat
from worker.run.policy import Policy
from worker.run.resolver import DirectoryLookups


class Terminator(Protocol):
    """The Box client calls that end sessions."""

    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False
                        ) -> CallResult: ...

    def terminate_groups(self, group_ids: Sequence[str], *, prior_attempts: int = 0,
                         before_send: Callable[[], object] | None = None, slot_taken: bool = False
                         ) -> CallResult: ...


class KickSender(Protocol):
    """Ask a worker process to send from the queue for an endpoint, now or after `countdown` seconds (a Celery
    task; nothing in unit tests)."""

    def __call__(self, endpoint: str, countdown: float = 0.0) -> None: ...


def no_kick(endpoint: str, countdown: float = 0.0) -> None:
    """No other process to ask (unit tests)."""


class BoxCalls(DirectoryLookups, Terminator, Protocol):
    """Everything the runner asks of Box."""

    def all_users(self) -> Iterator[BoxUser]: ...

    def count_users(self) -> int: ...


    def group_members(self, group_id: str) -> tuple[int, list[BoxUser]]: ...


@dataclass
class RunContext:
    """What a run needs, built once per worker process and handed in."""

    store: JobStore
    box: BoxCalls
    policy: Policy
    batch_size: int
    run_budget_seconds: float
    lease_seconds: float = 60.0  # how long a job's lease lasts unless the heartbeat renews it
    clock: Callable[[], float] = field(default=time.monotonic)
    directory: DirectoryCache | None = None
    directory_min_targets: int = 200
    service_account_id: Callable[[], str | None] = field(default=lambda: None)
    send_queue: SendQueue | None = None  # the store's own when not given
    max_in_flight: int = defaults.MAX_IN_FLIGHT
    give_up_after_seconds: float = defaults.GIVE_UP_AFTER_SECONDS
    claim_seconds: float = defaults.CALL_CLAIM_SECONDS
    # The shared rate limit, spent by the send queue's take one slot a call; None: no limit (unit tests).
    budget: Budget | None = None
    # How long a partial batch may gather while calls are scarce (BOXCUT_GATHER_SECONDS).
    gather_seconds: float = defaults.GATHER_SECONDS
    # The longest countdown a scheduled sender may have (config.celery_settings.max_countdown).
    max_countdown_seconds: float = defaults.MAX_COUNTDOWN_SECONDS
    sleep: Callable[[float], None] = field(default=time.sleep)
    wall_clock: Callable[[], float] = field(default=time.time)
    kick_sender: KickSender = field(default=no_kick)
    # The brake across jobs (worker/jobs/brake.py); None: no brake.
    brake: Brake | None = None
    # Where finished jobs settle (worker/archive); None: nothing is archived (unit tests).
    archive: Archive | None = None
    # This process's calls in flight at once, and the heartbeat that keeps its claims and leases (built here
    # when not given: one flight, and a heartbeat not started, in unit tests).
    flights: Flights = field(default_factory=lambda: Flights(1))
    heartbeat: Heartbeat | None = None

    def __post_init__(self) -> None:
        if self.send_queue is None:
            self.send_queue = SendQueue(self.store.redis, key_prefix=self.store.prefix)
        if self.heartbeat is None:
            self.heartbeat = Heartbeat(self.send_queue, claim_seconds=self.claim_seconds)

    @property
    def queue(self) -> SendQueue:
        assert self.send_queue is not None  # set in __post_init__
        return self.send_queue

    @property
    def beat(self) -> Heartbeat:
        assert self.heartbeat is not None  # set in __post_init__
        return self.heartbeat

    @property
    def claim_ms(self) -> int:
        return int(self.claim_seconds * 1000)

    def now_ms(self) -> int:
        return int(self.wall_clock() * 1000)
