"""The console's session: who signed in (in a signed, expiring cookie), the CSRF token of each form, and the
one-line message a page shows after an action.

The cookie is Starlette's `SessionMiddleware` (itsdangerous-signed JSON, `boxcut_console`, path `/console`,
HttpOnly, SameSite=Lax, Secure unless the console is served over plain http on loopback). Lax and not Strict: the
identity provider's redirect back to `/console/auth/callback` is a cross-site navigation, and a Strict cookie would
not come with it, losing the sign-in's state. A session lasts BOXCUT_CONSOLE_SESSION_MINUTES from sign-in however
busy it is: the sign-in time inside the cookie is checked on every request.

A session is also registered in Redis (`console:session:{id}`, expiring with it), and a cookie whose session is not
there is no session: signing out ends it for every copy of the cookie, and so does a revocation. Who it names is
checked again on every request against the settings in force: an operator token removed from
BOXCUT_OPERATOR_TOKENS, token sign-in turned off, or a claim value no longer mapped to the role ends or lowers it.

Every form that changes something carries the session's CSRF token, compared in constant time; a POST whose
`Origin` is another site's is refused as well. A POST without both is answered 403 and changes nothing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass, replace
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
    """Who is signed in: a name, a role, how they signed in (`oidc`, `token`) and when; `ident`, who they are
    where they signed in (the provider's verified e-mail or subject; the token's name), which nobody can choose
    for themselves; `values`, the roles claim's values they signed in with (re-mapped on every request); `sid`,
    the session's id in Redis; `proof`, which operator token opened it."""

    name: str
    role: str
    via: str
    signed_in_at: float
    ident: str = ""
    values: tuple[str, ...] = ()
    sid: str = ""
    proof: str = ""  # a token session: the token's fingerprint (auth.token_fingerprint), checked on every request

    @property
    def actor(self) -> str:
        """How the audit names them: `console:Alice Approver <oidc:alice@example.com>`, `console:alice <token:alice>`:
        the name they go by, and who they are where they signed in (a display name alone is theirs to choose)."""
        return f"console:{self.name} <{self.via}:{self.ident or self.name}>"

    @property
    def may_act(self) -> bool:
        """Whether they may approve, cancel and release (an approver), or only look (a viewer)."""
        return self.role == APPROVER

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "via": self.via, "at": self.signed_in_at,
                "ident": self.ident, "values": list(self.values), "sid": self.sid, "proof": self.proof}

    @classmethod
    def from_dict(cls, data: Any) -> Person | None:
        try:
            person = cls(str(data["name"]), str(data["role"]), str(data["via"]), float(data["at"]),
                         str(data.get("ident") or ""), tuple(str(v) for v in data.get("values") or ()),
                         str(data.get("sid") or ""), str(data.get("proof") or ""))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return person if person.role in ROLES and person.name and person.sid else None


class Sessions:
    """The sessions in force, in Redis: one key each, expiring with the session."""

    def __init__(self, redis_client: Any, *, key_prefix: str) -> None:
        self.redis, self.prefix = redis_client, f"{key_prefix}console:session:"

    def open(self, lifetime_seconds: float) -> str:
        sid = secrets.token_urlsafe(24)
        self.redis.set(self.prefix + sid, "1", ex=max(int(lifetime_seconds), 1))
        return sid

    def live(self, sid: str) -> bool:
        return bool(sid) and bool(self.redis.exists(self.prefix + sid))

    def close(self, sid: str) -> None:
        if sid:
            self.redis.delete(self.prefix + sid)


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


def person(request: Request, *, lifetime_seconds: float, sessions: Sessions, role_now: Any,
           now: float | None = None) -> Person | None:
    """Who is signed in, or None: never signed in, signed out (or the session revoked), signed in longer ago than
    the lifetime, or no longer given any role by `role_now(person)` (the settings in force)."""
    found = Person.from_dict(request.session.get("person"))
    if found is None:
        return None
    age = (time.time() if now is None else now) - found.signed_in_at
    role = role_now(found) if 0 <= age <= lifetime_seconds and sessions.live(found.sid) else None
    if role is None:
        sessions.close(found.sid)
        request.session.clear()
        return None
    return found if role == found.role else replace(found, role=role)


def sign_in(request: Request, who: Person, *, sessions: Sessions, lifetime_seconds: float) -> Person:
    """Start a session for `who`: whatever the cookie held before (a sign-in's state, an earlier person) goes, the
    CSRF token is new, and the session is registered; returns `who` with its session id."""
    request.session.clear()
    who = replace(who, sid=sessions.open(lifetime_seconds))
    request.session["person"] = who.to_dict()
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return who


def sign_out(request: Request, *, sessions: Sessions) -> None:
    """End the session everywhere: its key in Redis goes, so a copy of the cookie is no session either."""
    found = Person.from_dict(request.session.get("person"))
    if found is not None:
        sessions.close(found.sid)
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
    """A POST's `Origin`, when the browser sends one, must be the console's own (`null` is not); a console served
    over plain http on loopback is its own under any loopback name (localhost, 127.0.0.1, [::1]) on its port."""
    sent = request.headers.get("origin")
    return sent is None or sent.rstrip("/").lower() == own_origin.lower() or _same_loopback(sent, own_origin)


def _same_loopback(sent: str, own_origin: str) -> bool:
    a, b = urlsplit(sent.rstrip("/").lower()), urlsplit(own_origin.lower())
    try:
        ports = a.port or 80, b.port or 80
    except ValueError:
        return False
    return (a.scheme == b.scheme == "http" and ports[0] == ports[1] and (a.hostname or "") in LOOPBACK_HOSTS
            and (b.hostname or "") in LOOPBACK_HOSTS)


def flash(request: Request, kind: str, text: str) -> None:
    """A message for the next page shown: `ok` or `error`."""
    request.session["flash"] = {"kind": kind, "text": text}


def take_flash(request: Request) -> dict[str, str] | None:
    value = request.session.pop("flash", None)
    if isinstance(value, dict) and value.get("kind") in ("ok", "error") and isinstance(value.get("text"), str):
        return {"kind": str(value["kind"]), "text": str(value["text"])}
    return None
