"""Okta event hooks: a batch of System Log events (`data.events[]`), of which only some event types matter.

Okta delivers at least once, so each kept event is an envelope of its own keyed by the event's `uuid`.
Identity paths start with `data.events[]` and the rest is read inside each kept event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from worker.errors import NoIdentityFound, PayloadError
from worker.intake.adapters.base import (
    Envelope,
    as_object,
    default_reason,
    each_event,
    resolve_paths,
    text_at,
    user_targets,
)
from worker.intake.adapters.fieldpath import first_found

DEFAULT_EVENT_TYPES: tuple[str, ...] = ("user.lifecycle.deactivate", "user.lifecycle.suspend", "user.account.lock")
DEFAULT_PATHS: tuple[str, ...] = ("data.events[].target[type=User].alternateId",)

_EVENTS = "data.events[]"


class OktaAdapter:
    """Keeps the events whose `eventType` is chosen and makes one envelope of each."""

    source = "okta"

    def __init__(self, event_types: Iterable[str] = DEFAULT_EVENT_TYPES) -> None:
        if isinstance(event_types, str):
            raise ValueError("event_types must be a collection of event types, not one string")
        self.event_types = tuple(event_types)
        if not self.event_types:
            raise ValueError("event_types must name at least one Okta event type")

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope per kept event; an empty list when the batch holds none (Okta sends other events too)."""
        tried = resolve_paths(paths, DEFAULT_PATHS)
        inner = inside_event(tried)
        wanted = [event for event in _events(payload) if self._wanted(event)]
        return each_event(wanted, lambda event: self._envelope(event, tried, inner))

    def _wanted(self, event: dict[str, object]) -> bool:
        return event.get("eventType") in self.event_types

    def _envelope(self, event: dict[str, object], tried: tuple[str, ...], inner: list[str]) -> Envelope:
        logins = first_found(event, inner)
        if not logins:
            # A deactivation that names nobody is worth a loud refusal; guessing is not an option.
            raise NoIdentityFound(tried, note=f"event {text_at(event, 'uuid')}")
        event_type = str(event["eventType"])
        message = text_at(event, "displayMessage")
        return Envelope(
            targets=user_targets(logins),
            reason=f"{message} ({event_type})" if message else event_type or default_reason(self.source),
            severity=text_at(event, "severity"),
            source_event_id=text_at(event, "uuid"),
            link=None,
        )


def inside_event(paths: Sequence[str]) -> list[str]:
    """Each path with its `data.events[].` prefix removed: the part read inside one event."""
    prefix = _EVENTS + "."
    if not all(path.startswith(prefix) for path in paths):
        raise ValueError(f"Okta identity paths must start with {prefix}")
    return [path[len(prefix):] for path in paths]


def _events(payload: object) -> list[dict[str, object]]:
    data = as_object(as_object(payload).get("data"), "data")
    events = data.get("events")
    if not isinstance(events, list):
        raise PayloadError("data.events", "must be a list")
    for index, event in enumerate(events):
        as_object(event, f"data.events[{index}]")
    return events
