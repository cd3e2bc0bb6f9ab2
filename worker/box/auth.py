"""Box access tokens: where they come from, and a cache in Redis that every worker process shares.

One refresh serves every process: the process that wins a Redis lock asks Box for a token, the others poll the
cache until it appears. The cache is keyed by the Box and client the token is for (worker/box/fingerprint.py), so
workers talking to two Boxes (boxsim beside the real one) on one Redis never hand each other's tokens out. A 401
drops the cached token only if it is still the one that was refused, so many processes hit by the same 401 cause
one refresh. Tokens, secrets, assertions and keys are never logged.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import redis
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from config import defaults
from config.secret import Secret
from config.settings import BoxAuthMode, JWTAppConfig, Settings
from worker.box.fingerprint import box_fingerprint
from worker.errors import BoxAuthError, BoxTransportError
from worker.locks import CompareAndDelete, RedisLock

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Box refuses an assertion that expires more than 60 s ahead; 45 s leaves room for clock skew.
JWT_LIFETIME_SECONDS = 45
# A token cached for less than this is not worth the Redis round trip; Box's tokens live about an hour.
MIN_TOKEN_TTL_SECONDS = 5.0


class TokenSource(Protocol):
    """Where the Box client gets its bearer token, and tells that Box refused one."""

    def get(self) -> str:
        """A token to send now."""
        ...

    def invalidate(self, token: str) -> None:
        """Box answered 401 to `token`: do not hand it out again."""
        ...


@dataclass(frozen=True)
class FetchedToken:
    """An access token as Box's token endpoint issued it."""

    access_token: str
    expires_in: float = 3600.0

    def __repr__(self) -> str:
        return f"FetchedToken(access_token='***', expires_in={self.expires_in})"


class TokenFetcher(Protocol):
    """Asks Box's token endpoint for a new access token."""

    def fetch(self) -> FetchedToken:
        """One token request; raises BoxAuthError when refused, BoxTransportError when Box does not answer."""
        ...


class DeveloperTokenSource:
    """A developer token from settings: it cannot be refreshed, so once refused, `get()` fails clearly."""

    def __init__(self, token: Secret) -> None:
        self._token = token
        self._refused = False

    def get(self) -> str:
        """The developer token, unless Box has refused it."""
        if self._refused:
            raise BoxAuthError(
                "Box refused the developer token (it expires after 60 minutes): "
                "generate a new one in the Box developer console and set BOX_DEVELOPER_TOKEN"
            )
        return self._token.reveal()

    def invalidate(self, token: str) -> None:
        """Remember that Box refused the token; there is no way to get another."""
        if self._token.matches(token):
            self._refused = True

    def __repr__(self) -> str:
        return "DeveloperTokenSource(token='***')"


