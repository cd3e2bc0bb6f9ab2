"""Panther's custom webhook: the rule's `alertContext` names the user; the alert carries its own id."""

from __future__ import annotations

from collections.abc import Sequence

from worker.intake.adapters.base import (
    Envelope,
    as_object,
    default_reason,
    required_logins,
    resolve_paths,
    text_at,
    user_targets,
)

# Tried in order; a later path is a fallback when the earlier ones hold nothing.
DEFAULT_PATHS: tuple[str, ...] = ("alertContext.user", "alertContext.email", "alertContext.actor")


class PantherAdapter:
    """Reads the identity the detection rule put in `alertContext`."""

    source = "panther"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope per Panther alert; NoIdentityFound if `alertContext` names nobody."""
        body = as_object(payload)
        tried = resolve_paths(paths, DEFAULT_PATHS)
        logins = required_logins(body, tried)
        return [Envelope(
            targets=user_targets(logins),
            reason=text_at(body, "title") or text_at(body, "name") or default_reason(self.source),
            severity=text_at(body, "severity"),
            source_event_id=text_at(body, "alertId"),
            link=text_at(body, "link"),
        )]
