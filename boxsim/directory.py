"""The simulated enterprise directory: users, groups and memberships, from a seed file or generated."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

ROLES = frozenset({"admin", "coadmin", "user"})
STATUSES = frozenset({"active", "inactive", "cannot_delete_edit", "cannot_delete_edit_upload"})
GENERATED_USER_ID_START = 20_000_001
GENERATED_GROUP_ID_START = 40_000_001
MEMBERSHIP_ID_START = 60_000_001
DEFAULT_SEED = "default.json"


@dataclass(frozen=True)
class User:
    """One enterprise user as boxsim serves it."""

    id: str
    login: str
    name: str
    role: str = "user"
    status: str = "active"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"user {self.id}: role {self.role!r} is not one of {sorted(ROLES)}")
        if self.status not in STATUSES:
            raise ValueError(f"user {self.id}: status {self.status!r} is not one of {sorted(STATUSES)}")


@dataclass(frozen=True)
class Group:
    """One enterprise group and the ids of its member users, in membership order."""

    id: str
    name: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Membership:
    """One user's membership of one group."""

    id: str
    user: User
    group: Group


class Directory:
    """The users and groups one simulator serves; safe to read and change from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        self._groups: dict[str, Group] = {}
        self._membership_ids: dict[tuple[str, str], str] = {}

    @classmethod
    def from_seed(cls, data: Mapping[str, Any]) -> Directory:
        """Build a directory from seed data `{"users": [...], "groups": [{"id", "name", "members"}]}`."""
        directory = cls()
        for entry in data.get("users", []):
            directory.add_user(_user_from_seed(entry))
        for entry in data.get("groups", []):
            members = tuple(str(m) for m in entry.get("members", []))
            directory.add_group(Group(id=str(entry["id"]), name=str(entry["name"]), members=members))
        return directory

    @classmethod
    def from_seed_file(cls, path: str | Path) -> Directory:
        """Build a directory from a seed JSON file."""
        return cls.from_seed(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def default(cls) -> Directory:
        """Build a directory from the seed bundled with boxsim (`boxsim/seeds/default.json`)."""
        text = (resources.files("boxsim") / "seeds" / DEFAULT_SEED).read_text(encoding="utf-8")
        return cls.from_seed(json.loads(text))

    def add_user(self, user: User) -> User:
        """Add a user; refuses an id already in use."""
        with self._lock:
            if user.id in self._users:
                raise ValueError(f"user id {user.id} already exists")
            self._users[user.id] = user
        return user

    def create_user(self, login: str, name: str | None = None, role: str = "user", status: str = "active") -> User:
        """Add a user under the next free generated id and return it."""
        with self._lock:
            user_id = _next_free_id(self._users, GENERATED_USER_ID_START)
            user = User(id=user_id, login=login, name=name or login.split("@")[0], role=role, status=status)
            self._users[user.id] = user
        return user

    def add_group(self, group: Group) -> Group:
        """Add a group; refuses a used id or members that are not users of this directory."""
        with self._lock:
            if group.id in self._groups:
                raise ValueError(f"group id {group.id} already exists")
            unknown = [m for m in group.members if m not in self._users]
            if unknown:
                raise ValueError(f"group {group.id}: unknown member user ids {unknown}")
            self._groups[group.id] = group
            for user_id in group.members:
                key = (group.id, user_id)
                self._membership_ids[key] = str(MEMBERSHIP_ID_START + len(self._membership_ids))
        return group

    def remove_user(self, user_id: str) -> None:
        """Delete a user (as an admin might while an incident runs): later calls naming them are refused."""
        with self._lock:
            self._users.pop(user_id, None)

    def user(self, user_id: str) -> User | None:
        """Return the user with this id, if any."""
        with self._lock:
            return self._users.get(user_id)

    def group(self, group_id: str) -> Group | None:
        """Return the group with this id, if any."""
        with self._lock:
            return self._groups.get(group_id)

    def users(self) -> list[User]:
        """Return every user, in the order they were added."""
        with self._lock:
            return list(self._users.values())

    def groups(self) -> list[Group]:
        """Return every group, in the order they were added."""
        with self._lock:
            return list(self._groups.values())

    def find_users(self, filter_term: str | None = None, user_type: str | None = None) -> list[User]:
        """Return users whose login or name starts with filter_term, case-insensitively, like Box.

        Every simulated user is a managed user, so `user_type=external` finds nobody.
        """
        if user_type == "external":
            return []
        term = (filter_term or "").lower()
        return [u for u in self.users() if u.login.lower().startswith(term) or u.name.lower().startswith(term)]

    def find_groups(self, filter_term: str | None = None) -> list[Group]:
        """Return groups whose name starts with filter_term, case-insensitively."""
        term = (filter_term or "").lower()
        return [g for g in self.groups() if g.name.lower().startswith(term)]

    def users_with_login(self, login: str) -> list[User]:
        """Return the users a login names: the exact match, else every case-insensitive match."""
        users = self.users()
        exact = [u for u in users if u.login == login]
        return exact or [u for u in users if u.login.lower() == login.lower()]

    def memberships(self, group_id: str) -> list[Membership]:
        """Return a group's memberships in membership order (empty for an unknown group)."""
        with self._lock:
            group = self._groups.get(group_id)
            if group is None:
                return []
            return [
                Membership(id=self._membership_ids[(group.id, uid)], user=self._users[uid], group=group)
                for uid in group.members
            ]


def _next_free_id(taken: Mapping[str, object], start: int) -> str:
    """Return the first numeric id at or after `start` not used in `taken`."""
    candidate = start
    while str(candidate) in taken:
        candidate += 1
    return str(candidate)


def generate(n_users: int, n_groups: int = 0, into: Directory | None = None) -> Directory:
    """Add generated users (user00001@example.com, "User 00001", ids from 20000001) and groups.

    Generated groups ("Group 0001"...) share the generated users out round-robin.
    """
    directory = into if into is not None else Directory()
    taken = {u.id for u in directory.users()}
    start = 0
    while str(GENERATED_USER_ID_START + start) in taken:
        start += 1  # a second call continues the numbering instead of clashing
    created = [
        directory.add_user(
            User(id=str(GENERATED_USER_ID_START + n), login=f"user{n + 1:05d}@example.com", name=f"User {n + 1:05d}")
        )
        for n in range(start, start + n_users)
    ]
    existing_groups = {g.id for g in directory.groups()}
    for index in range(n_groups):
        members = tuple(u.id for u in created[index::n_groups])
        group_id = _next_free_id(dict.fromkeys(existing_groups), GENERATED_GROUP_ID_START)
        existing_groups.add(group_id)
        directory.add_group(Group(id=group_id, name=f"Group {index + 1:04d}", members=members))
    return directory


def _user_from_seed(entry: Mapping[str, Any]) -> User:
    """Build a user from one seed entry; role and status default to a plain active user."""
    login = str(entry["login"])
    return User(
        id=str(entry["id"]),
        login=login,
        name=str(entry.get("name", login)),
        role=str(entry.get("role", "user")),
        status=str(entry.get("status", "active")),
    )
