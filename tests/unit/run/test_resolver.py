"""Resolution, one target at a time: exact matches only, and every way a target ends unresolved, in words."""

from __future__ import annotations

import fakeredis
import pytest

from tests.unit.fake_box import FakeBox, directory
from worker.box.answers import BoxGroup, BoxUser
from worker.errors import BoxAnswerMismatch, BoxPermanentError, UnsafeRequest
from worker.jobs.model import Target, TargetStatus
from worker.run.directory_cache import DirectoryCache
from worker.run.resolver import RESOLVED_BY_DIRECTORY, RESOLVED_BY_LOOKUP, resolve_target


def resolved(box: FakeBox, spec: dict[str, str], copy: DirectoryCache | None = None) -> Target:
    target = Target.from_input(spec)
    resolve_target(box=box, target=target, copy=copy)
    return target


def test_two_groups_with_one_name_are_ambiguous_and_neither_is_chosen() -> None:
    box = FakeBox(groups=[BoxGroup(id="55", name="Sales"), BoxGroup(id="56", name="sales")])
    target = resolved(box, {"type": "group", "name": "Sales"})
    assert target.status is TargetStatus.AMBIGUOUS and target.group_id is None
    assert target.detail == "2 Box groups are named Sales (ids 55, 56)"


@pytest.mark.parametrize(("spec", "detail"), [
    ({"type": "group", "id": "55"}, "no Box group has id 55"),
    ({"type": "group", "name": "Nobody"}, "no Box group is named Nobody"),
    ({"type": "user", "id": "5"}, "no Box user has id 5"),
    ({"type": "user", "login": "ghost@example.com"}, "no Box user has login ghost@example.com"),
])
def test_what_box_does_not_have_ends_not_found_saying_what_was_looked_for(spec: dict[str, str],
                                                                          detail: str) -> None:
    target = resolved(FakeBox(), spec)
    assert (target.status, target.detail, target.box_id, target.resolved_by) == (TargetStatus.NOT_FOUND, detail,
                                                                                 None, None)


def test_two_users_with_one_login_are_ambiguous() -> None:
    box = FakeBox(users=[BoxUser(id="1", login="casey@example.com"), BoxUser(id="2", login="CASEY@example.com")])
    target = resolved(box, {"type": "user", "login": "casey@example.com"})
    assert target.status is TargetStatus.AMBIGUOUS and target.user_id is None
    assert target.detail == "2 Box users have login casey@example.com (ids 1, 2)"


def test_a_group_found_by_id_or_name_is_resolved_by_lookup() -> None:
    box = FakeBox(groups=[BoxGroup(id="55", name="Sales")])
    for spec in ({"type": "group", "id": "55"}, {"type": "group", "name": "sales"}):
        target = resolved(box, spec)
        assert (target.status, target.group_id, target.group_name, target.resolved_by) == (
            TargetStatus.PENDING, "55", "Sales", RESOLVED_BY_LOOKUP)


class _Refusing(FakeBox):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_user(self, user_id: str) -> BoxUser | None:
        raise self.error


@pytest.mark.parametrize(("error", "detail"), [
    (UnsafeRequest("id 'me' is not a Box id (digits only); nothing was sent"),
     "lookup refused: id 'me' is not a Box id (digits only); nothing was sent"),
    (BoxAnswerMismatch("GET /users/5: Box answered for id '6', not '5'; not used"),
     "lookup refused: GET /users/5: Box answered for id '6', not '5'; not used"),
    (BoxPermanentError(endpoint="/users/5", status=403, code="forbidden", message="no", request_id="r-1"),
     "lookup refused: Box answered 403 forbidden: no (request id r-1)"),
    (BoxPermanentError(endpoint="/users/5", status=400, code=None, message="bad", request_id=None),
     "lookup refused: Box answered 400: bad (request id None)"),
])
def test_a_lookup_refused_fails_that_target_in_words(error: Exception, detail: str) -> None:
    target = resolved(_Refusing(error), {"type": "user", "id": "5"})
    assert (target.status, target.detail, target.user_id) == (TargetStatus.FAILED, detail, None)


def test_the_directory_copy_answers_first_and_box_answers_what_it_lacks() -> None:
    box = FakeBox(users=directory(3))
    copy = DirectoryCache(fakeredis.FakeRedis(), key_prefix="t:", ttl_seconds=600)
    copy.ensure(lambda: directory(2))  # a copy made before user 3 was created
    by_id, by_login = resolved(box, {"type": "user", "id": "30000001"}, copy), resolved(
        box, {"type": "user", "login": "user00002@example.com"}, copy)
    newer = resolved(box, {"type": "user", "id": "30000003"}, copy)
    assert [(t.user_id, t.resolved_by) for t in (by_id, by_login, newer)] == [
        ("30000001", RESOLVED_BY_DIRECTORY), ("30000002", RESOLVED_BY_DIRECTORY), ("30000003", RESOLVED_BY_LOOKUP)]
    assert box.lookups == 1
    assert resolved(box, {"type": "user", "id": "39999999"}, copy).status is TargetStatus.NOT_FOUND


def test_a_snapshot_of_the_copy_answers_as_the_copy_does_in_few_round_trips() -> None:
    people = [BoxUser(id=str(100 + i), login=f"p{i}@example.com") for i in range(2500)]
    people.append(BoxUser(id="9", login="P1@Example.com"))  # a second user with p1's login: ambiguous
    copy = DirectoryCache(fakeredis.FakeRedis(), key_prefix="t:", ttl_seconds=60)
    assert copy.ensure(lambda: people)
    logins = [f"P{i}@EXAMPLE.com " for i in range(2500)] + ["nobody@example.com"]
    snap = copy.snapshot(logins=logins, ids=[" 105", "77777"])
    for login in ("p1@example.com", "p2400@example.com", "nobody@example.com", "P3@EXAMPLE.COM"):
        assert snap.by_login(login) == copy.by_login(login)
    assert len(snap.by_login("p1@example.com")) == 2
    assert snap.by_id("105") == copy.by_id("105") and snap.by_id("77777") is None
    assert snap.by_login("p2600@example.com") == []  # not asked for: the snapshot holds only what was
