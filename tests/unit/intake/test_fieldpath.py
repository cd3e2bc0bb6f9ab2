"""The adapters' field-path helper: parsing, fanning out over lists, filters, fallbacks."""

from __future__ import annotations

import pytest

from worker.intake.adapters.fieldpath import first_found, nodes_at, parse_path, split_list_head, values_at

PAYLOAD = {
    "result": {"user": " jdoe@example.com ", "count": 37, "ok": True, "ratio": 0.5, "empty": "", "none": None},
    "alerts": [
        {"_id": "a1", "user": {"email": "jdoe@example.com", "name": "jdoe"}},
        {"_id": "a2", "user": {"name": "rroe@example.com"}},
        "not an alert",
    ],
    "Entities": [
        {"Type": "account", "Name": "jdoe"},
        {"Type": "ip", "Address": "203.0.113.7"},
        {"Type": "Account", "Name": "rroe"},
    ],
    "single": {"user": "solo@example.com"},
    "multi": {"user": ["a@example.com", 17, {"x": 1}]},
}


def test_plain_path_strips_and_turns_integers_into_strings() -> None:
    assert values_at(PAYLOAD, "result.user") == ["jdoe@example.com"]
    assert values_at(PAYLOAD, "result.count") == ["37"]


@pytest.mark.parametrize("path", ["result.ok", "result.ratio", "result.empty", "result.none", "result", "nope.x"])
def test_other_values_and_missing_keys_give_nothing(path: str) -> None:
    assert values_at(PAYLOAD, path) == []


def test_brackets_fan_out_over_every_element() -> None:
    assert values_at(PAYLOAD, "alerts[]._id") == ["a1", "a2"]
    assert values_at(PAYLOAD, "alerts[].user.name") == ["jdoe", "rroe@example.com"]


def test_a_lone_object_under_brackets_counts_as_one_element() -> None:
    assert values_at(PAYLOAD, "single[].user") == ["solo@example.com"]


def test_a_list_at_the_end_of_a_path_counts_element_by_element() -> None:
    assert values_at(PAYLOAD, "multi.user") == ["a@example.com", "17"]


def test_filters_keep_matching_elements_ignoring_case() -> None:
    assert values_at(PAYLOAD, "Entities[Type=account].Name") == ["jdoe", "rroe"]
    assert nodes_at(PAYLOAD, "Entities[Type=ip]") == [{"Type": "ip", "Address": "203.0.113.7"}]


def test_a_top_level_list() -> None:
    assert values_at([{"user": "a@example.com"}, {"user": "b@example.com"}], "[].user") == [
        "a@example.com", "b@example.com"]


@pytest.mark.parametrize("path", ["", "a..b", "a.", ".a", "a[", "a[]b", "a]", "a[=x]"])
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        parse_path(path)


def test_filter_values_may_hold_dots() -> None:
    assert values_at({"x": [{"d": "example.com", "v": "1"}]}, "x[d=example.com].v") == ["1"]


def test_first_found_falls_back_in_order_without_adding() -> None:
    assert first_found(PAYLOAD, ["result.nope", "result.user", "result.count"]) == ["jdoe@example.com"]
    assert first_found(PAYLOAD, ["result.nope"]) == []


def test_first_found_falls_back_per_element_under_a_shared_list() -> None:
    assert split_list_head(["alerts[].user.email", "alerts[].user.name"]) == ("alerts[]", ["user.email", "user.name"])
    assert first_found(PAYLOAD, ["alerts[].user.email", "alerts[].user.name"]) == [
        "jdoe@example.com", "rroe@example.com"]


def test_paths_under_different_heads_fall_back_as_a_whole() -> None:
    assert split_list_head(["alerts[].user.email", "result.user"]) is None
    assert first_found(PAYLOAD, ["alerts[].user.email", "result.user"]) == ["jdoe@example.com"]
