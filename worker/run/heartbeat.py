"""The heartbeat: while a worker process lives, it keeps what it holds (its calls' claims, its jobs' leases).

Claims and leases are short (BOXCUT_CALL_CLAIM_SECONDS), so that when a worker dies (SIGKILL, a lost host) what it
held is taken over within seconds, not after the longest a call or a run could take. A daemon thread in each
process renews them every third of a claim, and does nothing else, so no slow step delays a renewal; a process
that stops (or hangs so that its thread cannot run) stops renewing, and its claims run out. A lease the thread
could not renew (it ran out, and may be another run's now) is marked lost, and its run stops at its next step.
A second thread calls `on_beat` as often (the tasks layer looks there for work that a dead worker stranded).
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


class Held:
    """A lease the heartbeat renews; `lost` once a renewal found it was no longer held."""

    def __init__(self, renew: Callable[[], bool]) -> None:
        self.renew = renew
        self.lost = False


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
        self._calls: dict[str, tuple[str, str]] = {}  # token -> (endpoint, call id) it holds
        self._leases: dict[int, Held] = {}
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def interval(self) -> float:
        return self.claim_seconds / 3

    def new_token(self) -> str:
        """A token for one take: the holder of the call it takes, in this process and no other."""
        return f"{self._prefix}:{next(self._numbers)}"

    @contextmanager
    def holding_call(self, endpoint: str, call_id: str, token: str) -> Iterator[None]:
        """Renew the call's claim, held by `token`, while the block runs."""
        with self._lock:
            self._calls[token] = (endpoint, call_id)
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(token, None)

    @contextmanager
    def holding_lease(self, renew: Callable[[], bool]) -> Iterator[Held]:
        """Call `renew` (a job's lease) every beat while the block runs; the block may look at `lost`."""
        held = Held(renew)
        with self._lock:
            self._leases[id(held)] = held
        try:
            yield held
        finally:
            with self._lock:
                self._leases.pop(id(held), None)

    def start(self) -> None:
        """Beat on daemon threads from now on (once per process)."""
        if not self._threads:
            self._threads = [threading.Thread(target=self._every_interval, args=(step,), name=name, daemon=True)
                             for step, name in ((self.renew, "boxcut-heartbeat"), (self.on_beat, "boxcut-rescue"))]
            for thread in self._threads:
                thread.start()

    def renew(self) -> None:
        """One round: renew every claim and lease held (a lease found lost is marked so)."""
        with self._lock:
            calls, leases = list(self._calls.items()), list(self._leases.values())
        until_ms = int((self._clock() + self.claim_seconds) * 1000)
        by_endpoint: dict[str, list[tuple[str, str]]] = {}
        for token, (endpoint, call_id) in calls:
            by_endpoint.setdefault(endpoint, []).append((call_id, token))
        for endpoint, held in by_endpoint.items():
            self.queue.renew(endpoint, held, until_ms=until_ms)
        for lease in leases:
            if not lease.renew():
                lease.lost = True
                log.error("heartbeat: a job's lease ran out before it was renewed; its run stops at its next step")

    def _every_interval(self, step: Callable[[], object]) -> None:
        while not self._stopped.wait(self.interval):
            try:
                step()
            except Exception as error:
                log.warning("heartbeat: %s: %s", type(error).__name__, error)
