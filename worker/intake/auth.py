"""Who may call the intake: senders (bearer token or HMAC signature) and operators (bearer token).

Every comparison is constant-time and every list holds several values at once, so a secret can be rotated by
adding the new one, moving senders over, then removing the old one. Credentials are never logged; a caller is
named by the name its credential was given (`alice:…` in the list: `operator:alice`), else by the credential's
position (`token#2`), which is enough to tell rotations apart.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from config import Settings, defaults
from config.credentials import Credential
from worker.errors import AuthFailed
from worker.signing import SIGNATURE_HEADER, SIGNATURE_VERSION, TIMESTAMP_HEADER, signature

__all__ = ["SIGNATURE_HEADER", "SIGNATURE_VERSION", "TIMESTAMP_HEADER", "Authenticator", "Caller", "SignedDelivery",
           "bearer_token", "signature"]


@dataclass(frozen=True)
class SignedDelivery:
    """A request whose signature was verified: the signature as boxcut computed it (not the header's spelling)
    and the timestamp it covers: the intake de-duplicates a signed request on what the signature covers."""

    signature: str
    timestamp: int


@dataclass(frozen=True)
class Caller:
    """Who made an authenticated request, without the credential itself; `signed` for a signed request."""

    role: str
    credential: str  # the credential's name (BOXCUT_OPERATOR_TOKENS=alice:…), else `token#N` / `hmac#N`
    signed: SignedDelivery | None = None

    @property
    def label(self) -> str:
        """How the audit names the caller: `operator:alice`, `operator:token#1`."""
        return f"{self.role}:{self.credential}"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer` header, or None."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _match(candidate: str, credentials: tuple[Credential, ...]) -> str | None:
    """The label (name, or `token#N`) of the credential equal to `candidate`, comparing against every one
    (constant time), or None."""
    found = None
    for position, credential in enumerate(credentials, start=1):
        if credential.secret.matches(candidate) and found is None:
            found = credential.label("token", position)
    return found


@dataclass(frozen=True)
class Authenticator:
    """Checks sender and operator credentials against the settings."""

    settings: Settings
    clock: Callable[[], float] = time.time

    def sender(self, headers: Mapping[str, str], body: bytes, *, query_token: str | None, source: str) -> Caller:
        """The sender of an alert: a bearer token, a valid HMAC signature, or (where enabled) `?token=`."""
        token = bearer_token(headers)
        if token is None and query_token is not None:
            if source not in self.settings.query_token_sources:
                raise AuthFailed(f"?token= is not enabled for {source} (BOXCUT_QUERY_TOKEN_SOURCES)")
            token = query_token
        if token is not None:
            label = _match(token, self.settings.intake_tokens)
            if label is None:
                raise AuthFailed(self._wrong_token_message(token))
            return Caller("sender", label)
        if SIGNATURE_HEADER in headers or TIMESTAMP_HEADER in headers:
            return self._signed(headers, body)
        raise AuthFailed("missing credentials: send Authorization: Bearer <token> or a signed request")

    def has_sender_headers(self, headers: Mapping[str, str], query_token: str | None) -> bool:
        """Whether the request carries anything that could be a sender credential (checked before the body)."""
        return bool(bearer_token(headers) or query_token or SIGNATURE_HEADER in headers or TIMESTAMP_HEADER in headers)

    def operator(self, headers: Mapping[str, str]) -> Caller:
        """An operator: a bearer token from BOXCUT_OPERATOR_TOKENS. A sender's token gets 403, not access."""
        token = bearer_token(headers)
        if token is None:
            raise AuthFailed("missing credentials: send Authorization: Bearer <operator token>")
        label = _match(token, self.settings.operator_tokens)
        if label is not None:
            return Caller("operator", label)
        if _match(token, self.settings.intake_tokens) is not None:
            raise AuthFailed("an intake token may only post alerts; the operator API needs an operator token", 403)
        raise AuthFailed("invalid operator token")

    def _signed(self, headers: Mapping[str, str], body: bytes) -> Caller:
        timestamp, sent = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
        if not timestamp or not sent:
            raise AuthFailed(f"a signed request needs both {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise AuthFailed(f"{TIMESTAMP_HEADER} must be unix seconds (digits)")
        skew = abs(self.clock() - int(timestamp))
        if skew > defaults.HMAC_TOLERANCE_SECONDS:
            raise AuthFailed(f"{TIMESTAMP_HEADER} is {skew:.0f} s off; at most {defaults.HMAC_TOLERANCE_SECONDS} s")
        found: tuple[str, str] | None = None
        for position, credential in enumerate(self.settings.intake_hmac_secrets, start=1):
            expected = signature(credential.secret.reveal(), timestamp, body)
            if hmac.compare_digest(expected.encode(), sent.strip().encode()) and found is None:
                found = credential.label("hmac", position), expected
        if found is None:
            raise AuthFailed("signature does not match the body")
        label, verified = found
        return Caller("sender", label, SignedDelivery(verified.removeprefix(SIGNATURE_VERSION), int(timestamp)))

    def _wrong_token_message(self, token: str) -> str:
        if _match(token, self.settings.operator_tokens) is not None:
            return "an operator token cannot post alerts; use an intake token"
        return "invalid intake token"
