"""boxsim as an HTTP server: concurrent clients, keep-alive, stopping, and the Python handle's lifecycle."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from boxsim import BoxSim, SimConfig


def test_concurrent_clients_are_all_served_and_logged() -> None:
    with BoxSim(SimConfig()) as sim:
        token = sim.issue_token()

        def call(index: int) -> int:
            url = f"{sim.base_url}/users/{'17738362' if index % 2 else '10000001'}"
            return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(call, range(200)))

        assert statuses == [200] * 200
        assert sorted(e["seq"] for e in sim.requests()) == list(range(1, 201))


def test_stop_cuts_keep_alive_connections_and_frees_the_port() -> None:
    sim = BoxSim(SimConfig()).start()
    base_url = sim.base_url
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {sim.issue_token()}"
        assert session.get(f"{base_url}/users", timeout=5).status_code == 200

        sim.stop()

        with pytest.raises(requests.ConnectionError):
            session.get(f"{base_url}/users", timeout=5)
    sim.stop()  # a second stop is harmless


def test_urls_need_a_started_simulator() -> None:
    sim = BoxSim(SimConfig())
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.base_url
    with sim:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/2.0"
        assert sim.oauth_url == f"http://127.0.0.1:{sim.port}/oauth2/token"
        assert sim.admin_url == f"http://127.0.0.1:{sim.port}/_boxsim"


def test_unknown_paths_outside_the_api_are_404() -> None:
    with BoxSim(SimConfig()) as sim:
        response = requests.get(f"http://127.0.0.1:{sim.port}/nothing-here", timeout=5)
        admin = requests.get(f"{sim.admin_url}/nothing-here", timeout=5)

    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert admin.status_code == 404 and "GET /_boxsim/health" in admin.json()["endpoints"]
