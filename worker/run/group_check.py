"""Who a group call would reach: a group's members, checked against the policy before the group is terminated.

`POST /groups/terminate_sessions` ends the sessions of every member, so a group is only as safe as its members:
a protected member (or the service account) makes the whole group `protected`, and an admin member makes the
job wait for approval, exactly as if they had been named alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from worker.box.answers import BoxUser
from worker.errors import BoxAnswerMismatch, BoxPermanentError, UnsafeRequest
from worker.jobs.model import Target, TargetStatus
from worker.run.policy import Policy


class MemberLookups(Protocol):
    """The Box client calls a group check needs."""

    def group_members(self, group_id: str) -> tuple[int, list[BoxUser]]: ...

    def get_user(self, user_id: str) -> BoxUser | None: ...


def check_group(
    *, box: MemberLookups, policy: Policy, target: Target, record_members: bool, service_account_id: str | None,
    known_user: Callable[[str], BoxUser | None],
) -> None:
    """Count a pending group's members and apply the policy to them, in place.

    `known_user` finds a member (with their role) in the directory copy when there is one; members it does not
    know are looked up one by one, since memberships carry no role.
    """
    try:
        target.member_count, members = box.group_members(target.group_id or "")
        members = [known_user(m.id) or box.get_user(m.id) or m for m in members]
    except BoxPermanentError as error:
        target.status = TargetStatus.FAILED
        target.detail = f"listing the group's members was refused: Box answered {error.status} {error.code or ''}"
        return
    except (UnsafeRequest, BoxAnswerMismatch) as error:
        # A member id that is not a Box id, or an answer about someone else: this group is not checked, so not sent.
        target.status, target.detail = TargetStatus.FAILED, f"checking the group's members was refused: {error}"
        return
    if record_members:
        target.members = sorted(m.login for m in members)
    target.admins = sorted(m.login for m in members if policy.needs_approval_as_admin(m))
    reason = policy.member_protection(members, service_account_id=service_account_id)
    if reason:
        target.status, target.detail = TargetStatus.PROTECTED, reason
