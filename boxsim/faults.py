"""Scripted faults: rules that make matching requests slow, fail with a status, or drop the connection."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

UNLIMITED = -1  # `times` value for a rule that never runs out
RULE_KEYS = frozenset({"method", "path", "times", "status", "headers", "body", "latency_ms", "drop"})


@dataclass
class FaultRule:
    """One scripted fault, applied to the next `times` requests matching method and path.

    `path` is the request path without query (e.g. "/2.0/users/terminate_sessions"); a trailing "*" makes
    it a prefix. `method` None matches any method. A rule delays by `latency_ms`, then either drops the
    connection (`drop`), answers `status` (with `headers` and `body`, or Box's default error body), or
    serves the request normally when it has neither.
    """

    path: str
    method: str | None = None
    times: int = 1
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    latency_ms: int = 0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.times != UNLIMITED and self.times < 1:
            raise ValueError(f"fault times must be >= 1 or {UNLIMITED} (unlimited), got {self.times}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"fault status must be an HTTP status, got {self.status}")
        if self.latency_ms < 0:
            raise ValueError("fault latency_ms must not be negative")
        if self.status is None and not self.drop and self.latency_ms == 0:
            raise ValueError("a fault needs a status, latency_ms or drop")
        self.method = self.method.upper() if self.method and self.method != "*" else None
        self.headers = {str(k).lower(): str(v) for k, v in self.headers.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its JSON form, refusing unknown keys and wrong types with ValueError."""
        unknown = set(data) - RULE_KEYS
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        if not isinstance(data.get("path"), str):
            raise ValueError("a fault rule needs a string 'path'")
        try:
            return cls(
                path=data["path"],
                method=data.get("method"),
                times=int(data.get("times", 1)),
                status=None if data.get("status") is None else int(data["status"]),
                headers=dict(data.get("headers") or {}),
                body=data.get("body"),
                latency_ms=int(data.get("latency_ms", 0)),
                drop=bool(data.get("drop", False)),
            )
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"invalid fault rule {dict(data)!r}: {exc}") from None

    def matches(self, method: str, path: str) -> bool:
        """Tell whether this rule applies to a request."""
        if self.method is not None and self.method != method.upper():
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def to_dict(self) -> dict[str, Any]:
        """Return the rule's JSON form."""
        return {
            "method": self.method,
            "path": self.path,
            "times": self.times,
            "status": self.status,
            "headers": dict(self.headers),
            "body": self.body,
            "latency_ms": self.latency_ms,
            "drop": self.drop,
        }


class FaultQueue:
    """Pending fault rules in the order they were added; each match uses up one of a rule's `times`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rules: Iterable[FaultRule | Mapping[str, Any]]) -> int:
        """Append rules (objects or their JSON form); all are checked before any is queued."""
        parsed = [r if isinstance(r, FaultRule) else FaultRule.from_dict(r) for r in rules]
        with self._lock:
            self._rules.extend(replace(r) for r in parsed)
            return len(self._rules)

    def clear(self) -> int:
        """Drop every pending rule; return how many there were."""
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def take(self, method: str, path: str) -> FaultRule | None:
        """Return the first rule matching the request, using up one of its uses; None if none match."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(method, path):
                    taken = replace(rule)  # copied before the count drops: a rule with 0 uses is invalid
                    if rule.times != UNLIMITED:
                        rule.times -= 1
                        if rule.times == 0:
                            del self._rules[index]
                    return taken
            return None

    def pending(self) -> list[dict[str, Any]]:
        """Return the pending rules' JSON forms, with their remaining uses in `times`."""
        with self._lock:
            return [r.to_dict() for r in self._rules]