class CachedTokenSource:
    """A token cached in Redis for every worker process, refreshed by one process at a time under a lock."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        key_prefix: str,
        fetcher: TokenFetcher,
        scope: str = "",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock_seconds: float = 45.0,
        wait_seconds: float = 45.0,
        poll_seconds: float = 0.1,
    ) -> None:
        # `scope`: which Box and client the token is for; without it, a token one Box issued went to another.
        self.key = f"{key_prefix}box:token" + (f":{scope}" if scope else "")
        self.lock_key = f"{self.key}:lock"
        self._redis = redis
        self._fetcher = fetcher
        self._clock = clock
        self._sleep = sleep
        # The lock outlives one token request (its connect + read timeouts), so only one is made at a time;
        # if its holder dies, the lock expires and the next process takes over.
        self._lock_ms = int(lock_seconds * 1000)
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        self._compare_and_delete = CompareAndDelete(redis)

    def get(self) -> str:
        """The cached token, or a new one fetched by this process or another."""
        return self._cached() or self._refresh()

    def invalidate(self, token: str) -> None:
        """Drop the cached token if it is still `token` (a newer one, fetched by another process, stays)."""
        self._compare_and_delete(self.key, token)

    def _cached(self) -> str | None:
        raw: Any = self._redis.get(self.key)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def _refresh(self) -> str:
        lock = RedisLock(self._redis, self.lock_key, ttl_ms=self._lock_ms)
        deadline = self._clock() + self._wait_seconds
        while True:
            if lock.acquire():
                try:
                    return self._cached() or self._fetch_and_store()
                finally:
                    lock.release()
            self._sleep(self._poll_seconds)
            token = self._cached()
            if token:
                return token
            if self._clock() >= deadline:
                raise BoxTransportError(
                    f"no Box access token after {self._wait_seconds:.0f} s waiting on another worker to fetch"
                )

    def _fetch_and_store(self) -> str:
        fetched = self._fetcher.fetch()
        ttl = max(fetched.expires_in - defaults.TOKEN_REFRESH_MARGIN_SECONDS, MIN_TOKEN_TTL_SECONDS)
        self._redis.set(self.key, fetched.access_token, px=int(ttl * 1000))
        log.info("fetched a new Box access token, cached for %.0f s", ttl)
        return fetched.access_token

    def __repr__(self) -> str:
        return f"CachedTokenSource(key={self.key!r})"


class ClientCredentialsFetcher:
    """Client Credentials Grant: the app's id and secret buy a token for the enterprise's service account."""

    def __init__(
        self,
        *,
        session: requests.Session,
        oauth_url: str,
        client_id: str,
        client_secret: Secret,
        enterprise_id: str,
        timeout: tuple[float, float],
    ) -> None:
        self._session = session
        self._oauth_url = oauth_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._enterprise_id = enterprise_id
        self._timeout = timeout

    def fetch(self) -> FetchedToken:
        """Ask Box for a token with the client id and secret."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret.reveal(),
            "box_subject_type": "enterprise",
            "box_subject_id": self._enterprise_id,
        }
        return request_token(
            session=self._session, url=self._oauth_url, form=form, timeout=self._timeout,
            secrets_to_hide=(self._client_secret,),
        )

    def __repr__(self) -> str:
        return f"ClientCredentialsFetcher(client_id={self._client_id!r}, client_secret='***')"


