"""Resolution: turn each target's login, e-mail, id or group name into exactly one Box identity.

Only exact matches count (Box's `filter_term` is a prefix search, so the client filters); zero matches end the
target `not_found`, several end it `ambiguous`, and neither ever leads to a terminate call.
"""

from __future__ import annotations

from typing import Protocol

from worker.box.answers import BoxGroup, BoxUser
from worker.errors import BoxAnswerMismatch, BoxPermanentError, UnsafeRequest
from worker.jobs.model import Target, TargetStatus, TargetType

RESOLVED_BY_LOOKUP = "lookup"
RESOLVED_BY_DIRECTORY = "directory"


class DirectoryLookups(Protocol):
    """The Box client calls that resolution needs."""

    def find_users_by_login(self, login: str) -> list[BoxUser]: ...

    def get_user(self, user_id: str) -> BoxUser | None: ...

    def find_groups_by_name(self, name: str) -> list[BoxGroup]: ...

    def get_group(self, group_id: str) -> BoxGroup | None: ...


class DirectoryCopy(Protocol):
    """A copy of the enterprise directory (see worker.run.directory_cache), consulted before Box itself."""

    def by_login(self, login: str) -> list[BoxUser]: ...

    def by_id(self, user_id: str) -> BoxUser | None: ...


def resolve_target(*, box: DirectoryLookups, target: Target, copy: DirectoryCopy | None = None) -> None:
    """Resolve one pending target in place: set its Box id, or end it `not_found`, `ambiguous` or `failed`.

    A lookup Box refuses for good (403, 400) fails this target alone, and so does one boxcut refuses to send (an
    id that is not a Box id, in a record written before ids were checked at every entrance) or whose answer names
    another identity; faults that may pass (5xx, timeouts) propagate, so the task retries the job later.
    """
    try:
        if target.type is TargetType.USER:
            _resolve_user(box, target, copy)
        else:
            _resolve_group(box, target)
    except BoxPermanentError as error:
        code = f" {error.code}" if error.code else ""
        _settle(target, TargetStatus.FAILED, f"lookup refused: Box answered {error.status}{code}: {error.message}"
                f" (request id {error.request_id})")
    except (UnsafeRequest, BoxAnswerMismatch) as error:
        _settle(target, TargetStatus.FAILED, f"lookup refused: {error}")


def _resolve_user(box: DirectoryLookups, target: Target, copy: DirectoryCopy | None) -> None:
    user_id, login = target.input.get("id"), target.input.get("login")
    matches, target.resolved_by = _from_copy(copy, user_id, login), RESOLVED_BY_DIRECTORY
    if not matches:  # not in the copy (or no copy): ask Box, which also finds users created since
        matches, target.resolved_by = _from_box(box, user_id, login), RESOLVED_BY_LOOKUP
    if not matches:
        what = f"id {user_id}" if user_id else f"login {login}"
        _settle(target, TargetStatus.NOT_FOUND, f"no Box user has {what}")
        return
    if len(matches) > 1:
        ids = ", ".join(u.id for u in matches)
        _settle(target, TargetStatus.AMBIGUOUS, f"{len(matches)} Box users have login {login} (ids {ids})")
        return
    target.user_id, target.login, target.role = matches[0].id, matches[0].login, matches[0].role


def _from_box(box: DirectoryLookups, user_id: str | None, login: str | None) -> list[BoxUser]:
    if user_id:
        found = box.get_user(user_id)
        return [found] if found else []
    return box.find_users_by_login(login or "")


def _from_copy(copy: DirectoryCopy | None, user_id: str | None, login: str | None) -> list[BoxUser]:
    if copy is None:
        return []
    if user_id:
        found = copy.by_id(user_id)
        return [found] if found else []
    return copy.by_login(login or "")


def _resolve_group(box: DirectoryLookups, target: Target) -> None:
    group_id, name = target.input.get("id"), target.input.get("name")
    if group_id:
        group = box.get_group(group_id)
        if group is None:
            _settle(target, TargetStatus.NOT_FOUND, f"no Box group has id {group_id}")
            return
        matches = [group]
    else:
        matches = box.find_groups_by_name(name or "")
        if not matches:
            _settle(target, TargetStatus.NOT_FOUND, f"no Box group is named {name}")
            return
    if len(matches) > 1:
        ids = ", ".join(g.id for g in matches)
        _settle(target, TargetStatus.AMBIGUOUS, f"{len(matches)} Box groups are named {name} (ids {ids})")
        return
    target.group_id, target.group_name = matches[0].id, matches[0].name
    target.resolved_by = RESOLVED_BY_LOOKUP


def _settle(target: Target, status: TargetStatus, detail: str) -> None:
    target.status, target.detail, target.resolved_by = status, detail, None
