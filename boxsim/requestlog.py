"""The record of every request the simulator answered, with secrets replaced before anything is kept."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from boxsim.http_types import SimRequest

logger = logging.getLogger("boxsim")

MAX_ENTRIES = 100_000  # oldest entries are forgotten first, so long benchmark runs stay bounded
REDACTED = "***"
SECRET_FIELDS = frozenset(
    {"client_secret", "assertion", "access_token", "refresh_token", "code", "subject_token", "actor_token"}
)


def flatten_query(query: Mapping[str, list[str]]) -> dict[str, str | list[str]]:
    """Return query parameters as a value per name, or a list for a repeated name."""
    return {name: values[0] if len(values) == 1 else list(values) for name, values in query.items()}


def _redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the values of secret-bearing fields with a marker."""
    return {key: REDACTED if key in SECRET_FIELDS else value for key, value in fields.items()}


def loggable_body(request: SimRequest) -> Any:
    """Return the body as it may be kept: parsed JSON, a redacted form, or a size note if neither."""
    if not request.raw_body:
        return None
    text = request.raw_body.decode("utf-8", errors="replace")
    if request.content_type() == "application/x-www-form-urlencoded":
        form = parse_qs(text, keep_blank_values=True)
        return _redact(flatten_query(form))
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        # Raw text could carry anything, secrets included; keep only its size.
        return f"<{len(request.raw_body)} bytes, not JSON>"
    return _redact(body) if isinstance(body, dict) else body


class RequestLog:
    """Thread-safe, ordered log of answered requests; each entry gets a sequence number from 1."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self._seq = 0

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Add an entry (stamping its `seq`), write the one-line log record, and return the entry."""
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, **entry}
            self._entries.append(entry)
        logger.info(
            "%s %s -> %s (%.1f ms, token %s)",
            entry.get("method"),
            entry.get("path"),
            entry.get("status") if entry.get("status") is not None else "dropped",
            entry.get("latency_ms", 0.0),
            entry.get("token_id") or "-",
        )
        return entry

    def entries(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """Return copies of the entries, optionally only those with this path and/or method."""
        with self._lock:
            selected = [
                e
                for e in self._entries
                if (path is None or e["path"] == path) and (method is None or e["method"] == method.upper())
            ]
            return copy.deepcopy(selected)

    def clear(self) -> None:
        """Forget every entry; sequence numbers keep counting up."""
        with self._lock:
            self._entries.clear()
