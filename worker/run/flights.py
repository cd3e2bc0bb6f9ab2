"""Flights: the calls one worker process carries at once, each on a thread of its own while Box answers.

A Box call spends most of its time waiting for Box's answer (150 ms and more), so one process keeps several
calls in flight, up to BOXCUT_MAX_IN_FLIGHT, and a single worker process sends at the rate limit. With one
flight (unit tests, or BOXCUT_MAX_IN_FLIGHT=1) a call is carried in the caller's thread, as before.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Flights:
    """The threads of one process that carry calls; `round()` is one drain's share of them."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="boxcut-call") if self.size > 1 else None

    @contextmanager
    def round(self) -> Iterator[Round]:
        """The calls one drain starts: all of them are answered (or failed) when the block ends, and the first
        error any of them raised is raised then."""
        current = Round(self._pool, self.size)
        try:
            yield current
        finally:
            current.join()
        current.raise_first()


class Round:
    """Calls started by one drain, carried inline (no pool) or on the process's threads."""

    def __init__(self, pool: ThreadPoolExecutor | None, size: int) -> None:
        self._pool = pool
        self._size = size
        self._running: set[Future[None]] = set()
        self._errors: list[BaseException] = []

    def start(self, carry: Callable[[], None], *, inline: bool = False) -> None:
        """Carry one call: in this thread without a pool or when asked (`inline`: a lone call, spared the
        hand-over to a thread), else on a thread of the pool."""
        if self._pool is None or inline:
            carry()
            return
        context = contextvars.copy_context()  # the log context (job and task ids) goes with the call
        self._running.add(self._pool.submit(context.run, carry))

    def full(self) -> bool:
        return len(self._running) >= self._size

    def busy(self) -> bool:
        """Calls of this round are still in flight."""
        return bool(self._running)

    def wait_one(self) -> None:
        """Wait until one of the calls in flight is answered."""
        done, self._running = wait(self._running, return_when=FIRST_COMPLETED)
        self._collect(done)

    def join(self) -> None:
        finished = wait(self._running)
        self._running = set()
        self._collect(finished.done)

    def raise_first(self) -> None:
        if self._errors:
            raise self._errors[0]

    def _collect(self, done: set[Future[None]]) -> None:
        for future in done:
            error = future.exception()
            if error is not None:
                log.warning("a call in flight stopped on %s: %s", type(error).__name__, error)
                self._errors.append(error)
