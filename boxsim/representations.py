"""The JSON shapes boxsim answers with for users, groups and group memberships."""

from __future__ import annotations

from typing import Any

from boxsim.directory import Group, Membership, User

USER_FIELDS = ("name", "login", "role", "status")
GROUP_FIELDS = ("name", "group_type")


def user_json(user: User, fields: list[str] | None = None) -> dict[str, Any]:
    """Return a user: type and id plus the requested fields, or the standard ones when none are asked."""
    values = {"name": user.name, "login": user.login, "role": user.role, "status": user.status}
    wanted = USER_FIELDS if fields is None else [f for f in fields if f in values]
    return {"type": "user", "id": user.id, **{f: values[f] for f in wanted}}


def group_json(group: Group, fields: list[str] | None = None) -> dict[str, Any]:
    """Return a group: type and id plus the requested fields, or the standard ones when none are asked."""
    values = {"name": group.name, "group_type": "managed_group"}
    wanted = GROUP_FIELDS if fields is None else [f for f in fields if f in values]
    return {"type": "group", "id": group.id, **{f: values[f] for f in wanted}}


def membership_json(membership: Membership) -> dict[str, Any]:
    """Return a group membership with mini user and group objects, as Box lists them."""
    user, group = membership.user, membership.group
    return {
        "type": "group_membership",
        "id": membership.id,
        "user": {"type": "user", "id": user.id, "name": user.name, "login": user.login},
        "group": {"type": "group", "id": group.id, "name": group.name},
        "role": "member",
    }
