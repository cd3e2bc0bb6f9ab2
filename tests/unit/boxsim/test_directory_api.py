"""boxsim users, groups and memberships endpoints: prefix search, fields, paging, query validation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from boxsim import BoxSim, Directory, Group, SimConfig, User, generate, validate_response_body


@pytest.fixture(scope="module")
def sim() -> Iterator[BoxSim]:
    with BoxSim(SimConfig()) as running:
        yield running


@pytest.fixture(scope="module")
def api(sim: BoxSim) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sim.issue_token()}"
    yield session
    session.close()


def get(sim: BoxSim, api: requests.Session, path: str, **params: Any) -> requests.Response:
    return api.get(f"{sim.base_url}{path}", params=params, timeout=10)


def logins(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["login"] for entry in response.json()["entries"]]


def test_seed_holds_the_documented_users_and_groups(sim: BoxSim) -> None:
    directory = sim.directory
    jdoe = directory.user("17738362")
    assert jdoe == User(id="17738362", login="jdoe@example.com", name="Jane Doe")
    assert [u.role for u in directory.users_with_login("admin@example.com")] == ["admin"]
    assert [u.login for u in directory.users_with_login("casey@example.com")] == ["casey@example.com"]
    members = {g.name: len(g.members) for g in directory.groups()}
    assert members["Contractors"] == 3 and members["Contractors EU"] == 2 and members["Engineering"] == 30


def test_filter_term_is_a_case_insensitive_prefix_of_login_or_name(sim: BoxSim, api: requests.Session) -> None:
    assert logins(get(sim, api, "/users", filter_term="ann@example.com")) == ["ann@example.com", "ann@example.com.au"]
    assert logins(get(sim, api, "/users", filter_term="CASEY@")) == ["Casey@Example.com", "casey@example.com"]
    assert logins(get(sim, api, "/users", filter_term="jane d")) == ["jdoe@example.com"]
    assert logins(get(sim, api, "/users", filter_term="example.com")) == []  # not a substring search


def test_user_type_external_finds_no_managed_user(sim: BoxSim, api: requests.Session) -> None:
    assert logins(get(sim, api, "/users", filter_term="jdoe", user_type="external")) == []
    assert logins(get(sim, api, "/users", filter_term="jdoe", user_type="all")) == ["jdoe@example.com"]


def test_users_carry_standard_fields_or_only_the_requested_ones(sim: BoxSim, api: requests.Session) -> None:
    standard = get(sim, api, "/users", filter_term="admin@").json()["entries"][0]
    chosen = get(sim, api, "/users", filter_term="admin@", fields="login,role").json()["entries"][0]

    assert standard == {
        "type": "user",
        "id": "10000001",
        "name": "Avery Admin",
        "login": "admin@example.com",
        "role": "admin",
        "status": "active",
    }
    assert chosen == {"type": "user", "id": "10000001", "login": "admin@example.com", "role": "admin"}


def test_offset_paging_walks_every_user_once(sim: BoxSim, api: requests.Session) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        page = get(sim, api, "/users", limit=7, offset=offset).json()
        assert page["limit"] == 7 and page["offset"] == offset and page["total_count"] == 50
        if not page["entries"]:
            break
        seen += [e["id"] for e in page["entries"]]
        offset += 7
    assert seen == [u.id for u in sim.directory.users()]


def test_marker_paging_walks_every_user_once_and_ends_with_null(sim: BoxSim, api: requests.Session) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"usemarker": "true", "limit": 20}
    pages = 0
    while True:
        body = get(sim, api, "/users", **params).json()
        assert "total_count" not in body and body["limit"] == 20
        seen += [e["id"] for e in body["entries"]]
        pages += 1
        if body["next_marker"] is None:
            break
        params["marker"] = body["next_marker"]
    assert pages == 3
    assert seen == [u.id for u in sim.directory.users()]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "10001"}, "offset"),
        ({"offset": "-1"}, "offset"),
        ({"usemarker": "yes"}, "usemarker"),
        ({"user_type": "robots"}, "user_type"),
        ({"marker": "abc"}, "marker"),
        ({"usemarker": "true", "marker": "not-ours"}, "marker"),
    ],
)
def test_invalid_user_query_parameters_are_400(
    sim: BoxSim, api: requests.Session, params: dict[str, str], field: str
) -> None:
    response = get(sim, api, "/users", **params)

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["code"] == "bad_request" and body["status"] == 400
    assert [e["name"] for e in body["context_info"]["errors"]] == [field]
    assert body["context_info"]["errors"][0]["reason"] == "invalid_parameter"


def test_limit_of_1000_and_offset_of_10000_are_allowed(sim: BoxSim, api: requests.Session) -> None:
    assert get(sim, api, "/users", limit=1000).status_code == 200
    assert get(sim, api, "/users", offset=10000).json()["entries"] == []


def test_get_user_by_id_honours_fields_and_404s_when_unknown(sim: BoxSim, api: requests.Session) -> None:
    assert get(sim, api, "/users/17738362", fields="login").json() == {
        "type": "user",
        "id": "17738362",
        "login": "jdoe@example.com",
    }
    missing = get(sim, api, "/users/99999999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found" and missing.json()["request_id"]


def test_group_filter_is_a_name_prefix(sim: BoxSim, api: requests.Session) -> None:
    names = [g["name"] for g in get(sim, api, "/groups", filter_term="contractors").json()["entries"]]
    only_eu = get(sim, api, "/groups", filter_term="Contractors EU").json()

    assert names == ["Contractors", "Contractors EU"]
    assert [g["name"] for g in only_eu["entries"]] == ["Contractors EU"] and only_eu["total_count"] == 1
    assert get(sim, api, "/groups", limit=1001).status_code == 400


def test_get_group_by_id(sim: BoxSim, api: requests.Session) -> None:
    assert get(sim, api, "/groups/30000001").json()["name"] == "Contractors"
    assert get(sim, api, "/groups/123").status_code == 404


def test_memberships_page_with_total_count(sim: BoxSim, api: requests.Session) -> None:
    first = get(sim, api, "/groups/30000003/memberships", limit=25).json()
    rest = get(sim, api, "/groups/30000003/memberships", limit=25, offset=25).json()

    assert first["total_count"] == rest["total_count"] == 30
    assert len(first["entries"]) == 25 and len(rest["entries"]) == 5
    logins = [m["user"]["login"] for m in first["entries"] + rest["entries"]]
    assert logins == [f"eng{i:02d}@example.com" for i in range(1, 31)]
    entry = first["entries"][0]
    assert entry["type"] == "group_membership" and entry["role"] == "member"
    assert entry["group"] == {"type": "group", "id": "30000003", "name": "Engineering"}
    assert set(entry["user"]) == {"type", "id", "name", "login"}


def test_memberships_limit_over_1000_is_400_and_unknown_group_is_404(sim: BoxSim, api: requests.Session) -> None:
    assert get(sim, api, "/groups/30000001/memberships", limit=1000).status_code == 200
    assert get(sim, api, "/groups/30000001/memberships", limit=1001).status_code == 400
    assert get(sim, api, "/groups/404/memberships").status_code == 404


@pytest.mark.parametrize(
    ("operation_id", "path"),
    [
        ("get_users", "/users"),
        ("get_users_id", "/users/17738362"),
        ("get_groups", "/groups"),
        ("get_groups_id", "/groups/30000001"),
        ("get_groups_id_memberships", "/groups/30000003/memberships"),
    ],
)
def test_answers_match_the_spec_response_schemas(
    sim: BoxSim, api: requests.Session, operation_id: str, path: str
) -> None:
    response = get(sim, api, path)

    assert validate_response_body(operation_id, 200, response.json()) == []


def test_spec_response_check_can_fail() -> None:
    assert validate_response_body("get_users", 200, {"entries": [{"type": "user", "id": 5}]}) != []


def test_unknown_api_path_is_404_and_wrong_method_is_405(sim: BoxSim, api: requests.Session) -> None:
    assert get(sim, api, "/folders/0").status_code == 404
    response = api.delete(f"{sim.base_url}/users", timeout=10)
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


def test_generated_directory_numbering() -> None:
    directory = generate(3, n_groups=2)

    assert [(u.id, u.login, u.name) for u in directory.users()] == [
        ("20000001", "user00001@example.com", "User 00001"),
        ("20000002", "user00002@example.com", "User 00002"),
        ("20000003", "user00003@example.com", "User 00003"),
    ]
    assert [g.members for g in directory.groups()] == [("20000001", "20000003"), ("20000002",)]
    assert generate(1, into=directory).users()[-1].login == "user00004@example.com"


def test_config_generates_users_after_a_seed_file(tmp_path: Any) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text('{"users": [{"id": "1", "login": "a@x.com", "name": "A"}], "groups": []}')

    with BoxSim(SimConfig(seed_file=seed, generate_users=2)) as sim:
        assert [u.id for u in sim.directory.users()] == ["1", "20000001", "20000002"]


def test_directory_refuses_duplicates_and_unknown_members() -> None:
    directory = Directory()
    directory.add_user(User(id="1", login="a@x.com", name="A"))
    with pytest.raises(ValueError, match="already exists"):
        directory.add_user(User(id="1", login="b@x.com", name="B"))
    with pytest.raises(ValueError, match="unknown member"):
        directory.add_group(Group(id="9", name="G", members=("1", "2")))
    with pytest.raises(ValueError, match="role"):
        User(id="3", login="c@x.com", name="C", role="owner")


def test_users_added_while_running_are_served() -> None:
    with BoxSim(SimConfig()) as sim, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {sim.issue_token()}"
        user = sim.directory.create_user("late.arrival@example.com", name="Late Arrival")

        assert logins(get(sim, api, "/users", filter_term="late.arrival")) == ["late.arrival@example.com"]
        assert get(sim, api, f"/users/{user.id}").status_code == 200
