"""The browser tests' infrastructure works end to end: the real OpenID Connect provider (tests/oidc/provider.mjs,
panva's oidc-provider), Playwright and Debian's Chromium. A full authorization-code + PKCE sign-in is driven by
hand against a tiny local callback, the code exchanged at the token endpoint, and the ID token verified against
the provider's JWKS: what the console's tests build on."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.browser import Provider, Redirects, catch_redirects, pkce_pair, save_screenshots

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def callback() -> Iterator[Redirects]:
    with catch_redirects("/callback") as redirects:
        yield redirects


@pytest.fixture(scope="module")
def provider(oidc_provider: Callable[..., Provider], callback: Redirects) -> Provider:
    return oidc_provider(callback.url)


@pytest.fixture(scope="module")
def discovery(provider: Provider) -> dict[str, Any]:
    reply = requests.get(provider.discovery_url, timeout=10)
    reply.raise_for_status()
    document: dict[str, Any] = reply.json()
    return document


def _authorization_url(discovery: dict[str, Any], provider: Provider, redirect_uri: str, **extra: str) -> str:
    params = {"response_type": "code", "client_id": provider.client_id, "redirect_uri": redirect_uri,
              "scope": "openid profile email", **extra}
    return f"{discovery['authorization_endpoint']}?{urlencode(params)}"


def _sign_in(page: Page, discovery: dict[str, Any], provider: Provider, callback: Redirects, login: str,
             tmp_path: Path, name: str) -> dict[str, Any]:
    """Signs in as `login` through the provider's page and returns the verified ID token's claims."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    page.goto(_authorization_url(discovery, provider, callback.url, state=state, nonce=nonce,
                                 code_challenge=challenge, code_challenge_method="S256"))
    page.wait_for_selector("#login")
    page.fill("#login", login)
    save_screenshots(page, f"{name}-login", tmp_path)
    page.click("#sign-in")
    page.wait_for_url(f"{callback.url}?**")
    hit = callback.last()
    assert hit.get("state") == state and hit.get("iss") == provider.issuer and "code" in hit, hit

    reply = requests.post(discovery["token_endpoint"], timeout=10, auth=(provider.client_id, provider.client_secret),
                          data={"grant_type": "authorization_code", "code": hit["code"],
                                "redirect_uri": callback.url, "code_verifier": verifier})
    assert reply.status_code == 200, reply.text
    tokens = reply.json()
    assert tokens["token_type"].lower() == "bearer" and tokens["access_token"]

    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"])
    claims: dict[str, Any] = jwt.decode(tokens["id_token"], key.key, algorithms=["RS256"],
                                        audience=provider.client_id, issuer=provider.issuer)
    assert claims["nonce"] == nonce and claims["sub"] == login
    return claims


def test_the_provider_publishes_its_discovery_and_requires_pkce(provider: Provider, discovery: dict[str, Any],
                                                                callback: Redirects) -> None:
    assert discovery["issuer"] == provider.issuer
    assert provider.issuer.startswith("http://127.0.0.1:")
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert discovery[endpoint].startswith(f"{provider.issuer}/"), endpoint
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert discovery["response_types_supported"] == ["code"]
    assert {"openid", "profile", "email", "groups"} <= set(discovery["scopes_supported"])
    assert "groups" in discovery["claims_supported"]
    assert requests.get(discovery["jwks_uri"], timeout=10).json()["keys"][0]["kty"] == "RSA"

    # Without a code_challenge the provider sends the browser back with an error, never to a login page.
    reply = requests.get(_authorization_url(discovery, provider, callback.url, state="s"), timeout=10,
                         allow_redirects=False)
    assert reply.status_code in (302, 303), reply.text
    location = urlsplit(reply.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == callback.url
    error = {name: values[-1] for name, values in parse_qs(location.query).items()}
    assert error["error"] == "invalid_request" and "PKCE" in error["error_description"], error


def test_alice_signs_in_with_pkce_and_her_id_token_names_her_group(
        page: Page, provider: Provider, discovery: dict[str, Any], callback: Redirects, tmp_path: Path) -> None:
    claims = _sign_in(page, discovery, provider, callback, "alice", tmp_path, "oidc-infra-alice")
    assert claims["groups"] == ["boxcut-approvers"]
    assert claims["name"] == "Alice Approver"
    assert claims["email"] == "alice@example.test"
    assert (tmp_path / "oidc-infra-alice-login.png").stat().st_size > 5_000


def test_victor_is_a_viewer_and_an_unknown_name_is_refused(
        page: Page, provider: Provider, discovery: dict[str, Any], callback: Redirects, tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    page.goto(_authorization_url(discovery, provider, callback.url, state="x", code_challenge=challenge,
                                 code_challenge_method="S256"))
    page.fill("#login", "mallory")
    page.click("#sign-in")
    assert page.inner_text("#error") == "unknown user: mallory"

    claims = _sign_in(page, discovery, provider, callback, "victor", tmp_path, "oidc-infra-victor")
    assert claims["groups"] == ["boxcut-viewers"]
    assert claims["name"] == "Victor Viewer"
