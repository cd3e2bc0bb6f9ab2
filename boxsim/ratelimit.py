"""Per-token request rate limiting over a sliding 60-second window, like Box's per-user limit."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class RateLimiter:
    """Admits at most `per_minute` requests per key in any 60 s window; 0 turns limiting off."""

    def __init__(self, per_minute: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}
        self.per_minute = per_minute

    def set_limit(self, per_minute: int) -> None:
        """Change the limit (0 = off) and forget past requests so the new limit starts fresh."""
        if per_minute < 0:
            raise ValueError("per_minute must be 0 (off) or positive")
        with self._lock:
            self.per_minute = per_minute
            self._seen.clear()

    def admit(self, key: str) -> int | None:
        """Count a request for `key` if under the limit and return None; else return retry-after seconds.

        Refused requests are not counted, so a client that waits out retry-after gets through.
        """
        with self._lock:
            if self.per_minute <= 0:
                return None
            now = self._clock()
            window = self._seen.setdefault(key, deque())
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if len(window) < self.per_minute:
                window.append(now)
                return None
            return max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