class JWTFetcher:
    """JWT server authentication: an assertion signed with the app's private key buys a token."""

    def __init__(
        self,
        *,
        session: requests.Session,
        oauth_url: str,
        app: JWTAppConfig,
        timeout: tuple[float, float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._oauth_url = oauth_url
        self._app = app
        self._timeout = timeout
        self._clock = clock

    def fetch(self) -> FetchedToken:
        """Sign a fresh assertion and exchange it for a token."""
        form = {
            "grant_type": JWT_BEARER_GRANT,
            "assertion": self.assertion(),
            "client_id": self._app.client_id,
            "client_secret": self._app.client_secret.reveal(),
        }
        return request_token(
            session=self._session, url=self._oauth_url, form=form, timeout=self._timeout,
            secrets_to_hide=(self._app.client_secret, self._app.private_key, self._app.passphrase),
        )

    def assertion(self) -> str:
        """The signed RS256 assertion (secret: it buys a token until it expires)."""
        claims = {
            "iss": self._app.client_id,
            "sub": self._app.enterprise_id,
            "box_sub_type": "enterprise",
            "aud": self._oauth_url,
            "jti": secrets.token_urlsafe(32),
            "exp": int(self._clock()) + JWT_LIFETIME_SECONDS,
        }
        return jwt.encode(claims, _private_key(self._app), algorithm="RS256",
                          headers={"kid": self._app.public_key_id})

    def __repr__(self) -> str:
        return f"JWTFetcher(client_id={self._app.client_id!r}, public_key_id={self._app.public_key_id!r})"


def _private_key(app: JWTAppConfig) -> Any:
    """The app's private key, decrypted with its passphrase; errors name the problem, never the key."""
    passphrase = app.passphrase.reveal().encode() or None
    try:
        return load_pem_private_key(app.private_key.reveal().encode(), password=passphrase)
    except (ValueError, TypeError):
        # Raised without the cause: cryptography's message is safe, but the chain is not ours to vouch for.
        raise BoxAuthError(
            "cannot load the JWT app config's private key (wrong passphrase, or not a PEM private key)"
        ) from None


def request_token(
    *,
    session: requests.Session,
    url: str,
    form: dict[str, str],
    timeout: tuple[float, float],
    secrets_to_hide: tuple[Secret, ...] = (),
) -> FetchedToken:
    """Post a form to Box's token endpoint; return the token, or raise what went wrong (without secrets)."""
    try:
        response = session.post(url, data=form, timeout=timeout, allow_redirects=False)
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise BoxTransportError(f"no answer from Box's token endpoint {url}: {type(exc).__name__}") from None
    if response.status_code == 200:
        return _token_from(response)
    if response.status_code == 429 or response.status_code >= 500:
        raise BoxTransportError(f"Box's token endpoint {url} answered {response.status_code}; try again")
    error, description = _oauth_error(response)
    description = _hide(description, secrets_to_hide)
    raise BoxAuthError(f"Box refused the token request ({response.status_code} {error}): {description}")


def _token_from(response: requests.Response) -> FetchedToken:
    try:
        body = response.json()
        token, expires_in = str(body["access_token"]), float(body.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BoxAuthError("Box's token endpoint answered 200 without an access token") from None
    return FetchedToken(access_token=token, expires_in=expires_in)


def _oauth_error(response: requests.Response) -> tuple[str, str]:
    """Box's `error` and `error_description`, tolerating a body that is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return "unknown_error", "(no description)"
    if not isinstance(body, dict):
        return "unknown_error", "(no description)"
    return str(body.get("error") or "unknown_error"), str(body.get("error_description") or "(no description)")


def _hide(text: str, hidden: tuple[Secret, ...]) -> str:
    """`text` with any secret value in it replaced by ***: Box's words are not ours to trust with them."""
    for secret in hidden:
        value = secret.reveal()
        if value:
            text = text.replace(value, "***")
    return text


def token_source_for(*, settings: Settings, redis: redis.Redis, session: requests.Session) -> TokenSource:
    """The token source that the configured credentials call for (see `Settings.box_auth_mode`)."""
    if settings.box_auth_mode is BoxAuthMode.DEVELOPER_TOKEN and settings.box_developer_token is not None:
        return DeveloperTokenSource(settings.box_developer_token)
    # The lock must outlive one token request, which the HTTP timeouts bound.
    lock_seconds = settings.http_connect_timeout + settings.http_read_timeout + 5
    return CachedTokenSource(
        redis=redis, key_prefix=settings.key_prefix, fetcher=token_fetcher_for(settings, session),
        scope=box_fingerprint(settings), lock_seconds=lock_seconds, wait_seconds=lock_seconds,
    )


def token_fetcher_for(settings: Settings, session: requests.Session) -> TokenFetcher:
    """The fetcher for the configured credentials: it asks Box for a new token each time (no cache)."""
    timeout = (settings.http_connect_timeout, settings.http_read_timeout)
    mode, url = settings.box_auth_mode, settings.box_oauth_url
    if mode is BoxAuthMode.JWT and settings.box_jwt is not None:
        return JWTFetcher(session=session, oauth_url=url, app=settings.box_jwt, timeout=timeout)
    if mode is BoxAuthMode.CLIENT_CREDENTIALS and settings.box_client_secret and settings.box_enterprise_id:
        return ClientCredentialsFetcher(
            session=session, oauth_url=url, client_id=settings.box_client_id or "",
            client_secret=settings.box_client_secret, enterprise_id=settings.box_enterprise_id,
            timeout=timeout,
        )
    raise BoxAuthError(
        "no Box credentials: set BOX_CLIENT_ID, BOX_CLIENT_SECRET and BOX_ENTERPRISE_ID, "
        "or BOX_JWT_CONFIG_FILE, or BOX_DEVELOPER_TOKEN"
    )
