"""Policy: which resolved targets boxcut may act on, and when a person must approve first.

Applied to every source alike, and the protection check runs again right before each Box call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from config import Settings
from worker.box.answers import BoxUser
from worker.identity import login_key
from worker.jobs.model import Target, TargetStatus, TargetType

# Box roles that administer the enterprise: cutting one off mid-incident can lock out the responders.
ADMIN_ROLES = frozenset({"admin", "coadmin"})


@dataclass(frozen=True)
class Policy:
    """Protected accounts, the admin rule, the blast-radius threshold and the global dry-run switch."""

    protected_users: frozenset[str]
    protected_groups: frozenset[str]
    dry_run: bool = False
    approval_threshold: int = 25
    allowed_admins: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            protected_users=_lowered(settings.protected_users),
            protected_groups=_lowered(settings.protected_groups),
            dry_run=settings.dry_run,
            approval_threshold=settings.approval_threshold,
            allowed_admins=_lowered(settings.allowed_admins),
        )

    def protection(self, target: Target, *, service_account_id: str | None = None) -> str | None:
        """Why this target must never be terminated, or None when it may be."""
        if target.type is TargetType.USER and service_account_id and target.user_id == service_account_id:
            return "this is the service account boxcut itself runs as"
        if target.type is TargetType.USER:
            names = {target.user_id, target.login, target.input.get("login"), target.input.get("id")}
            listed, setting = self.protected_users, "BOXCUT_PROTECTED_USERS"
        else:
            names = {target.group_id, target.group_name, target.input.get("name"), target.input.get("id")}
            listed, setting = self.protected_groups, "BOXCUT_PROTECTED_GROUPS"
        hits = sorted(n for n in names if n and login_key(n) in listed)
        return f"{hits[0]} is listed in {setting}" if hits else None

    def is_dry_run(self, job_dry_run: bool) -> bool:
        """A job is a dry run when it asked to be or when the global switch is on."""
        return job_dry_run or self.dry_run

    def approval_reasons(self, targets: Iterable[Target], blast_radius: int) -> list[str]:
        """Why a person must approve before any call is sent; empty when no approval is needed."""
        reasons = []
        if blast_radius > self.approval_threshold:
            reasons.append(f"{blast_radius} users (groups' members counted) exceed BOXCUT_APPROVAL_THRESHOLD "
                           f"({self.approval_threshold})")
        for target in targets:
            if target.status is not TargetStatus.PENDING:
                continue
            if target.type is TargetType.USER and self._unlisted_admin(target.login, target.user_id, target.role):
                reasons.append(f"{target.login or target.user_id} is a Box {target.role or 'user of unknown role'}; "
                               "admins are terminated only after approval (or when listed in BOXCUT_ALLOWED_ADMINS)")
            if target.type is TargetType.GROUP and target.admins:
                reasons.append(f"group {target.group_name} includes Box admins ({', '.join(target.admins[:5])}); "
                               "admins are terminated only after approval")
        return reasons

    def needs_approval_as_admin(self, user: BoxUser) -> bool:
        """A user whose role is admin, co-admin or unknown, and who is not in BOXCUT_ALLOWED_ADMINS."""
        return self._unlisted_admin(user.login, user.id, user.role)

    def member_protection(self, members: Iterable[BoxUser], *, service_account_id: str | None) -> str | None:
        """Why a group must not be terminated because of who is in it, or None."""
        for member in members:
            if service_account_id and member.id == service_account_id:
                return "the group includes the service account boxcut itself runs as"
            if {login_key(member.login), member.id} & self.protected_users:
                return (f"the group includes {member.login}, listed in BOXCUT_PROTECTED_USERS: a group call would "
                        "end their sessions too; name the other members one by one instead")
        return None

    def _unlisted_admin(self, login: str | None, user_id: str | None, role: str | None) -> bool:
        # An unknown role is treated as an admin's: the rule must fail closed.
        if role is not None and role.lower() not in ADMIN_ROLES:
            return False
        return not ({login_key(login or ""), user_id or ""} & self.allowed_admins)


def blast_radius(targets: Iterable[Target]) -> int:
    """How many users a job would cut off: distinct pending users plus the members of its pending groups."""
    users, members = set(), 0
    for target in targets:
        if target.status is not TargetStatus.PENDING or not target.is_resolved:
            continue
        if target.type is TargetType.USER:
            users.add(target.user_id)
        else:
            members += target.member_count or 0
    return len(users) + members


def _lowered(values: Iterable[str]) -> frozenset[str]:
    return frozenset(login_key(v) for v in values if v.strip())
