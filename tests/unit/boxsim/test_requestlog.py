"""boxsim request log: what each entry holds, that every kind of answer is logged, and that no secret is."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
import requests

from boxsim import BoxSim, SimConfig
from boxsim.testing import ccg_form, jwt_assertion, jwt_form, rsa_key_pair
from boxsim.tokens import token_id

CLIENT_SECRET = "very-secret-client-secret-42"
TERMINATE = "/2.0/users/terminate_sessions"


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with BoxSim(SimConfig(client_secret=CLIENT_SECRET, rate_limit_per_minute=3)) as running:
        yield running


def test_entries_record_method_path_query_body_status_token_and_latency(sim: BoxSim) -> None:
    before = time.time()
    token = requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    requests.get(
        f"{sim.base_url}/users", params={"filter_term": "ann", "fields": "id,login"}, headers=headers, timeout=10
    )
    requests.post(
        f"{sim.base_url}/users/terminate_sessions",
        json={"user_ids": ["17738362"], "user_logins": []},
        headers=headers,
        timeout=10,
    )

    grant, listing, terminate = sim.requests()

    assert [e["seq"] for e in (grant, listing, terminate)] == [1, 2, 3]
    assert before <= grant["time"] <= listing["time"] <= terminate["time"] <= time.time()
    assert (grant["method"], grant["path"], grant["status"]) == ("POST", "/oauth2/token", 200)
    assert grant["body"]["client_secret"] == "***" and grant["body"]["client_id"] == sim.config.client_id
    assert grant["token_id"] == listing["token_id"] == terminate["token_id"] == token_id(token)
    assert listing["query"] == {"filter_term": "ann", "fields": "id,login"} and listing["body"] is None
    assert terminate["body"] == {"user_ids": ["17738362"], "user_logins": []} and terminate["status"] == 202
    assert all(isinstance(e["latency_ms"], float) and e["latency_ms"] >= 0 for e in (grant, listing, terminate))


def test_401_429_fault_and_dropped_requests_are_logged(sim: BoxSim) -> None:
    token = sim.issue_token()
    headers = {"Authorization": f"Bearer {token}"}
    requests.get(f"{sim.base_url}/users", timeout=10)
    for _ in range(4):
        requests.get(f"{sim.base_url}/users", headers=headers, timeout=10)
    sim.add_faults([{"path": TERMINATE, "status": 503}, {"path": TERMINATE, "drop": True}])
    requests.post(f"{sim.base_url}/users/terminate_sessions", json={}, headers=headers, timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{sim.base_url}/users/terminate_sessions", json={}, headers=headers, timeout=10)

    entries = sim.requests()

    assert [e["status"] for e in entries] == [401, 200, 200, 200, 429, 503, None]
    assert [e["fault"] for e in entries][-2:] == [True, True]
    assert entries[0]["token_id"] is None and entries[1]["token_id"] == token_id(token)


def test_filtering_and_clearing_the_log(sim: BoxSim) -> None:
    requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10)
    requests.get(f"{sim.base_url}/users", timeout=10)

    assert [e["path"] for e in sim.requests(path="/oauth2/token")] == ["/oauth2/token"]
    assert [e["path"] for e in sim.requests(method="get")] == ["/2.0/users"]
    over_http = requests.get(f"{sim.admin_url}/requests", params={"path": "/2.0/users"}, timeout=10).json()
    assert [e["seq"] for e in over_http] == [2]
    assert requests.delete(f"{sim.admin_url}/requests", timeout=10).status_code == 200
    assert sim.requests() == []
    requests.get(f"{sim.base_url}/users", timeout=10)
    assert [e["seq"] for e in sim.requests()] == [3]  # sequence numbers keep counting after a clear


def test_no_secret_reaches_the_log_or_the_log_lines(sim: BoxSim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="boxsim")
    keys = rsa_key_pair()
    with BoxSim(SimConfig(client_secret=CLIENT_SECRET, jwt_public_key_pem=keys.public_pem)) as jwt_sim:
        assertion = jwt_assertion(jwt_sim.config, keys.private_pem, jwt_sim.oauth_url)
        jwt_answer = requests.post(jwt_sim.oauth_url, data=jwt_form(jwt_sim.config, assertion), timeout=10)
        jwt_log = json.dumps(jwt_sim.requests())
    token = requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10).json()["access_token"]
    requests.get(f"{sim.base_url}/users", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    requests.post(sim.oauth_url, data=ccg_form(sim.config, client_secret=CLIENT_SECRET + "-typo"), timeout=10)
    admin_text = requests.get(f"{sim.admin_url}/requests", timeout=10).text

    assert jwt_answer.status_code == 200
    serialised = [json.dumps(sim.requests()), admin_text, jwt_log, caplog.text]
    secrets = [CLIENT_SECRET, token, assertion, jwt_answer.json()["access_token"]]
    for text in serialised:
        for secret in secrets:
            assert secret not in text
    assert "/oauth2/token" in caplog.text and "/2.0/users" in caplog.text  # one line per request was written


def test_a_body_that_is_not_json_is_logged_by_size_only(sim: BoxSim) -> None:
    requests.post(f"{sim.base_url}/users/terminate_sessions", data=b"password=hunter2", timeout=10)

    assert sim.requests()[0]["body"] == "<16 bytes, not JSON>"


def test_admin_health_and_admin_requests_are_not_logged(sim: BoxSim) -> None:
    health = requests.get(f"{sim.admin_url}/health", timeout=10)

    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["base_url"] == sim.base_url
    assert sim.requests() == []
