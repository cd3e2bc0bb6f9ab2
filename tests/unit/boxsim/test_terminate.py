"""boxsim terminate_sessions endpoints: Box's 202, the documented 400s, unknown ids, recorded terminations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from boxsim import BoxSim, SimConfig, validate_request_body

ACCEPTED = {"message": "Request is successful, please check the admin events for the status of the job"}
HELP_URL = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/"


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with BoxSim(SimConfig()) as running:
        yield running


@pytest.fixture
def api(sim: BoxSim) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {sim.issue_token()}"
        yield session


def post(sim: BoxSim, api: requests.Session, endpoint: str, body: Any) -> requests.Response:
    return api.post(f"{sim.base_url}/{endpoint}/terminate_sessions", json=body, timeout=10)


def assert_bad_request(response: requests.Response, message: str, field: str | None = None) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error" and body["status"] == 400 and body["code"] == "bad_request"
    assert body["message"] == message
    assert body["help_url"] == HELP_URL
    assert len(body["request_id"]) >= 8 and int(body["request_id"], 16) >= 0
    if field is not None:
        assert body["context_info"]["errors"][0]["name"] == field
        assert body["context_info"]["errors"][0]["reason"] == "invalid_parameter"


def test_users_terminate_answers_202_with_boxs_exact_message(sim: BoxSim, api: requests.Session) -> None:
    response = post(sim, api, "users", {"user_ids": ["17738362"], "user_logins": ["rroe@example.com"]})

    assert response.status_code == 202
    assert response.json() == ACCEPTED
    assert sim.terminated_user_ids() == {"17738362": 1, "17738363": 1}
    assert sim.terminated_user_logins() == {"rroe@example.com": 1}


def test_groups_terminate_answers_202_and_counts_repeats(sim: BoxSim, api: requests.Session) -> None:
    for _ in range(2):
        response = post(sim, api, "groups", {"group_ids": ["30000001", "30000002"]})
        assert response.status_code == 202 and response.json() == ACCEPTED

    assert sim.terminated_group_ids() == {"30000001": 2, "30000002": 2}


def test_a_login_matches_exactly_before_case_insensitively(sim: BoxSim, api: requests.Session) -> None:
    assert post(sim, api, "users", {"user_ids": [], "user_logins": ["Casey@Example.com"]}).status_code == 202
    assert sim.terminated_user_ids() == {"10000005": 1}
    assert post(sim, api, "users", {"user_ids": [], "user_logins": ["RROE@example.com"]}).status_code == 202
    assert sim.terminated_user_ids() == {"10000005": 1, "17738363": 1}


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        ({"user_ids": ["17738362"]}, "Bad Request", "user_logins"),
        ({"user_logins": ["jdoe@example.com"]}, "Bad Request", "user_ids"),
        ({"user_ids": [17738362], "user_logins": []}, "User id format is string", "user_ids"),
        ({"user_ids": [], "user_logins": []}, "Users can not be NULL or EMPTY", None),
        ({"user_ids": None, "user_logins": None}, "Users can not be NULL or EMPTY", None),
        ({}, "Users can not be NULL or EMPTY", None),
        ({"user_ids": "17738362", "user_logins": []}, "Bad Request", "user_ids"),
        (["17738362"], "Bad Request", "body"),
    ],
)
def test_invalid_users_bodies_are_400(
    sim: BoxSim, api: requests.Session, body: Any, message: str, field: str | None
) -> None:
    assert_bad_request(post(sim, api, "users", body), message, field)
    assert sim.terminated_user_ids() == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"group_ids": []}, "Groups can not be NULL or EMPTY"),
        ({}, "Groups can not be NULL or EMPTY"),
        ({"group_ids": [30000001]}, "group id format is string"),
    ],
)
def test_invalid_groups_bodies_are_400(sim: BoxSim, api: requests.Session, body: Any, message: str) -> None:
    assert_bad_request(post(sim, api, "groups", body), message, "group_ids")
    assert sim.terminated_group_ids() == {}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"user_ids": ["17738362"], "user_logins": []}', "text/plain"),
        ("user_ids=17738362", "application/x-www-form-urlencoded"),
    ],
)
def test_a_payload_that_is_not_json_is_400(sim: BoxSim, api: requests.Session, data: str, content_type: str) -> None:
    url = f"{sim.base_url}/users/terminate_sessions"

    response = api.post(url, data=data, headers={"Content-Type": content_type}, timeout=10)

    assert_bad_request(response, "Supported payload format is JSON")


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("users", {"user_ids": ["17738362", "99999999"], "user_logins": []}),
        ("users", {"user_ids": [], "user_logins": ["jdoe@example.com", "nobody@example.com"]}),
        ("groups", {"group_ids": ["30000001", "31999999"]}),
    ],
)
def test_an_unknown_id_refuses_the_whole_batch(
    sim: BoxSim, api: requests.Session, endpoint: str, body: dict[str, Any]
) -> None:
    response = post(sim, api, endpoint, body)

    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    assert sim.terminated_user_ids() == {} and sim.terminated_group_ids() == {}


def test_terminations_are_visible_through_the_admin_endpoint(sim: BoxSim, api: requests.Session) -> None:
    post(sim, api, "users", {"user_ids": ["17738362"], "user_logins": []})

    body = requests.get(f"{sim.admin_url}/terminations", timeout=10).json()

    assert body["user_ids"] == {"17738362": 1} and body["group_ids"] == {}


def test_validate_request_body_checks_against_the_spec_schema() -> None:
    assert validate_request_body("post_users_terminate_sessions", {"user_ids": ["1"], "user_logins": []}) == []
    assert validate_request_body("post_groups_terminate_sessions", {"group_ids": ["1"]}) == []
    problems = validate_request_body("post_users_terminate_sessions", {"user_ids": [1]})
    assert problems == ["$: 'user_logins' is a required property", "$.user_ids[0]: 1 is not of type 'string'"]
    assert validate_request_body("post_groups_terminate_sessions", {"group_ids": "1"}) != []


def test_validate_request_body_refuses_unknown_operations() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        validate_request_body("delete_files_id", {})
    with pytest.raises(ValueError, match="no request body"):
        validate_request_body("get_users", {})
