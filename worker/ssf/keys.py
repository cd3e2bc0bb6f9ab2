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
    keys: dict[str, Mapping[str, Any]]
    fetched_at: float


Fetch = Callable[[str], object]


def fetch_jwks(uri: str) -> object:
    """GET a JWKS: with timeouts, following no redirect, reading at most SSF_JWKS_MAX_BYTES."""
    with requests.get(uri, timeout=defaults.SSF_JWKS_TIMEOUT_SECONDS, allow_redirects=False, stream=True,
                      headers={"Accept": "application/json, application/jwk-set+json"}) as response:
        if response.status_code != 200:  # a redirect too: the configured URI, and no other, holds the keys
            raise ValueError(f"the JWKS URI answered {response.status_code}")
        body = response.raw.read(defaults.SSF_JWKS_MAX_BYTES + 1, decode_content=True)
    if len(body) > defaults.SSF_JWKS_MAX_BYTES:
        raise ValueError(f"the JWKS is larger than {defaults.SSF_JWKS_MAX_BYTES} bytes")
    return json.loads(body)


class TransmitterKeys:
    """The keys of every configured transmitter; one instance per process, shared by the intake's threads."""

    def __init__(self, *, cache_seconds: float = defaults.SSF_JWKS_CACHE_SECONDS,
                 refetch_seconds: float = defaults.SSF_JWKS_REFETCH_SECONDS, fetch: Fetch = fetch_jwks,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache_seconds, self.refetch_seconds = cache_seconds, refetch_seconds
        self._fetch, self._clock = fetch, clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def key(self, transmitter: Transmitter, kid: str) -> Mapping[str, Any] | None:
        """The JWK named `kid`, or None when the transmitter has no such key. Raises KeysUnavailable when its
        `jwks_uri` cannot be read and nothing is cached."""
        if transmitter.jwks_uri is None:
            return {k["kid"]: k for k in transmitter.jwks}.get(kid)
        with self._lock:  # one fetch at a time per process; a fetch is bounded by its timeouts
            cached = self._cache.get(transmitter.jwks_uri)
            now = self._clock()
            if cached is None or self._due(cached, kid, now):
                cached = self._refresh(transmitter.jwks_uri, cached, now)
            return cached.keys.get(kid)

    def _due(self, cached: _Cached, kid: str, now: float) -> bool:
        """Fetch again: the cache is old, or it lacks `kid` (a key rotated in) and was not fetched just now."""
        age = now - cached.fetched_at
        return age >= self.cache_seconds or (kid not in cached.keys and age >= self.refetch_seconds)

    def _refresh(self, uri: str, cached: _Cached | None, now: float) -> _Cached:
        try:
            keys = check_jwks(self._fetch(uri), "the JWKS")
        except Exception as error:  # requests' and json's errors, or a JWKS check_jwks refuses
            log.warning("could not fetch the JWKS of a Shared Signals transmitter: %s", type(error).__name__)
            if cached is None:
                raise KeysUnavailable(f"the transmitter's JWKS could not be fetched ({type(error).__name__})") from None
            cached.fetched_at = now  # keep the keys we had; try again after the cache time, not at every SET
            return cached
        fresh = _Cached({k["kid"]: k for k in keys}, now)
        self._cache[uri] = fresh
        return fresh
