"""What a verified SET asks of boxcut: the event types that end a person's Box sessions, and the Box user its
subject names (RFC 9493 `sub_id`, or the `subject` member of older CAEP drafts). Exact matches only: a subject
boxcut cannot map to one Box user makes a job that is recorded, never acted on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.ssf_transmitters import ISS_SUB_AS_LOGIN, ISS_SUB_AS_USER_ID, Transmitter
from worker.identity import is_box_id, login_key, login_problem
from worker.jobs.submit import JobRequest
from worker.ssf.verifier import VerifiedSet

SOURCE = "ssf"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
SESSION_REVOKED = CAEP + "session-revoked"
ACCOUNT_DISABLED = RISC + "account-disabled"
CREDENTIAL_COMPROMISE = RISC + "credential-compromise"
ACCOUNT_PURGED = RISC + "account-purged"
VERIFICATION = SSF + "verification"
# The event types that end the subject's Box sessions; every other type is answered 202 and recorded.
ACTING_EVENTS = (SESSION_REVOKED, ACCOUNT_DISABLED, CREDENTIAL_COMPROMISE, ACCOUNT_PURGED)


@dataclass(frozen=True)
class Subject:
    """The Box user a subject names (`target`), or why it names none (`unmapped`)."""

    target: dict[str, str] | None
    described: str  # for the reason and the audit: "email jdoe@example.com", "iss_sub https://idp … 00u1"
    unmapped: str | None = None


def job_request(verified: VerifiedSet) -> JobRequest:
    """The job a SET makes: one that ends its subject's sessions when an event acts and the subject maps to a
    Box user; otherwise one that is recorded only, saying why."""
    events = verified.events
    acting = [uri for uri in events if uri in ACTING_EVENTS]
    subject = subject_of(verified.claims, events, verified.transmitter)
    reason = _reason(verified, acting or list(events), subject)
    why_not = None
    if len(events) > 1:
        # SSF 1.0: a SET carries one event. Which of several, and whose subject, would be a guess.
        why_not = f"the SET carries {len(events)} events, not one; recorded, not acted on"
    elif not acting:
        why_not = f"event type {_short(next(iter(events)))} does not end sessions; recorded, not acted on"
    elif subject.target is None:
        why_not = f"subject not mapped to a Box user ({subject.unmapped}); recorded, not acted on"
    return JobRequest(targets=[subject.target] if subject.target else [], source=SOURCE, reason=reason,
                      requested_by=f"{SOURCE}:{verified.transmitter.issuer}", source_event_id=verified.jti,
                      record_only=why_not)


def subject_of(claims: Mapping[str, Any], events: Mapping[str, Any], transmitter: Transmitter) -> Subject:
    """The subject of the SET: its `sub_id`, or the event's legacy `subject` member; when it has both, they
    must name the same subject."""
    sub_id = claims.get("sub_id")
    legacy = [e["subject"] for e in events.values() if e.get("subject") is not None]
    if sub_id is not None and legacy and any(other != sub_id for other in legacy):
        return Subject(None, "disagreeing subjects", "the SET's sub_id and its event's subject differ")
    if sub_id is None and len(legacy) == 1:
        sub_id = legacy[0]
    if not isinstance(sub_id, dict):
        return Subject(None, "none", "the SET names no subject")
    return _within_domains(_identifier(sub_id, transmitter, nested=False), transmitter)


def _within_domains(subject: Subject, transmitter: Transmitter) -> Subject:
    """The subject, or none when the Box user it names is outside the transmitter's `email_domains`, whichever
    format named it. A Box user id shows no domain: while an allow-list is set, it is outside it too."""
    allowed = transmitter.email_domains
    if subject.target is None or allowed is None:
        return subject
    login = subject.target.get("login")
    shown = ", ".join(allowed)
    if login is None:
        return Subject(None, subject.described, f"a Box user id shows no e-mail domain, and this transmitter may "
                                                f"name only {shown} (email_domains)")
    domain = login.rsplit("@", 1)[1]
    if login_key(domain) not in allowed:
        return Subject(None, subject.described, f"{domain[:200]!r} is not an e-mail domain this transmitter may "
                                                f"name ({shown}: email_domains)")
    return subject


def _identifier(sub_id: Mapping[str, Any], transmitter: Transmitter, *, nested: bool) -> Subject:
    kind = sub_id.get("format", sub_id.get("subject_type"))  # `subject_type`: the CAEP drafts' name for it
    if kind == "email":
        email = sub_id.get("email")
        if not isinstance(email, str):
            return Subject(None, "email", "an email subject without an e-mail address")
        if problem := email_problem(email.strip()):
            return Subject(None, f"email {email.strip()[:200]!r}", f"the e-mail address is not a Box login ({problem})")
        return Subject({"type": "user", "login": email.strip()}, f"email {email.strip()}")
    if kind in ("iss_sub", "iss-sub"):
        return _iss_sub(sub_id, transmitter)
    if kind == "complex" and not nested and isinstance(sub_id.get("user"), dict):
        return _identifier(sub_id["user"], transmitter, nested=True)  # its `user`; session and tenant say no more
    shown = kind if isinstance(kind, str) else "no format"
    return Subject(None, str(shown)[:40], f"subject format {str(shown)[:40]!r} does not name a Box user")


def is_email(text: str) -> bool:
    """A login as every entrance checks one (`login_problem`), and nothing invisible in it."""
    return email_problem(text) is None


def email_problem(text: str) -> str | None:
    """Why `text` is not a login as every entrance checks one (`login_problem`), or holds something invisible (a
    zero-width space would name nobody, or somebody else); None when it is one."""
    if not text.isprintable():
        return "it holds an invisible character"
    return login_problem(text)


def _iss_sub(sub_id: Mapping[str, Any], transmitter: Transmitter) -> Subject:
    iss, sub = sub_id.get("iss"), sub_id.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str) or not sub.strip():
        return Subject(None, "iss_sub", "an iss_sub subject without iss and sub")
    described = f"iss_sub {iss[:200]} {sub[:200]}"
    if not transmitter.maps_iss_sub(iss):
        return Subject(None, described, "iss_sub subjects of this issuer are not mapped (iss_sub in "
                                        "BOXCUT_SSF_TRANSMITTERS)")
    sub = sub.strip()
    if transmitter.iss_sub == ISS_SUB_AS_USER_ID:
        if not is_box_id(sub):
            return Subject(None, described, "iss_sub is mapped to Box user ids, and this sub is not one")
        return Subject({"type": "user", "id": sub}, described)
    template = str(transmitter.iss_sub)
    if transmitter.iss_sub != ISS_SUB_AS_LOGIN and "@" in template.replace("{sub}", "") and "@" in sub:
        return Subject(None, described, "the sub already holds an @, and the template adds a domain")
    login = sub if transmitter.iss_sub == ISS_SUB_AS_LOGIN else template.replace("{sub}", sub)
    if not is_email(login):
        return Subject(None, described, f"iss_sub maps this sub to {login[:200]!r}, which is not a Box login")
    return Subject({"type": "user", "login": login}, described)


def _reason(verified: VerifiedSet, uris: list[str], subject: Subject) -> str:
    details = []
    for uri in uris:
        event = verified.events[uri]
        said = [f"{name} {_text(event[name])}" for name in ("initiating_entity", "reason", "reason_admin")
                if event.get(name) not in (None, "", {})]
        details.append(_short(uri) + (f" ({'; '.join(said)})" if said else ""))
    return f"Shared Signals {', '.join(details)} for {subject.described} from {verified.transmitter.issuer}"[:1000]


def _short(uri: str) -> str:
    """`CAEP session-revoked` for the CAEP URI, and so on; another URI as it is."""
    for prefix, name in ((CAEP, "CAEP"), (RISC, "RISC"), (SSF, "SSF")):
        if uri.startswith(prefix):
            return f"{name} {uri.removeprefix(prefix)}"
    return uri[:200]


def _text(value: object) -> str:
    """A reason as text: CAEP's `reason_admin` is a map of language tags to text (`{"en": "..."}`)."""
    if isinstance(value, dict):
        value = value.get("en", next(iter(value.values()), ""))
    return str(value)[:300]
