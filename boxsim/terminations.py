"""What the simulated Box accepted for session termination, counted per id (repeats included)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable


class Terminations:
    """Counts of accepted terminate_sessions requests per user id, user login and group id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: Counter[str] = Counter()
        self._logins: Counter[str] = Counter()
        self._groups: Counter[str] = Counter()

    def record_users(self, user_ids: Iterable[str], logins: Iterable[str] = ()) -> None:
        """Count users whose sessions a request asked to end (logins already resolved to ids)."""
        with self._lock:
            self._users.update(user_ids)
            self._logins.update(logins)

    def record_groups(self, group_ids: Iterable[str]) -> None:
        """Count groups whose sessions a request asked to end."""
        with self._lock:
            self._groups.update(group_ids)

    def user_ids(self) -> dict[str, int]:
        """Return how many times each user id was terminated (directly or through a login)."""
        with self._lock:
            return dict(self._users)

    def user_logins(self) -> dict[str, int]:
        """Return how many times each login was named in a user termination."""
        with self._lock:
            return dict(self._logins)

    def group_ids(self) -> dict[str, int]:
        """Return how many times each group id was terminated."""
        with self._lock:
            return dict(self._groups)

    def clear(self) -> None:
        """Forget every recorded termination."""
        with self._lock:
            self._users.clear()
            self._logins.clear()
            self._groups.clear()
