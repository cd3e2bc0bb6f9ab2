"""The heartbeat: while a worker process lives, it keeps what it holds (its calls' claims, its jobs' leases).

Claims and leases are short (BOXCUT_CALL_CLAIM_SECONDS), so that when a worker dies (SIGKILL, a lost host) what it
held is taken over within seconds, not after the longest a call or a run could take. A daemon thread in each
process renews them every third of a claim; a process that stops (or hangs so that its thread cannot run) stops
renewing, and its claims run out. Each round also calls `on_beat` (the tasks layer looks there for work that a
dead worker stranded).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from worker.jobs.send_queue import SendQueue

log = logging.getLogger(__name__)


class Heartbeat:
    """This process's claims and leases, renewed on a thread of its own (started by `start`)."""

    def __init__(self, queue: SendQueue, *, claim_seconds: float, on_beat: Callable[[], object] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        self.claim_seconds = claim_seconds
        self.on_beat = on_beat
        self._clock = clock
        self._prefix = secrets.token_hex(6)
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], str] = {}  # (endpoint, call id) -> the token it is held by
        self._leases: dict[int, Callable[[], bool]] = {}
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def interval(self) -> float:
        return self.claim_seconds / 3

    def new_token(self) -> str:
        """A token for one take: the holder of the call it takes, in this process and no other."""
        return f"{self._prefix}:{next(self._numbers)}"

    @contextmanager
    def holding_call(self, endpoint: str, call_id: str, token: str) -> Iterator[None]:
        """Renew the call's claim while the block runs."""
        with self._lock:
            self._calls[(endpoint, call_id)] = token
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop((endpoint, call_id), None)

    @contextmanager
    def holding_lease(self, renew: Callable[[], bool]) -> Iterator[None]:
        """Call `renew` (a job's lease) every beat while the block runs."""
        key = id(renew)
        with self._lock:
            self._leases[key] = renew
        try:
            yield
        finally:
            with self._lock:
                self._leases.pop(key, None)

    def start(self) -> None:
        """Beat on a daemon thread from now on (once per process)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="boxcut-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def beat(self) -> None:
        """One round: renew every claim and lease held, then `on_beat`."""
        with self._lock:
            calls, leases = dict(self._calls), list(self._leases.values())
        until_ms = int((self._clock() + self.claim_seconds) * 1000)
        by_endpoint: dict[str, list[tuple[str, str]]] = {}
        for (endpoint, call_id), token in calls.items():
            by_endpoint.setdefault(endpoint, []).append((call_id, token))
        for endpoint, held in by_endpoint.items():
            self.queue.renew(endpoint, held, until_ms=until_ms)
        for renew in leases:
            renew()
        self.on_beat()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.beat()
            except Exception as error:
                log.warning("heartbeat: %s: %s", type(error).__name__, error)
