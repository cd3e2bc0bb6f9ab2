"""The console's session: who signed in (in a signed, expiring cookie), the CSRF token of each form, and the
one-line message a page shows after an action.

The cookie is Starlette's `SessionMiddleware` (itsdangerous-signed JSON, `boxcut_console`, path `/console`,
HttpOnly, SameSite=Lax, Secure unless the console is served over plain http on loopback). Lax and not Strict: the
identity provider's redirect back to `/console/auth/callback` is a cross-site navigation, and a Strict cookie would
not come with it, losing the sign-in's state. A session lasts BOXCUT_CONSOLE_SESSION_MINUTES from sign-in however
busy it is: the cookie's signature is renewed on every answer, so the sign-in time inside it is checked too.

Every form that changes something carries the session's CSRF token, compared in constant time; a POST whose
`Origin` is another site's is refused as well. A POST without both is answered 403 and changes nothing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from config import Settings

log = logging.getLogger(__name__)

COOKIE = "boxcut_console"
PATH = "/console"
CSRF_FIELD = "csrf"
VIEWER, APPROVER = "viewer", "approver"
ROLES = (VIEWER, APPROVER)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Person:
    """Who is signed in: a name for the audit, a role, how they signed in (`oidc`, `token`) and when."""

    name: str
    role: str
    via: str
    signed_in_at: float

    @property
    def actor(self) -> str:
        """How the audit names them: `console:Alice Approver`, `console:alice` (an operator token's name)."""
        return f"console:{self.name}"

    @property
    def may_act(self) -> bool:
        """Whether they may approve, cancel and release (an approver), or only look (a viewer)."""
        return self.role == APPROVER

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "via": self.via, "at": self.signed_in_at}

    @classmethod
    def from_dict(cls, data: Any) -> Person | None:
        try:
            person = cls(str(data["name"]), str(data["role"]), str(data["via"]), float(data["at"]))
        except (KeyError, TypeError, ValueError):
            return None
        return person if person.role in ROLES and person.name else None


def session_secret(settings: Settings) -> str:
    """The key the session cookie is signed with: BOXCUT_CONSOLE_SESSION_SECRET, or one made for this process
    (sessions then end when it stops, and another intake process cannot read them)."""
    if settings.console_session_secret is not None:
        return settings.console_session_secret.reveal()
    log.warning("BOXCUT_CONSOLE_SESSION_SECRET is not set: console sessions are signed with a key made for this "
                "process, and end when it stops; set it when the intake runs more than one process")
    return secrets.token_urlsafe(32)


def secure_cookie(settings: Settings) -> bool:
    """Whether the cookie is marked Secure: always, unless BOXCUT_PUBLIC_URL says the console is served over plain
    http on this machine (a developer's loopback)."""
    if settings.public_url is None:
        return True
    parts = urlsplit(settings.public_url)
    return not (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS)


def person(request: Request, *, lifetime_seconds: float, now: float | None = None) -> Person | None:
    """Who is signed in, or None (never signed in, signed out, or signed in longer ago than the lifetime)."""
    found = Person.from_dict(request.session.get("person"))
    if found is None:
        return None
    age = (time.time() if now is None else now) - found.signed_in_at
    if not 0 <= age <= lifetime_seconds:
        request.session.clear()
        return None
    return found


def sign_in(request: Request, who: Person) -> None:
    """Start a session for `who`: whatever the cookie held before (a sign-in's state, an earlier person) goes,
    and the CSRF token is new."""
    request.session.clear()
    request.session["person"] = who.to_dict()
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    request.session.clear()


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made when it has none yet: the sign-in page's form is protected too)."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def csrf_ok(request: Request, sent: str | None) -> bool:
    """Whether a form's token is the session's, compared in constant time."""
    expected = request.session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def origin_ok(request: Request, own_origin: str) -> bool:
    """A POST's `Origin`, when the browser sends one, must be the console's own (`null` is not)."""
    sent = request.headers.get("origin")
    return sent is None or sent.rstrip("/").lower() == own_origin.lower()


def flash(request: Request, kind: str, text: str) -> None:
    """A message for the next page shown: `ok` or `error`."""
    request.session["flash"] = {"kind": kind, "text": text}


def take_flash(request: Request) -> dict[str, str] | None:
    value = request.session.pop("flash", None)
    if isinstance(value, dict) and value.get("kind") in ("ok", "error") and isinstance(value.get("text"), str):
        return {"kind": str(value["kind"]), "text": str(value["text"])}
    return None
