"""Signing in to the console: with the organisation's OpenID Connect provider, or with an operator token.

**OpenID Connect** is the authorization code flow with PKCE (S256) and a nonce, through Authlib's Starlette
client: the provider's metadata from `<BOXCUT_OIDC_ISSUER>/.well-known/openid-configuration` (fetched at the first
sign-in, not at start), the ID token's signature, issuer, audience, expiry and nonce checked by Authlib. The
person's role comes from one claim (BOXCUT_OIDC_ROLES_CLAIM, `groups` by default; from the ID token, else from
the userinfo endpoint): a value listed in BOXCUT_CONSOLE_APPROVERS makes an approver, else one listed in
BOXCUT_CONSOLE_VIEWERS a viewer; with neither they are refused. Their name for the audit is the ID token's `name`,
else `preferred_username`, `email` or `sub`.

**An operator token** (BOXCUT_OPERATOR_TOKENS, while BOXCUT_CONSOLE_TOKEN_SIGNIN is on) makes an approver, as the
operator API does, named by the token's name (`alice:…` → `alice`; an unnamed one by its place, `token#2`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from config import Settings
from worker.console.session import APPROVER, VIEWER

# Claims that name a person, in the order tried.
NAME_CLAIMS = ("name", "preferred_username", "email", "sub")
# A name longer than this is cut: it goes into audit entries and page titles.
MAX_NAME_CHARS = 200
# How long a call to the provider (metadata, token, keys, userinfo) may take.
PROVIDER_TIMEOUT_SECONDS = 10.0


def claim_values(claims: Mapping[str, Any], claim: str) -> set[str]:
    """The values of a roles claim: a list of strings, or one string (space- or comma-separated, as some
    providers write `roles`). A dotted name reaches into an object (`realm_access.roles`, Keycloak's)."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return {v for v in value.replace(",", " ").split() if v}
    if isinstance(value, list | tuple):
        return {str(v) for v in value if isinstance(v, str | int) and str(v)}
    return set()


def role_for(values: Iterable[str], *, approvers: Iterable[str], viewers: Iterable[str]) -> str | None:
    """`approver` when a value is an approvers' one, else `viewer` when one is a viewers', else None."""
    held = set(values)
    if held & set(approvers):
        return APPROVER
    if held & set(viewers):
        return VIEWER
    return None


def display_name(claims: Mapping[str, Any]) -> str | None:
    """The person's name for the audit: `name`, else `preferred_username`, `email`, `sub` (None when none)."""
    for claim in NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return clean_name(value)
    return None


def clean_name(value: str) -> str:
    """A name as the audit records it: one line, without control characters, at most MAX_NAME_CHARS."""
    text = "".join(c if c.isprintable() else " " for c in value)
    return " ".join(text.split())[:MAX_NAME_CHARS]


def token_name(token: str, settings: Settings) -> str | None:
    """The name of the operator token `token` is (`alice`, `token#2`), comparing against every one in constant
    time, or None."""
    found = None
    for position, credential in enumerate(settings.operator_tokens, start=1):
        if credential.secret.matches(token) and found is None:
            found = credential.label("token", position)
    return found


def token_fingerprint(token: str, key: str) -> str:
    """Which operator token a session was opened with, as the session may carry it: an HMAC under the console's
    key, so the cookie never holds anything a token could be guessed from."""
    return hmac.new(key.encode(), token.encode(), hashlib.sha256).hexdigest()[:32]


def token_still_valid(fingerprint: str, settings: Settings, key: str) -> bool:
    """Whether an operator token in BOXCUT_OPERATOR_TOKENS now has `fingerprint` (one removed or rotated ends the
    sessions opened with it), with token sign-in still on."""
    if not settings.console_token_signin or not fingerprint:
        return False
    found = False
    for credential in settings.operator_tokens:
        found |= hmac.compare_digest(token_fingerprint(credential.secret.reveal(), key), fingerprint)
    return found


def oidc_ident(claims: Mapping[str, Any]) -> str:
    """Who the person is at the provider, as nobody can choose it for themselves: the e-mail address the provider
    verified, else the subject (`sub`)."""
    email = claims.get("email")
    if isinstance(email, str) and email and claims.get("email_verified") is True:
        return clean_name(email)
    return clean_name(str(claims.get("sub") or "unknown"))


def oidc_client(settings: Settings) -> Any:
    """The Authlib client for the configured provider (None when none is): PKCE S256, the scopes `openid profile
    email` and BOXCUT_OIDC_SCOPES."""
    if not settings.oidc_configured or settings.oidc_client_secret is None:
        return None
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    scopes = " ".join(["openid", "profile", "email", *settings.oidc_scopes])
    return oauth.register(
        name="oidc",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.reveal(),
        server_metadata_url=f"{settings.oidc_issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": scopes, "code_challenge_method": "S256", "timeout": PROVIDER_TIMEOUT_SECONDS},
    )
