"""boxsim token endpoint (Client Credentials and JWT grants) and bearer-token checks on the API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from boxsim import BoxSim, SimConfig
from boxsim.testing import KeyPair, ccg_form, fetch_token, jwt_assertion, jwt_form, rsa_key_pair

WWW_AUTHENTICATE = (
    'Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid."'
)
KEY_ID = "boxsim-test-kid"


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return rsa_key_pair()


@pytest.fixture
def sim(keys: KeyPair) -> Iterator[BoxSim]:
    config = SimConfig(jwt_public_key_pem=keys.public_pem, jwt_public_key_id=KEY_ID, developer_token="dev-token-1")
    with BoxSim(config) as running:
        yield running


def get_users(sim: BoxSim, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(f"{sim.base_url}/users", headers=headers, timeout=10)


def assert_unauthorized(response: requests.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == WWW_AUTHENTICATE
    assert "www-authenticate" in list(response.raw.headers)  # lowercase name on the wire
    assert response.content == b""


def test_ccg_grant_issues_a_working_token(sim: BoxSim) -> None:
    response = requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type", "restricted_to", "issued_token_type"}
    assert body["expires_in"] == 3600
    assert body["token_type"] == "bearer"
    assert body["restricted_to"] == []
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert get_users(sim, body["access_token"]).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"box_subject_id": "other-enterprise"}, "invalid_grant"),
        ({"box_subject_type": "user"}, "invalid_grant"),
        ({"grant_type": "password"}, "invalid_request"),
    ],
)
def test_ccg_grant_refuses_bad_credentials(sim: BoxSim, overrides: dict[str, str], error: str) -> None:
    response = requests.post(sim.oauth_url, data=ccg_form(sim.config, **overrides), timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_token_request_must_be_form_encoded(sim: BoxSim) -> None:
    response = requests.post(sim.oauth_url, json=ccg_form(sim.config), timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_jwt_grant_issues_a_working_token(sim: BoxSim, keys: KeyPair) -> None:
    assertion = jwt_assertion(sim.config, keys.private_pem, sim.oauth_url)

    response = requests.post(sim.oauth_url, data=jwt_form(sim.config, assertion), timeout=10)

    assert response.status_code == 200, response.text
    assert get_users(sim, response.json()["access_token"]).status_code == 200


def test_jwt_audience_may_be_the_host_the_client_used(sim: BoxSim, keys: KeyPair) -> None:
    url = f"http://localhost:{sim.port}/oauth2/token"
    assertion = jwt_assertion(sim.config, keys.private_pem, url)

    response = requests.post(url, data=jwt_form(sim.config, assertion), timeout=10)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"kid": "another-kid"}, "kid"),
        ({"aud": "https://api.box.com/oauth2/token"}, "'aud'"),
        ({"exp_in": 120}, "'exp'"),
        ({"exp_in": -5}, "'exp'"),
        ({"iss": "someone-else"}, "'iss'"),
        ({"sub": "other-enterprise"}, "'sub'"),
        ({"box_sub_type": "user"}, "'box_sub_type'"),
        ({"jti": None}, "'jti'"),
    ],
)
def test_jwt_grant_refuses_bad_assertions(sim: BoxSim, keys: KeyPair, claims: dict[str, object], reason: str) -> None:
    claims = dict(claims)
    aud = str(claims.pop("aud", sim.oauth_url))
    exp_in = float(str(claims.pop("exp_in", 45)))
    assertion = jwt_assertion(sim.config, keys.private_pem, aud, exp_in=exp_in, **claims)

    response = requests.post(sim.oauth_url, data=jwt_form(sim.config, assertion), timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert reason in response.json()["error_description"]


def test_jwt_signed_by_another_key_is_refused(sim: BoxSim) -> None:
    other = rsa_key_pair()
    assertion = jwt_assertion(sim.config, other.private_pem, sim.oauth_url)

    response = requests.post(sim.oauth_url, data=jwt_form(sim.config, assertion), timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "Signature verification" in response.json()["error_description"]


def test_jwt_with_wrong_client_secret_is_an_invalid_client(sim: BoxSim, keys: KeyPair) -> None:
    form = jwt_form(sim.config, jwt_assertion(sim.config, keys.private_pem, sim.oauth_url))
    form["client_secret"] = "wrong"

    response = requests.post(sim.oauth_url, data=form, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_api_refuses_missing_or_unknown_token(sim: BoxSim, token: str | None) -> None:
    assert_unauthorized(get_users(sim, token))


def test_api_refuses_non_bearer_authorization(sim: BoxSim) -> None:
    token = fetch_token(sim)
    response = requests.get(f"{sim.base_url}/users", headers={"Authorization": f"Basic {token}"}, timeout=10)

    assert_unauthorized(response)


def test_developer_token_works_until_tokens_are_expired(sim: BoxSim) -> None:
    issued = fetch_token(sim)
    assert get_users(sim, "dev-token-1").status_code == 200

    assert sim.expire_tokens() == 2

    assert_unauthorized(get_users(sim, "dev-token-1"))
    assert_unauthorized(get_users(sim, issued))
    assert get_users(sim, fetch_token(sim)).status_code == 200


def test_admin_endpoint_expires_tokens(sim: BoxSim) -> None:
    token = fetch_token(sim)

    response = requests.post(f"{sim.admin_url}/tokens/expire", timeout=10)

    assert response.status_code == 200
    assert_unauthorized(get_users(sim, token))


def test_tokens_expire_after_their_ttl() -> None:
    with BoxSim(SimConfig(token_ttl_seconds=1)) as sim:
        response = requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10)
        token = response.json()["access_token"]
        assert response.json()["expires_in"] == 1
        assert get_users(sim, token).status_code == 200

        time.sleep(1.05)

        assert_unauthorized(get_users(sim, token))


def test_jwt_with_a_list_audience_is_refused_not_a_crash(sim: BoxSim, keys: KeyPair) -> None:
    assertion = jwt_assertion(sim.config, keys.private_pem, sim.oauth_url, aud=[sim.oauth_url, "x"])

    response = requests.post(sim.oauth_url, data=jwt_form(sim.config, assertion), timeout=10)

    assert response.status_code == 400
    assert response.json()["error_description"] == "Please check the 'aud' claim."
