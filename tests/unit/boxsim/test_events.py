"""boxsim's enterprise event stream: positions, limits, repeats, empty pages, forgotten history, Shield alerts,
and the query checked against Box's spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from boxsim import BoxSim, SimConfig, validate_response_body
from boxsim.events import SHIELD_CATEGORIES

JDOE, RROE = "17738362", "17738363"


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with BoxSim(SimConfig()) as running:
        yield running


@pytest.fixture
def api(sim: BoxSim) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sim.issue_token()}"
    yield session
    session.close()


def events(sim: BoxSim, api: requests.Session, **params: Any) -> dict[str, Any]:
    answer = api.get(f"{sim.base_url}/events", params={"stream_type": "admin_logs_streaming", **params}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert validate_response_body("get_events", 200, body) == []
    return body


def add(sim: BoxSim, *specs: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    answer = requests.post(f"{sim.admin_url}/events", json={"events": list(specs), **options}, timeout=10)
    assert answer.status_code == 200, answer.text
    added: list[dict[str, Any]] = answer.json()["events"]
    return added


def test_now_gives_no_events_and_the_latest_position_from_which_new_events_follow(
        sim: BoxSim, api: requests.Session) -> None:
    add(sim, {"event_type": "LOGIN", "user_id": JDOE})
    now = events(sim, api, stream_position="now")
    assert now["entries"] == [] and now["chunk_size"] == 0
    later = add(sim, {"event_type": "DOWNLOAD", "user_id": RROE})
    page = events(sim, api, stream_position=now["next_stream_position"])
    assert [e["event_id"] for e in page["entries"]] == [later[0]["event_id"]]
    assert page["entries"][0]["created_by"] == {"type": "user", "id": RROE, "name": "Richard Roe",
                                                "login": "rroe@example.com"}
    assert int(page["next_stream_position"]) > int(now["next_stream_position"])


def test_limit_pages_through_the_stream_and_zero_reads_from_the_start(sim: BoxSim, api: requests.Session) -> None:
    added = add(sim, *({"event_type": "LOGIN", "user_id": JDOE} for _ in range(5)))
    first = events(sim, api, stream_position="0", limit=2)
    second = events(sim, api, stream_position=first["next_stream_position"], limit=2)
    third = events(sim, api, stream_position=second["next_stream_position"], limit=2)
    read = [e["event_id"] for page in (first, second, third) for e in page["entries"]]
    assert read == [e["event_id"] for e in added]
    assert events(sim, api, stream_position=third["next_stream_position"])["entries"] == []


def test_duplicates_repeat_the_same_event_ids_later_in_the_stream(sim: BoxSim, api: requests.Session) -> None:
    added = add(sim, {"event_type": "LOGIN", "user_id": JDOE}, {"event_type": "LOGIN", "user_id": RROE},
                duplicate=True)
    ids = [e["event_id"] for e in events(sim, api, stream_position="0")["entries"]]
    assert ids == [e["event_id"] for e in added] * 2


def test_an_empty_page_comes_while_more_events_remain(sim: BoxSim, api: requests.Session) -> None:
    before = add(sim, {"event_type": "LOGIN", "user_id": JDOE})
    after = add(sim, {"event_type": "LOGIN", "user_id": RROE}, empty_page_before=True)
    first = events(sim, api, stream_position="0")
    assert [e["event_id"] for e in first["entries"]] == [before[0]["event_id"]]
    empty = events(sim, api, stream_position=first["next_stream_position"])
    assert empty["entries"] == [] and empty["next_stream_position"] != first["next_stream_position"]
    rest = events(sim, api, stream_position=empty["next_stream_position"])
    assert [e["event_id"] for e in rest["entries"]] == [after[0]["event_id"]]


def test_a_position_from_before_the_events_kept_is_refused(sim: BoxSim, api: requests.Session) -> None:
    add(sim, {"event_type": "LOGIN", "user_id": JDOE})
    old = events(sim, api, stream_position="0")["next_stream_position"]
    add(sim, {"event_type": "LOGIN", "user_id": JDOE})
    assert requests.post(f"{sim.admin_url}/events/forget", timeout=10).json() == {"forgotten": 2}
    answer = api.get(f"{sim.base_url}/events", params={"stream_type": "admin_logs_streaming",
                                                       "stream_position": str(int(old) - 1)}, timeout=10)
    assert answer.status_code == 400 and "older than the events kept" in answer.text
    assert events(sim, api, stream_position="now")["entries"] == []


@pytest.mark.parametrize("category", sorted(SHIELD_CATEGORIES))
def test_shield_alerts_of_each_category_name_the_user_by_a_numeric_id_and_an_email(
        sim: BoxSim, api: requests.Session, category: str) -> None:
    add(sim, {"event_type": "SHIELD_ALERT", "user_id": JDOE, "rule_category": category, "priority": "High",
              "risk_score": 91})
    (alert,) = events(sim, api, stream_position="0", event_type="SHIELD_ALERT")["entries"]
    assert alert["created_by"]["id"] == "2"
    shield = alert["additional_details"]["shield_alert"]
    assert shield["user"] == {"id": 17738362, "name": "Jane Doe", "email": "jdoe@example.com"}
    assert (shield["rule_category"], shield["priority"], shield["risk_score"]) == (category, "high", 91)
    assert shield["alert_summary"] == SHIELD_CATEGORIES[category]


def test_event_type_filters_and_created_after_applies_to_admin_logs_only(sim: BoxSim, api: requests.Session) -> None:
    add(sim, {"event_type": "LOGIN", "user_id": JDOE, "created_at": "2026-11-01T10:00:00+00:00"},
        {"event_type": "DOWNLOAD", "user_id": JDOE, "created_at": "2026-11-02T10:00:00+00:00"})
    only = events(sim, api, stream_position="0", event_type="DOWNLOAD")["entries"]
    assert [e["event_type"] for e in only] == ["DOWNLOAD"]
    after = "2026-11-01T12:00:00+00:00"
    assert len(events(sim, api, stream_position="0", created_after=after)["entries"]) == 2
    logs = api.get(f"{sim.base_url}/events", params={"stream_type": "admin_logs", "created_after": after},
                   timeout=10).json()["entries"]
    assert [e["event_type"] for e in logs] == ["DOWNLOAD"]


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "501"}, "limit"), ({"limit": "many"}, "limit"), ({"event_type": "NOT_A_TYPE"}, "event_type"),
    ({"stream_position": "yesterday"}, "stream_position"), ({"stream_type": "changes"}, "stream_type"),
])
def test_a_query_boxs_spec_refuses_is_a_400_naming_the_parameter(
        sim: BoxSim, api: requests.Session, params: dict[str, str], field: str) -> None:
    answer = api.get(f"{sim.base_url}/events", params={"stream_type": "admin_logs_streaming", **params}, timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["context_info"]["errors"][0]["name"] == field


def test_adding_an_event_for_an_unknown_user_is_refused(sim: BoxSim) -> None:
    answer = requests.post(f"{sim.admin_url}/events",
                           json={"events": [{"event_type": "LOGIN", "user_id": "1"}]}, timeout=10)
    assert answer.status_code == 400 and "not a user boxsim knows" in answer.json()["error"]
