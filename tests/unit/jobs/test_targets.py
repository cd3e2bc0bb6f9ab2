"""The one target check, field by field."""

from __future__ import annotations

import pytest

from worker.errors import InvalidRequest
from worker.jobs.targets import check_target


@pytest.mark.parametrize(("spec", "field", "problem"), [
    ({"type": "user", "login": ""}, "t.login", "must not be empty"),
    ({"type": "user", "id": "", "login": "a@example.com"}, "t", "gives both id and login; give one"),
    ({"type": "group", "name": None}, "t", "needs an id or a name"),
    ({"type": "user", "login": "   "}, "t.login", "must not be empty"),
    ({"type": "user", "login": 123}, "t.login", "must be a string"),
    ({"type": "user", "id": True}, "t.id", "must be a string or an integer"),
    ({"type": "user", "id": "12a"}, "t.id", "is not a Box id (digits only)"),
    ({"type": "group", "id": "1" * 21}, "t.id", "is not a Box id (at most 20 digits, got 21)"),
    ({"type": "user", "id": "7", "login": "a@example.com"}, "t", "gives both id and login; give one"),
    ({"type": "robot", "id": "7"}, "t.type", 'must be "user" or "group"'),
    (["user"], "t", "must be an object"),
])
def test_a_bad_target_is_refused_naming_its_field(spec: object, field: str, problem: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_target(spec, "t")
    assert (refused.value.field, refused.value.problem) == (field, problem)


def test_a_good_target_comes_back_stripped_with_its_own_reason() -> None:
    assert check_target({"type": "user", "id": 17738362, "reason": " layoff ", "extra": "x"}, "t") == {
        "type": "user", "id": "17738362", "reason": "layoff"}
    assert check_target({"type": "group", "name": " Sales ", "id": None}, "t") == {"type": "group", "name": "Sales"}
