"""Sumo Logic's webhook connection: a payload template whose `{{ResultsJson}}` lists the search's result rows."""

from __future__ import annotations

from collections.abc import Sequence

from worker.intake.adapters.base import (
    Envelope,
    as_object,
    decoded_field,
    default_reason,
    required_logins,
    resolve_paths,
    text_at,
    user_targets,
)

DEFAULT_PATHS: tuple[str, ...] = ("ResultsJson[].user",)


class SumoLogicAdapter:
    """Reads the user of every result row; Sumo Logic sends no event id, so none is made up."""

    source = "sumologic"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope for the monitor's firing, one target per distinct user among the rows."""
        # A template that quotes `{{ResultsJson}}` sends the rows as a string of JSON.
        body = decoded_field(as_object(payload), "ResultsJson")
        if (text_at(body, "TriggerType") or "").startswith("Resolved"):
            return []  # the monitor recovered: nothing to contain, and no one's sessions should end for it
        tried = resolve_paths(paths, DEFAULT_PATHS)
        logins = required_logins(body, tried)
        return [Envelope(
            targets=user_targets(logins),
            reason=text_at(body, "Name") or default_reason(self.source),
            severity=None,
            # Sumo Logic gives no event id, and a hash of the body is never one (two real alerts can have the
            # same body): the caller de-duplicates on the Idempotency-Key header instead.
            source_event_id=None,
            link=text_at(body, "QueryURL"),
        )]

