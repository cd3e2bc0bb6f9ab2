"""Access tokens the simulator issued, when each stops working, and their loggable ids."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable

TOKEN_ID_LENGTH = 8


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest of a token; the store keeps only this, never the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id(token: str) -> str:
    """Return a short, stable, non-secret id for a token, safe to log and to key rate limits on."""
    return token_digest(token)[:TOKEN_ID_LENGTH]


class TokenStore:
    """Which tokens are valid until when; a static (developer) token has no expiry of its own."""

    def __init__(self, ttl_seconds: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float | None] = {}

    def issue(self) -> str:
        """Create a new random access token valid for the configured TTL and return it."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[token_digest(token)] = self._clock() + self.ttl_seconds
        return token

    def add_static(self, token: str) -> None:
        """Accept a fixed token (the configured developer token) until expire_all() is called."""
        with self._lock:
            self._expiry[token_digest(token)] = None

    def is_valid(self, token: str) -> bool:
        """Tell whether a presented token was issued here and has not expired."""
        with self._lock:
            digest = token_digest(token)
            if digest not in self._expiry:
                return False
            expires_at = self._expiry[digest]
            return expires_at is None or self._clock() < expires_at

    def expire_all(self) -> int:
        """Expire every token now (developer token included); return how many were still valid."""
        with self._lock:
            now = self._clock()
            live = [d for d, exp in self._expiry.items() if exp is None or now < exp]
            for digest in live:
                self._expiry[digest] = now
            return len(live)
