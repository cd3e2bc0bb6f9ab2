"""boxsim per-token rate limit and scripted faults (status x times, latency, dropped connections)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from boxsim import BoxSim, FaultRule, SimConfig
from boxsim.ratelimit import RateLimiter
from boxsim.testing import ccg_form

TERMINATE = "/2.0/users/terminate_sessions"
BODY = {"user_ids": ["17738362"], "user_logins": []}


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with BoxSim(SimConfig()) as running:
        yield running


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def terminate(sim: BoxSim, token: str) -> requests.Response:
    return requests.post(f"{sim.base_url}/users/terminate_sessions", json=BODY, headers=auth(token), timeout=10)


def test_rate_limit_answers_429_with_lowercase_retry_after(sim: BoxSim) -> None:
    sim.set_rate_limit(3)
    token, other = sim.issue_token(), sim.issue_token()
    statuses = [requests.get(f"{sim.base_url}/users", headers=auth(token), timeout=10).status_code for _ in range(4)]

    limited = requests.get(f"{sim.base_url}/users", headers=auth(token), timeout=10)

    assert statuses == [200, 200, 200, 429]
    assert "retry-after" in list(limited.raw.headers)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    body = limited.json()
    assert body["status"] == 429 and body["code"] == "rate_limit_exceeded"
    assert body["message"] == "Request rate limit exceeded, please try again later"
    assert requests.get(f"{sim.base_url}/users", headers=auth(other), timeout=10).status_code == 200


def test_rate_limit_from_config_and_switched_off() -> None:
    with BoxSim(SimConfig(rate_limit_per_minute=1)) as sim:
        token = sim.issue_token()
        assert terminate(sim, token).status_code == 202
        assert terminate(sim, token).status_code == 429
        sim.set_rate_limit(0)
        assert terminate(sim, token).status_code == 202


def test_rate_limit_window_slides() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.admit("t") is None and limiter.admit("t") is None
    now[0] += 20
    assert limiter.admit("t") == 40
    now[0] += 40
    assert limiter.admit("t") is None


def test_status_fault_answers_n_times_then_serves_normally(sim: BoxSim) -> None:
    sim.add_faults([{"method": "POST", "path": TERMINATE, "times": 3, "status": 503, "headers": {"Retry-After": "2"}}])
    token = sim.issue_token()

    faulted = [terminate(sim, token) for _ in range(3)]
    normal = terminate(sim, token)

    for response in faulted:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2" and "retry-after" in list(response.raw.headers)
        body = response.json()
        assert body["type"] == "error" and body["code"] == "unavailable" and body["status"] == 503
        assert body["request_id"]
    assert normal.status_code == 202
    assert sim.terminated_user_ids() == {"17738362": 1}
    assert sim.pending_faults() == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "internal_server_error"),
        (429, "rate_limit_exceeded"),
        (403, "access_denied_insufficient_permissions"),
        (404, "not_found"),
        (400, "bad_request"),
    ],
)
def test_status_faults_carry_boxs_default_error_codes(sim: BoxSim, status: int, code: str) -> None:
    sim.add_faults([{"path": TERMINATE, "status": status}])

    response = terminate(sim, sim.issue_token())

    assert response.status_code == status and response.json()["code"] == code


def test_fault_with_a_scripted_body_and_a_prefix_path(sim: BoxSim) -> None:
    sim.add_faults([{"path": "/2.0/users*", "status": 418, "body": {"teapot": True}}])

    response = requests.get(f"{sim.base_url}/users/17738362", headers=auth(sim.issue_token()), timeout=10)

    assert response.status_code == 418 and response.json() == {"teapot": True}


def test_rules_match_in_order_and_by_method(sim: BoxSim) -> None:
    sim.add_faults(
        [
            {"method": "GET", "path": TERMINATE, "status": 500},
            {"method": "POST", "path": TERMINATE, "status": 503},
            {"method": "POST", "path": TERMINATE, "status": 429},
        ]
    )
    token = sim.issue_token()

    assert [terminate(sim, token).status_code for _ in range(3)] == [503, 429, 202]
    assert [r["method"] for r in sim.pending_faults()] == ["GET"]


def test_latency_fault_delays_then_serves_normally(sim: BoxSim) -> None:
    sim.add_faults([{"path": TERMINATE, "latency_ms": 300}])
    token = sim.issue_token()

    started = time.monotonic()
    response = terminate(sim, token)
    elapsed = time.monotonic() - started

    assert response.status_code == 202
    assert elapsed >= 0.3
    started = time.monotonic()
    assert terminate(sim, token).status_code == 202
    assert time.monotonic() - started < 0.3


def test_drop_fault_is_a_transport_error_for_the_client(sim: BoxSim) -> None:
    sim.add_faults([{"path": TERMINATE, "drop": True, "times": 1}])
    token = sim.issue_token()

    with pytest.raises(requests.ConnectionError):
        terminate(sim, token)

    assert terminate(sim, token).status_code == 202
    assert sim.terminated_user_ids() == {"17738362": 1}  # the dropped request was never served


def test_faults_apply_to_the_token_endpoint(sim: BoxSim) -> None:
    sim.add_faults([{"path": "/oauth2/token", "status": 503}])

    assert requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10).status_code == 503
    assert requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10).status_code == 200


def test_unlimited_fault_stays_until_cleared(sim: BoxSim) -> None:
    sim.add_faults([FaultRule(path=TERMINATE, status=503, times=-1)])
    token = sim.issue_token()

    assert [terminate(sim, token).status_code for _ in range(3)] == [503, 503, 503]
    sim.clear_faults()
    assert terminate(sim, token).status_code == 202


def test_admin_endpoints_queue_list_and_clear_faults(sim: BoxSim) -> None:
    rule = {"method": "POST", "path": TERMINATE, "times": 2, "status": 500}

    added = requests.post(f"{sim.admin_url}/faults", json={"faults": [rule]}, timeout=10)
    listed = requests.get(f"{sim.admin_url}/faults", timeout=10).json()["faults"]
    assert terminate(sim, sim.issue_token()).status_code == 500
    remaining = sim.pending_faults()[0]["times"]
    cleared = requests.delete(f"{sim.admin_url}/faults", timeout=10)

    assert added.status_code == 200 and added.json() == {"pending": 1}
    assert listed[0]["status"] == 500 and listed[0]["times"] == 2
    assert remaining == 1
    assert cleared.json() == {"cleared": 1} and sim.pending_faults() == []


@pytest.mark.parametrize(
    "rule",
    [
        {"path": TERMINATE},
        {"status": 503},
        {"path": TERMINATE, "status": 503, "times": 0},
        {"path": TERMINATE, "status": 503, "colour": "red"},
        {"path": TERMINATE, "status": 99},
    ],
)
def test_invalid_fault_rules_are_refused(sim: BoxSim, rule: dict[str, object]) -> None:
    response = requests.post(f"{sim.admin_url}/faults", json={"faults": [rule]}, timeout=10)

    assert response.status_code == 400 and response.json()["error"]
    with pytest.raises(ValueError):
        sim.add_faults([rule])
    assert sim.pending_faults() == []


def test_admin_rate_limit_endpoint(sim: BoxSim) -> None:
    token = sim.issue_token()
    assert requests.post(f"{sim.admin_url}/rate-limit", json={"per_minute": 1}, timeout=10).status_code == 200

    assert [terminate(sim, token).status_code for _ in range(2)] == [202, 429]
