"""The Box Shield rule table (BOXCUT_SHIELD_RULES): what a Box Shield alert makes boxcut do, decided by the
alert's rule category, priority and risk score. docs/box-shield.md documents it.

A rule is a JSON object: `category` (a Box Shield rule category, any case, or "*" for any; default "*"),
`priority` (the lowest priority it matches: informational < low < medium < high < critical), `risk_score` (the
lowest risk score it matches, 0 to 100), and `action`: `terminate` (a job like any alert's), `approve` (a job
that waits for a person's approval) or `record` (a job that calls nothing, kept for the audit). The first rule
that matches decides; an alert that no rule matches waits for approval. A rule asking for a priority or a risk
score does not match an alert that lacks it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

PRIORITIES = ("informational", "low", "medium", "high", "critical")
ANY_CATEGORY = "*"


class ShieldAction(enum.StrEnum):
    TERMINATE = "terminate"
    APPROVE = "approve"
    RECORD = "record"


# What an alert that no rule matches is given: a person decides.
UNMATCHED_ACTION = ShieldAction.APPROVE


@dataclass(frozen=True)
class ShieldRule:
    """One row of the table."""

    action: ShieldAction
    category: str = ANY_CATEGORY
    priority: str | None = None
    risk_score: int | None = None

    def matches(self, category: str | None, priority: str | None, risk_score: int | None) -> bool:
        if self.category != ANY_CATEGORY and (category or "").strip().casefold() != self.category.casefold():
            return False
        if self.priority is not None and _rank(priority) < PRIORITIES.index(self.priority):
            return False
        return self.risk_score is None or (risk_score is not None and risk_score >= self.risk_score)

    def describe(self) -> str:
        """The rule in words, as a job's reason quotes it."""
        parts = [f"category {self.category}" if self.category != ANY_CATEGORY else "any category"]
        if self.priority is not None:
            parts.append(f"priority {self.priority} or above")
        if self.risk_score is not None:
            parts.append(f"risk score {self.risk_score} or above")
        return f"{', '.join(parts)} → {self.action.value}"


DEFAULT_RULES: tuple[ShieldRule, ...] = (
    ShieldRule(ShieldAction.TERMINATE, "Ransomware Activity"),
    ShieldRule(ShieldAction.TERMINATE, "Suspicious Sessions", priority="high"),
    ShieldRule(ShieldAction.APPROVE, "Suspicious Sessions"),
    ShieldRule(ShieldAction.APPROVE, "Malicious Content"),
    ShieldRule(ShieldAction.APPROVE, "Anomalous Download", priority="high"),
    ShieldRule(ShieldAction.APPROVE, "Suspicious Locations", priority="high"),
    ShieldRule(ShieldAction.RECORD),
)


@dataclass(frozen=True)
class ShieldDecision:
    """What the table decided for one alert, and by which rule (its 1-based row; None: no rule matched)."""

    action: ShieldAction
    row: int | None
    rule: ShieldRule | None

    def why(self) -> str:
        if self.rule is None or self.row is None:
            return f"no rule of BOXCUT_SHIELD_RULES matched → {self.action.value}"
        return f"BOXCUT_SHIELD_RULES rule {self.row} ({self.rule.describe()})"


def decide(rules: tuple[ShieldRule, ...], *, category: str | None, priority: str | None,
           risk_score: int | None) -> ShieldDecision:
    """The first rule that matches the alert, or the unmatched action."""
    for row, rule in enumerate(rules, start=1):
        if rule.matches(category, priority, risk_score):
            return ShieldDecision(rule.action, row, rule)
    return ShieldDecision(UNMATCHED_ACTION, None, None)


def parse_rules(text: str) -> tuple[ShieldRule, ...]:
    """The table from its JSON text; ValueError naming the row and the field that is wrong."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(rows, list) or not rows:
        raise ValueError('expected a JSON list of rules, e.g. [{"category": "Ransomware Activity", '
                         '"action": "terminate"}]')
    return tuple(_rule(row, n) for n, row in enumerate(rows, start=1))


_FIELDS = frozenset({"category", "priority", "risk_score", "action"})


def _rule(row: object, n: int) -> ShieldRule:
    if not isinstance(row, dict):
        raise ValueError(f"rule {n}: expected a JSON object")
    unknown = sorted(set(row) - _FIELDS)
    if unknown:
        raise ValueError(f"rule {n}: unknown field {unknown[0]!r}; a rule has {', '.join(sorted(_FIELDS))}")
    action = row.get("action")
    if action not in tuple(ShieldAction):
        raise ValueError(f"rule {n}: action must be one of {', '.join(ShieldAction)}, got {action!r}")
    category = row.get("category", ANY_CATEGORY)
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f"rule {n}: category must be a Box Shield rule category or \"*\"")
    priority = row.get("priority")
    if priority is not None and (not isinstance(priority, str) or priority.lower() not in PRIORITIES):
        raise ValueError(f"rule {n}: priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    score = row.get("risk_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100):
        raise ValueError(f"rule {n}: risk_score must be a whole number from 0 to 100, got {score!r}")
    return ShieldRule(ShieldAction(action), category.strip(), priority.lower() if priority else None, score)


def _rank(priority: str | None) -> int:
    """A priority's place in PRIORITIES; -1 for none or one Box does not document (it matches no minimum)."""
    value = (priority or "").strip().lower()
    return PRIORITIES.index(value) if value in PRIORITIES else -1
