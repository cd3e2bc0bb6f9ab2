"""Box Shield alerts a SIEM relays: `SHIELD_ALERT` admin events from Box's event stream, one event or a list.

An identity path whose last key is `id` holds a Box user id (Box sends it as a JSON number) and makes an id
target; any other path holds a login. The id comes first: it names exactly one user, while the alert's e-mail
is not always that user's login. Events of another `event_type` are skipped, not refused. Each envelope carries
the alert's category, priority and risk score, so the rule table (BOXCUT_SHIELD_RULES) decides a relayed alert
as it decides one boxcut reads from the stream itself (worker/event_stream).
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.errors import NoIdentityFound, PayloadError
from worker.event_stream.shield import USER_PATHS, ShieldFacts
from worker.identity import box_id_problem, login_problem
from worker.intake.adapters.base import (
    Envelope,
    as_object,
    dedupe_targets,
    default_reason,
    each_event,
    resolve_paths,
    text_at,
)
from worker.intake.adapters.fieldpath import values_at

_ALERT = "additional_details.shield_alert"
# Tried in order: the numeric user id, then the e-mail when Box sends no id.
DEFAULT_PATHS: tuple[str, ...] = USER_PATHS

_SHIELD_ALERT = "SHIELD_ALERT"


class BoxShieldAdapter:
    """Reads the user Box Shield flagged, by user id or else by e-mail; one envelope per event."""

    source = "box-shield"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope per `SHIELD_ALERT` event naming a user (others are skipped); NoIdentityFound when none does."""
        tried = resolve_paths(paths, DEFAULT_PATHS)
        alerts = [event for event in _events(payload) if _is_shield_alert(event)]
        return each_event(alerts, lambda event: self._envelope(event, tried))

    def _envelope(self, event: dict[str, object], tried: tuple[str, ...]) -> Envelope:
        category, rule = text_at(event, f"{_ALERT}.rule_category"), text_at(event, f"{_ALERT}.rule_name")
        return Envelope(
            targets=_targets(event, tried),
            reason=": ".join(part for part in (category, rule) if part) or default_reason(self.source),
            severity=text_at(event, f"{_ALERT}.priority"),
            source_event_id=text_at(event, "event_id"),
            link=text_at(event, f"{_ALERT}.link"),
            shield=ShieldFacts.of(event),
        )


def _targets(event: dict[str, object], tried: tuple[str, ...]) -> list[dict[str, str]]:
    for path in tried:
        values = values_at(event, path)
        if values:
            key = "id" if path.rsplit(".", 1)[-1] == "id" else "login"
            for value in values:
                if problem := box_id_problem(value) if key == "id" else _login_problem(value):
                    raise PayloadError(path, problem)
            return dedupe_targets({"type": "user", key: value} for value in values)
    raise NoIdentityFound(tried)


def _login_problem(value: str) -> str | None:
    problem = login_problem(value.strip())
    return f"is not a Box login ({problem})" if problem else None


def _events(payload: object) -> list[dict[str, object]]:
    """The events posted: one event object, a list of them, or Box's own `{"entries": [...]}` page."""
    if isinstance(payload, dict) and isinstance(payload.get("entries"), list):
        payload = payload["entries"]
    if isinstance(payload, dict):
        return [payload]
    if not isinstance(payload, list):
        raise PayloadError("payload", "must be an admin event or a list of them")
    for index, event in enumerate(payload):
        as_object(event, f"[{index}]")
    return payload


def _is_shield_alert(event: dict[str, object]) -> bool:
    # The poller may hand over a page of mixed admin events; an event without a type is taken as an alert.
    event_type = event.get("event_type")
    return event_type is None or event_type == _SHIELD_ALERT
