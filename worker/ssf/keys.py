"""A transmitter's signing keys by `kid`: from the transmitters file, or fetched from its configured `jwks_uri`
with timeouts, a wall-clock deadline, a size limit and a cache. Never from a token: no `jku`, `x5u` or embedded
`jwk` is followed."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from config import defaults
from config.ssf_transmitters import Transmitter, check_jwks
from worker.errors import BoxcutError

log = logging.getLogger(__name__)


class KeysUnavailable(BoxcutError):
    """The transmitter's JWKS could not be fetched (and none is cached)."""


@dataclass
class _Cached:
    keys: dict[str, Mapping[str, Any]]  # empty while no fetch has ever worked
    tried_at: float  # the last fetch, whether it worked or not
    ok_at: float | None  # the last fetch that worked


Fetch = Callable[[str], object]


def fetch_jwks(uri: str) -> object:
    """GET a JWKS within SSF_JWKS_DEADLINE_SECONDS of wall-clock time, all of it (resolving, connecting, the
    headers, the body), following no redirect, reading at most SSF_JWKS_MAX_BYTES."""
    # An event loop of its own, closed without waiting for its executor: a resolver stuck past the deadline is
    # left behind, not waited for (asyncio.run and anyio.run would join it).
    loop = asyncio.new_event_loop()
    try:
        body = loop.run_until_complete(_read_within_deadline(uri, defaults.SSF_JWKS_DEADLINE_SECONDS))
    finally:
        loop.close()
    return json.loads(body)


async def _read_within_deadline(uri: str, deadline: float) -> bytes:
    """The JWKS's bytes, or ValueError once `deadline` seconds have passed: the cancel scope stops whatever
    is under way (a connect, a trickle of header or body bytes) and closes its socket."""
    try:
        with anyio.fail_after(deadline):
            return await _read(uri)
    except TimeoutError:
        raise ValueError(f"the JWKS took longer than {deadline:g} s to read") from None


async def _read(uri: str) -> bytes:
    connect, read = defaults.SSF_JWKS_TIMEOUT_SECONDS
    timeout = httpx.Timeout(read, connect=connect)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client, client.stream(
            "GET", uri, headers={"Accept": "application/json, application/jwk-set+json"}) as response:
        if response.status_code != 200:  # a redirect too: the configured URI, and no other, holds the keys
            raise ValueError(f"the JWKS URI answered {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():  # decoded, so the limit counts what is parsed
            body += chunk
            if len(body) > defaults.SSF_JWKS_MAX_BYTES:
                raise ValueError(f"the JWKS is larger than {defaults.SSF_JWKS_MAX_BYTES} bytes")
        return bytes(body)


class TransmitterKeys:
    """The keys of every configured transmitter; one instance per process, shared by the intake's threads.

    Each `jwks_uri` has a lock of its own, so one transmitter's slow or failing endpoint delays no other's SETs,
    held only by the request that fetches: a SET arriving meanwhile is answered from the keys still trusted, or
    refused at once, never made to wait.
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
        if self._due(uri, kid):
            self._fetch_or_not(uri, kid)
        return self._usable(uri).keys.get(kid)

    def _fetch_or_not(self, uri: str, kid: str) -> None:
        """Fetch the JWKS at `uri`, unless another request is fetching it: waiting for that would park this
        thread (anyone can send a SET), so this one goes on with the keys at hand, or is refused at once."""
        lock = self._lock_of(uri)
        if not lock.acquire(blocking=False):
            self._meanwhile(uri, kid)
            return
        try:
            if self._due(uri, kid):  # unless the fetch this one just missed was enough
                self._refresh(uri, self._cache.get(uri), self._clock())
        finally:
            lock.release()

    def _meanwhile(self, uri: str, kid: str) -> None:
        """While another request fetches: KeysUnavailable at once unless the keys still trusted hold `kid` (a kid
        they lack may be what that fetch brings)."""
        cached = self._cache.get(uri)
        if cached is None or kid not in cached.keys:
            raise KeysUnavailable("the transmitter's JWKS is being fetched for another SET; send this one again")
        self._usable(uri)  # and still trusted

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

    def _due(self, uri: str, kid: str) -> bool:
        """Fetch: never fetched, or the last try is old, or the keys lack `kid` (a key rotated in, or a failed
        fetch) and the last try was not just now."""
        cached = self._cache.get(uri)
        if cached is None:
            return True
        since = self._clock() - cached.tried_at
        return since >= self.cache_seconds or (kid not in cached.keys and since >= self.refetch_seconds)

    def _refresh(self, uri: str, cached: _Cached | None, now: float) -> None:
        try:
            keys = check_jwks(self._fetch(uri), "the JWKS")
        except Exception as error:  # httpx's and json's errors, a deadline passed, or a JWKS check_jwks refuses
            log.warning("could not fetch the JWKS of a Shared Signals transmitter: %s", type(error).__name__)
            self._cache[uri] = _Cached(cached.keys if cached else {}, now, cached.ok_at if cached else None)
            return
        self._cache[uri] = _Cached({k["kid"]: k for k in keys}, now, now)
