"""A transmitter's signing keys by `kid`: from the transmitters file, or fetched from its configured `jwks_uri`
with timeouts, a size limit and a cache. Never from a token: no `jku`, `x5u` or embedded `jwk` is followed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from config import defaults
from config.ssf_transmitters import Transmitter, check_jwks

log = logging.getLogger(__name__)


class KeysUnavailable(Exception):
    """The transmitter's JWKS could not be fetched (and none is cached)."""


@dataclass
class _Cached:
    keys: dict[str, Mapping[str, Any]]  # empty while no fetch has ever worked
    tried_at: float  # the last fetch, whether it worked or not
    ok_at: float | None  # the last fetch that worked


Fetch = Callable[[str], object]


def fetch_jwks(uri: str) -> object:
    """GET a JWKS: with timeouts and an overall deadline, following no redirect, reading at most
    SSF_JWKS_MAX_BYTES."""
    deadline = time.monotonic() + defaults.SSF_JWKS_DEADLINE_SECONDS
    body = b""
    with requests.get(uri, timeout=defaults.SSF_JWKS_TIMEOUT_SECONDS, allow_redirects=False, stream=True,
                      headers={"Accept": "application/json, application/jwk-set+json"}) as response:
        if response.status_code != 200:  # a redirect too: the configured URI, and no other, holds the keys
            raise ValueError(f"the JWKS URI answered {response.status_code}")
        # What has come, not a full chunk, so a trickle is cut off; decoded, so the limit counts what is parsed.
        while chunk := response.raw.read1(16384, decode_content=True):
            body += chunk
            if len(body) > defaults.SSF_JWKS_MAX_BYTES:
                raise ValueError(f"the JWKS is larger than {defaults.SSF_JWKS_MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise ValueError(f"the JWKS took longer than {defaults.SSF_JWKS_DEADLINE_SECONDS} s to read")
    return json.loads(body)


class TransmitterKeys:
    """The keys of every configured transmitter; one instance per process, shared by the intake's threads.

    Each `jwks_uri` has a lock of its own, so one transmitter's slow or failing endpoint delays no other's SETs.
    A failed fetch is remembered like a good one: unknown kids (anyone can send them) fetch at most once per
    `refetch_seconds`, and while nothing was ever fetched, SETs are refused at once until then. Keys a fetch
    got are used while fetching again fails, for at most `max_stale_seconds`."""

    def __init__(self, *, cache_seconds: float = defaults.SSF_JWKS_CACHE_SECONDS,
                 refetch_seconds: float = defaults.SSF_JWKS_REFETCH_SECONDS,
                 max_stale_seconds: float = defaults.SSF_JWKS_MAX_STALE_SECONDS, fetch: Fetch = fetch_jwks,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache_seconds, self.refetch_seconds = cache_seconds, refetch_seconds
        self.max_stale_seconds = max_stale_seconds
        self._fetch, self._clock = fetch, clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def key(self, transmitter: Transmitter, kid: str) -> Mapping[str, Any] | None:
        """The JWK named `kid`, or None when the transmitter has no such key. Raises KeysUnavailable when its
        `jwks_uri` cannot be read and no keys it gave are at hand."""
        if transmitter.jwks_uri is None:
            return {k["kid"]: k for k in transmitter.jwks}.get(kid)
        uri = transmitter.jwks_uri
        lock = self._lock_of(uri)
        if not lock.acquire(timeout=defaults.SSF_JWKS_WAIT_SECONDS):  # another thread's fetch is taking long
            return self._usable(uri).keys.get(kid)
        try:
            cached = self._cache.get(uri)
            now = self._clock()
            if cached is None or self._due(cached, kid, now):
                self._refresh(uri, cached, now)
            return self._usable(uri).keys.get(kid)
        finally:
            lock.release()

    def _lock_of(self, uri: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(uri, threading.Lock())

    def _usable(self, uri: str) -> _Cached:
        cached = self._cache.get(uri)
        if cached is None or cached.ok_at is None:
            raise KeysUnavailable("the transmitter's JWKS could not be fetched")
        if self._clock() - cached.ok_at > self.max_stale_seconds:
            raise KeysUnavailable("the transmitter's JWKS could not be fetched for "
                                  f"{self.max_stale_seconds:g} s; its old keys are no longer trusted")
        return cached

    def _due(self, cached: _Cached, kid: str, now: float) -> bool:
        """Fetch again: the last try is old, or the keys lack `kid` (a key rotated in, or a failed fetch) and
        the last try was not just now."""
        since = now - cached.tried_at
        return since >= self.cache_seconds or (kid not in cached.keys and since >= self.refetch_seconds)

    def _refresh(self, uri: str, cached: _Cached | None, now: float) -> None:
        try:
            keys = check_jwks(self._fetch(uri), "the JWKS")
        except Exception as error:  # requests' and json's errors, or a JWKS check_jwks refuses
            log.warning("could not fetch the JWKS of a Shared Signals transmitter: %s", type(error).__name__)
            self._cache[uri] = _Cached(cached.keys if cached else {}, now, cached.ok_at if cached else None)
            return
        self._cache[uri] = _Cached({k["kid"]: k for k in keys}, now, now)
