"""Box Shield alerts: a `SHIELD_ALERT` admin event read as a job request, decided by the rule table.

The subject is `additional_details.shield_alert.user`: a Box user id (a JSON number) and an e-mail that is not
always the login. The id names exactly one user, so it is the target; the e-mail is used only when Box sends no
id, and then resolves like a login, exactly or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from config.shield_rules import ShieldAction, ShieldRule, decide
from worker.errors import NoIdentityFound, PayloadError
from worker.identity import box_id_problem, login_problem
from worker.jobs.model import Approval
from worker.jobs.submit import JobRequest

SOURCE = "box-shield"
SHIELD_ALERT = "SHIELD_ALERT"
ALERT_PATH = "additional_details.shield_alert"
USER_PATHS = (f"{ALERT_PATH}.user.id", f"{ALERT_PATH}.user.email")


@dataclass(frozen=True)
class ShieldFacts:
    """What the rule table decides by: the alert's rule category, priority and risk score (each may be absent)."""

    category: str | None
    priority: str | None
    risk_score: int | None
    rule_name: str | None = None

    @classmethod
    def of(cls, event: dict[str, Any]) -> ShieldFacts:
        """The facts of an admin event, read leniently: a field of another type counts as absent."""
        alert = _alert(event)
        score = alert.get("risk_score")
        return cls(
            category=_text(alert.get("rule_category")),
            priority=(_text(alert.get("priority")) or "").lower() or None,
            risk_score=score if isinstance(score, int) and not isinstance(score, bool) else _digits(score),
            rule_name=_text(alert.get("rule_name")),
        )

    def describe(self) -> str:
        parts = [self.category or "no category", f"priority {self.priority or 'none'}",
                 f"risk score {self.risk_score if self.risk_score is not None else 'none'}"]
        return ", ".join(parts)

    def reason(self) -> str:
        """A job's reason for the alert: its category and rule name, as Box names them."""
        return ": ".join(p for p in (self.category, self.rule_name) if p) or f"{SOURCE} alert"


@dataclass(frozen=True)
class ShieldAlert:
    """One Box Shield alert from the event stream, ready to become a job."""

    event_id: str
    facts: ShieldFacts
    target: dict[str, str]
    link: str | None

    @classmethod
    def of(cls, event: dict[str, Any]) -> ShieldAlert:
        """The alert an admin event carries; PayloadError or NoIdentityFound when it names nobody usable."""
        event_id = _text(event.get("event_id"))
        if not event_id:
            raise PayloadError("event_id", "is missing: a Box event without an id cannot be told from its repeats")
        return cls(event_id=event_id, facts=ShieldFacts.of(event), target=_subject(_alert(event)),
                   link=_text(_alert(event).get("link")))

    def request(self, rules: tuple[ShieldRule, ...], *, requested_by: str) -> JobRequest:
        """The job request for this alert, as the rule table decides it."""
        plain = JobRequest(targets=[self.target], source=SOURCE, reason=self.facts.reason(),
                           requested_by=requested_by, source_event_id=self.event_id, severity=self.facts.priority,
                           link=self.link)
        return decided(plain, self.facts, rules)


def decided(request: JobRequest, facts: ShieldFacts, rules: tuple[ShieldRule, ...]) -> JobRequest:
    """`request` as the rule table has it: unchanged (terminate), waiting for approval, or recorded only; the
    same for an alert from the stream and one a SIEM relays, so both ways decide alike."""
    decision = decide(rules, category=facts.category, priority=facts.priority, risk_score=facts.risk_score)
    why = f"Box Shield alert ({facts.describe()}): {decision.why()}"
    if decision.action is ShieldAction.APPROVE:
        return replace(request, approval=Approval(required=True, reasons=[why]))
    if decision.action is ShieldAction.RECORD:
        return replace(request, record_only=f"{why}: recorded only, nothing was looked up or sent to Box")
    return request


def action_of(request: JobRequest) -> str:
    """What the table decided for a request `decided` made: terminate, approve or record (for metrics)."""
    if request.record_only:
        return ShieldAction.RECORD.value
    return ShieldAction.APPROVE.value if request.approval is not None else ShieldAction.TERMINATE.value


def _subject(alert: dict[str, Any]) -> dict[str, str]:
    user = alert.get("user")
    if not isinstance(user, dict):
        raise NoIdentityFound(USER_PATHS)
    user_id = user.get("id")
    if user_id is not None and not isinstance(user_id, bool):
        text = str(user_id).strip()
        if problem := box_id_problem(text):
            raise PayloadError(USER_PATHS[0], problem)
        return {"type": "user", "id": text}
    email = _text(user.get("email"))
    if email:
        if problem := login_problem(email):
            raise PayloadError(USER_PATHS[-1], f"is not a Box login ({problem})")
        return {"type": "user", "login": email}
    raise NoIdentityFound(USER_PATHS)


def _alert(event: dict[str, Any]) -> dict[str, Any]:
    details = event.get("additional_details")
    alert = details.get("shield_alert") if isinstance(details, dict) else None
    return alert if isinstance(alert, dict) else {}


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value).strip() or None
    return None


def _digits(value: object) -> int | None:
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdecimal() else None
