"""Policy: which resolved targets boxcut may act on. Applied to every source, and again before each call."""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from worker.job_model import Target, TargetType


@dataclass(frozen=True)
class Policy:
    """Protected accounts and the global dry-run switch, from settings."""

    protected_users: frozenset[str]
    protected_groups: frozenset[str]
    dry_run: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            protected_users=frozenset(u.lower() for u in settings.protected_users),
            protected_groups=frozenset(g.lower() for g in settings.protected_groups),
            dry_run=settings.dry_run,
        )

    def protection(self, target: Target) -> str | None:
        """Why this target must never be terminated, or None when it may be."""
        if target.type is TargetType.USER:
            names = {target.user_id, target.login, target.input.get("login"), target.input.get("id")}
            listed, setting = self.protected_users, "BOXCUT_PROTECTED_USERS"
        else:
            names = {target.group_id, target.group_name, target.input.get("name"), target.input.get("id")}
            listed, setting = self.protected_groups, "BOXCUT_PROTECTED_GROUPS"
        hits = sorted(n for n in names if n and n.lower() in listed)
        return f"{hits[0]} is listed in {setting}" if hits else None

    def is_dry_run(self, job_dry_run: bool) -> bool:
        """A job is a dry run when it asked to be or when the global switch is on."""
        return job_dry_run or self.dry_run
