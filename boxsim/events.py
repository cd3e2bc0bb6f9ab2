"""The simulated enterprise event stream (`GET /events`, `admin_logs` and `admin_logs_streaming`), with Box's
quirks on purpose: repeated events, empty pages while more remain, and only so much history kept.

A stream position is a large integer, as Box's are: a fixed base plus the index of the next entry in the log.
`now` is the end of the log; `0` (or none) is the oldest entry kept. Events Box no longer keeps (`forget`) leave
positions before them unreadable: boxsim answers those with a 400, since Box documents no answer for them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boxsim.directory import Directory

POSITION_BASE = 1_152_922_976_252_290_000
STREAMING = "admin_logs_streaming"
SHIELD_ALERT = "SHIELD_ALERT"
UNKNOWN_USER = {"type": "user", "id": "2", "name": "Unknown User", "login": ""}

# Box Shield's rule categories, and the shape of each one's `alert_summary` (it differs per category).
SHIELD_CATEGORIES: dict[str, dict[str, Any]] = {
    "Suspicious Locations": {"description": "Sign-in from an unusual location",
                             "ip_info": {"ip": "203.0.113.7", "country": "Elsewhere"}},
    "Suspicious Sessions": {"description": "Session from an unusual location and device",
                            "session_info": {"duration": "3 minutes"}},
    "Anomalous Download": {"description": "Unusual download volume", "download_delta_size": "2.5 GB",
                           "historical_period": "28 days"},
    "Malicious Content": {"description": "Malware uploaded", "malicious_content": {"file_name": "invoice.exe"}},
    "Ransomware Activity": {"description": "Files renamed with a ransomware extension",
                            "ransomware_info": {"extension": ".locked", "files": 312}},
}


class EventError(ValueError):
    """A stream position or an event to add that boxsim cannot take; the message says why."""


@dataclass(frozen=True)
class EventPage:
    entries: list[dict[str, Any]]
    next_position: str


# A place in the log where a read stops with what it has: the next read there gets an empty page.
_EMPTY_PAGE: dict[str, Any] = {}


class EventLog:
    """Every enterprise event boxsim holds, in the order it logged them; safe across request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._first_kept = 0

    # -- reading ---------------------------------------------------------------------------------------------

    def page(self, position: str | None, *, limit: int, stream_type: str, event_types: list[str] | None = None,
             created_after: str | None = None, created_before: str | None = None) -> EventPage:
        """A page from `position`: up to `limit` events, stopping early at an empty-page mark."""
        with self._lock:
            if position == "now":
                return EventPage([], _position(len(self._log)))
            index = self._index(position)
            entries: list[dict[str, Any]] = []
            while index < len(self._log) and len(entries) < limit:
                entry = self._log[index]
                if entry is _EMPTY_PAGE:
                    if not entries:
                        index += 1  # this read is the empty page; the next goes on past it
                    break
                index += 1
                if _wanted(entry, event_types, stream_type, created_after, created_before):
                    entries.append(dict(entry))
            return EventPage(entries, _position(index))

    def _index(self, position: str | None) -> int:
        if position in (None, "", "0"):
            return self._first_kept
        assert position is not None
        if not position.isdigit():
            raise EventError(f"stream_position '{position}' is not a stream position")
        index = int(position) - POSITION_BASE
        if index < self._first_kept:
            raise EventError(f"stream_position '{position}' is older than the events kept")
        return min(index, len(self._log))

    # -- writing (the admin API) -----------------------------------------------------------------------------

    def add(self, events: list[dict[str, Any]], *, directory: Directory,
            duplicate: bool = False) -> list[dict[str, Any]]:
        """Log events, each a full event or a shorthand (`event_type` and `user_id`, see `build_event`); with
        `duplicate`, each is logged a second time after the batch, as Box sometimes repeats events."""
        built = [build_event(spec, directory) for spec in events]
        with self._lock:
            self._log.extend(built)
            if duplicate:
                self._log.extend(dict(event) for event in built)
        return built

    def add_empty_page(self) -> None:
        with self._lock:
            self._log.append(_EMPTY_PAGE)

    def forget(self) -> int:
        """Drop every event logged so far, as Box drops what is older than it keeps; returns how many."""
        with self._lock:
            dropped = len(self._log) - self._first_kept
            self._first_kept = len(self._log)
            return dropped

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
            self._first_kept = 0


def build_event(spec: Mapping[str, Any], directory: Directory) -> dict[str, Any]:
    """An event as Box sends it. A full event (with `event_id` and `created_by`) is kept as given; a shorthand
    names `event_type` and `user_id` (a directory user), optionally `created_at`, `ip_address`, `session_id`,
    and for a SHIELD_ALERT `rule_category`, `priority`, `risk_score`, `rule_name`."""
    if "event_id" in spec and "created_by" in spec:
        return dict(spec)
    event_type = spec.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise EventError("an event needs an event_type")
    user_id = str(spec.get("user_id") or "")
    user = directory.user(user_id)
    if user is None:
        raise EventError(f"user_id '{user_id}' is not a user boxsim knows")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    event: dict[str, Any] = {
        "type": "event", "event_id": str(spec.get("event_id") or uuid.uuid4()), "event_type": event_type,
        "created_at": str(spec.get("created_at") or now), "recorded_at": now,
        "created_by": {"type": "user", "id": user.id, "name": user.name, "login": user.login},
        "ip_address": spec.get("ip_address", "198.51.100.20"), "session_id": spec.get("session_id"),
        "source": None, "additional_details": spec.get("additional_details"),
    }
    if event_type == SHIELD_ALERT:
        event["created_by"] = dict(UNKNOWN_USER)
        event["additional_details"] = {"shield_alert": _shield_alert(spec, user.id, user.name, user.login, now)}
    # Box's spec declares none of these nullable: a field Box has no value for is left out.
    return {name: value for name, value in event.items() if value is not None}


def _shield_alert(spec: Mapping[str, Any], user_id: str, name: str, login: str, now: str) -> dict[str, Any]:
    category = str(spec.get("rule_category") or "Suspicious Sessions")
    if category not in SHIELD_CATEGORIES:
        raise EventError(f"rule_category '{category}' is not one of {', '.join(SHIELD_CATEGORIES)}")
    alert_id = int(spec.get("alert_id") or uuid.uuid4().int % 10**6)
    return {
        "rule_category": category, "rule_id": spec.get("rule_id", 123),
        "rule_name": spec.get("rule_name", category.rstrip("s")), "rule_response_action": None,
        "risk_score": spec.get("risk_score", 50), "priority": str(spec.get("priority", "medium")).lower(),
        "alert_id": alert_id, "user": {"id": int(user_id), "name": name, "email": login},
        "link": f"https://cloud.app.box.com/master/shield/alerts/{alert_id}", "created_at": now,
        "alert_summary": SHIELD_CATEGORIES[category],
    }


def _wanted(event: dict[str, Any], event_types: list[str] | None, stream_type: str, created_after: str | None,
            created_before: str | None) -> bool:
    if event_types and event.get("event_type") not in event_types:
        return False
    if stream_type == STREAMING:
        return True  # Box documents created_after and created_before for admin_logs only
    created = _epoch(event.get("created_at"))
    after, before = _epoch(created_after), _epoch(created_before)
    return (after is None or (created is not None and created >= after)) and (
        before is None or (created is not None and created <= before))


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _position(index: int) -> str:
    return str(POSITION_BASE + index)
