"""Kibana's webhook connector: a body the user writes in Mustache, listing the rule and its alerts (ECS names)."""

from __future__ import annotations

from collections.abc import Sequence

from worker.intake.adapters.base import (
    Envelope,
    as_object,
    default_reason,
    looks_like_email,
    required_logins,
    resolve_paths,
    text_at,
    user_targets,
)
from worker.intake.adapters.fieldpath import values_at

# Per alert, `user.name` is a fallback for an alert without `user.email`.
DEFAULT_PATHS: tuple[str, ...] = ("alerts[].user.email", "alerts[].user.name")


class ElasticAdapter:
    """Reads every alert's user; only values shaped like an e-mail count, as ECS `user.name` is often bare."""

    source = "elastic"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope for the rule's run, one target per distinct user among its alerts."""
        body = as_object(payload)
        tried = resolve_paths(paths, DEFAULT_PATHS)
        logins = required_logins(body, tried, read=_email_values,
                                 note="only values shaped like an e-mail address count")
        return [Envelope(
            targets=user_targets(logins),
            reason=text_at(body, "rule.name") or default_reason(self.source),
            severity=text_at(body, "rule.severity"),
            source_event_id=_event_id(body),
            link=text_at(body, "rule.url"),
        )]


def _email_values(payload: object, path: str) -> list[str]:
    # A bare username such as "jdoe" is no Box login; keeping it would only end the target not_found.
    return [value for value in values_at(payload, path) if looks_like_email(value)]


def _event_id(body: dict[str, object]) -> str | None:
    """`rule.id:` followed by the alerts' `_id`s joined by commas; None when either part is missing."""
    rule_id = text_at(body, "rule.id")
    alert_ids = values_at(body, "alerts[]._id")
    # The rule id alone is the same for every run of the rule, so it would swallow the next run's alerts.
    if rule_id is None or not alert_ids:
        return None
    return f"{rule_id}:{','.join(alert_ids)}"
