"""Access tokens: the developer token, the Redis token cache shared by processes, and both token fetchers."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import parse_qs

import fakeredis
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config.secret import Secret
from config.settings import JWTAppConfig, Settings
from tests.unit.fakes import START, CountingFetcher, FakeClock, Reply, ScriptedAdapter, scripted_session
from worker.box.auth import (
    JWT_BEARER_GRANT,
    CachedTokenSource,
    ClientCredentialsFetcher,
    DeveloperTokenSource,
    JWTFetcher,
    token_source_for,
)
from worker.errors import BoxAuthError, BoxTransportError

OAUTH_URL = "https://box.test/oauth2/token"
CLIENT_SECRET = "cs-very-secret-value"
PASSPHRASE = "pass-phrase-secret"
TOKEN_ANSWER = Reply(200, {"access_token": "issued-token", "expires_in": 3600, "token_type": "bearer",
                           "restricted_to": [], "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})


def cached(redis_client: fakeredis.FakeRedis, fetcher: CountingFetcher, clock: FakeClock | None = None,
           **kwargs: float) -> CachedTokenSource:
    clock = clock or FakeClock()
    return CachedTokenSource(redis=redis_client, key_prefix="t:", fetcher=fetcher, clock=clock.time,
                             sleep=clock.sleep, **kwargs)


def form_of(adapter: ScriptedAdapter, index: int = 0) -> dict[str, str]:
    body = adapter.requests[index].body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {k: v[0] for k, v in parse_qs(text).items()}


# -- developer token ------------------------------------------------------------------------------------------

def test_developer_token_until_refused() -> None:
    source = DeveloperTokenSource(Secret("dev-token-123"))
    assert source.get() == "dev-token-123"
    source.invalidate("dev-token-123")
    with pytest.raises(BoxAuthError, match="developer token") as caught:
        source.get()
    assert "dev-token-123" not in str(caught.value)
    assert "dev-token-123" not in repr(source)


# -- the shared cache -----------------------------------------------------------------------------------------

def test_two_processes_share_one_fetch() -> None:
    redis_client, fetcher = fakeredis.FakeRedis(), CountingFetcher()
    one, other = cached(redis_client, fetcher), cached(redis_client, fetcher)
    assert one.get() == "tok-1"
    assert other.get() == "tok-1"
    assert fetcher.calls == 1


def test_token_ttl_leaves_the_refresh_margin() -> None:
    redis_client = fakeredis.FakeRedis()
    cached(redis_client, CountingFetcher(expires_in=3600)).get()
    assert redis_client.pttl("t:box:token") == pytest.approx((3600 - 120) * 1000, abs=1000)


def test_short_lived_token_is_still_cached_a_few_seconds() -> None:
    redis_client = fakeredis.FakeRedis()
    cached(redis_client, CountingFetcher(expires_in=60)).get()
    assert 0 < redis_client.pttl("t:box:token") <= 5000


def test_invalidate_of_a_stale_token_keeps_the_newer_one() -> None:
    redis_client, fetcher = fakeredis.FakeRedis(), CountingFetcher()
    one, other = cached(redis_client, fetcher), cached(redis_client, fetcher)
    stale = one.get()
    one.invalidate(stale)
    assert other.get() == "tok-2"
    one.invalidate(stale)  # a second process hit by the same 401 reports it late
    assert one.get() == "tok-2"
    assert fetcher.calls == 2


def test_waits_for_the_process_that_holds_the_lock() -> None:
    redis_client, fetcher, clock = fakeredis.FakeRedis(), CountingFetcher(), FakeClock()
    redis_client.set("t:box:token:lock", "other-process", px=45_000)

    def sleep_while_other_process_fetches(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:
            redis_client.set("t:box:token", "from-other-process")

    source = CachedTokenSource(redis=redis_client, key_prefix="t:", fetcher=fetcher, clock=clock.time,
                               sleep=sleep_while_other_process_fetches)
    assert source.get() == "from-other-process"
    assert fetcher.calls == 0


def test_wait_for_another_process_is_bounded() -> None:
    redis_client, fetcher, clock = fakeredis.FakeRedis(), CountingFetcher(), FakeClock()
    redis_client.set("t:box:token:lock", "stuck-process", px=45_000)
    source = cached(redis_client, fetcher, clock, wait_seconds=2.0, poll_seconds=0.1)
    with pytest.raises(BoxTransportError, match="another worker"):
        source.get()
    assert fetcher.calls == 0
    assert clock.now - START == pytest.approx(2.0, abs=0.11)


def test_lock_is_released_after_a_fetch_and_after_a_failure() -> None:
    redis_client = fakeredis.FakeRedis()
    cached(redis_client, CountingFetcher()).get()
    assert redis_client.get("t:box:token:lock") is None

    def refuse() -> None:
        raise BoxAuthError("Box refused the token request (400 invalid_grant): bad")

    redis_client.delete("t:box:token")
    with pytest.raises(BoxAuthError):
        cached(redis_client, CountingFetcher(on_fetch=refuse)).get()
    assert redis_client.get("t:box:token:lock") is None
    assert redis_client.get("t:box:token") is None


def test_concurrent_processes_make_one_fetch() -> None:
    server = fakeredis.FakeServer()
    fetcher = CountingFetcher(on_fetch=lambda: time.sleep(0.05))
    results: list[str] = []
    sources = [CachedTokenSource(redis=fakeredis.FakeRedis(server=server), key_prefix="t:", fetcher=fetcher,
                                 poll_seconds=0.01) for _ in range(6)]
    threads = [threading.Thread(target=lambda s=s: results.append(s.get())) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert results == ["tok-1"] * 6
    assert fetcher.calls == 1


# -- client credentials ---------------------------------------------------------------------------------------

def client_credentials(session: requests.Session) -> ClientCredentialsFetcher:
    return ClientCredentialsFetcher(session=session, oauth_url=OAUTH_URL, client_id="cid",
                                    client_secret=Secret(CLIENT_SECRET), enterprise_id="777", timeout=(5.0, 30.0))


def test_client_credentials_posts_the_grant() -> None:
    session, adapter = scripted_session(TOKEN_ANSWER)
    fetched = client_credentials(session).fetch()
    assert fetched.access_token == "issued-token" and fetched.expires_in == 3600
    assert adapter.requests[0].url == OAUTH_URL and adapter.requests[0].method == "POST"
    assert adapter.requests[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(adapter) == {"grant_type": "client_credentials", "client_id": "cid",
                                "client_secret": CLIENT_SECRET, "box_subject_type": "enterprise",
                                "box_subject_id": "777"}
    assert adapter.timeouts == [(5.0, 30.0)]
    assert "issued-token" not in repr(fetched)


def test_invalid_grant_is_an_auth_error_with_boxs_description() -> None:
    description = f"Grant credentials are invalid {CLIENT_SECRET}"  # as if Box echoed the secret back
    refusal = Reply(400, {"error": "invalid_grant", "error_description": description})
    session, _ = scripted_session(refusal)
    with pytest.raises(BoxAuthError, match="invalid_grant") as caught:
        client_credentials(session).fetch()
    assert "Grant credentials are invalid" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


def test_invalid_client_with_a_body_that_is_not_json() -> None:
    session, _ = scripted_session(Reply(400, text="<html>bad</html>"))
    with pytest.raises(BoxAuthError, match="400"):
        client_credentials(session).fetch()


@pytest.mark.parametrize("answer", [Reply(503, text="busy"), requests.ConnectionError("refused"),
                                    requests.ReadTimeout("slow")])
def test_outage_is_a_transport_error(answer: Reply | Exception) -> None:
    session, _ = scripted_session(answer)
    with pytest.raises(BoxTransportError):
        client_credentials(session).fetch()


def test_secrets_stay_out_of_repr_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session, _ = scripted_session(TOKEN_ANSWER, Reply(400, {"error": "invalid_client", "error_description": "no"}))
    fetcher = client_credentials(session)
    source = CachedTokenSource(redis=fakeredis.FakeRedis(), key_prefix="t:", fetcher=fetcher)
    token = source.get()
    source.invalidate(token)
    with pytest.raises(BoxAuthError) as caught:
        source.get()
    for text in (caplog.text, repr(fetcher), repr(source), str(caught.value)):
        assert CLIENT_SECRET not in text and "issued-token" not in text


# -- JWT ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwt_app(key: rsa.RSAPrivateKey, passphrase: str = PASSPHRASE) -> JWTAppConfig:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    ).decode()
    return JWTAppConfig(client_id="jwt-client", client_secret=Secret(CLIENT_SECRET), public_key_id="kid-42",
                        private_key=Secret(pem), passphrase=Secret(passphrase), enterprise_id="777")


def test_jwt_assertion_claims_and_kid(rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session, adapter = scripted_session(TOKEN_ANSWER)
    fetcher = JWTFetcher(session=session, oauth_url=OAUTH_URL, app=jwt_app(rsa_key), timeout=(5.0, 30.0),
                         clock=lambda: START)
    assert fetcher.fetch().access_token == "issued-token"
    form = form_of(adapter)
    assert form["grant_type"] == JWT_BEARER_GRANT
    assert form["client_id"] == "jwt-client" and form["client_secret"] == CLIENT_SECRET
    assertion = form["assertion"]
    assert jwt.get_unverified_header(assertion) == {"alg": "RS256", "kid": "kid-42", "typ": "JWT"}
    claims = jwt.decode(assertion, rsa_key.public_key(), algorithms=["RS256"], audience=OAUTH_URL,
                        options={"verify_exp": False})
    assert claims["iss"] == "jwt-client" and claims["sub"] == "777" and claims["box_sub_type"] == "enterprise"
    assert claims["aud"] == OAUTH_URL and claims["exp"] == int(START) + 45
    assert len(claims["jti"]) >= 16
    assert adapter.timeouts == [(5.0, 30.0)]
    assert assertion not in caplog.text and PASSPHRASE not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_jwt_jti_is_fresh_each_time(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = JWTFetcher(session=requests.Session(), oauth_url=OAUTH_URL, app=jwt_app(rsa_key), timeout=(1, 1))
    first, second = (jwt.decode(fetcher.assertion(), options={"verify_signature": False}) for _ in range(2))
    assert first["jti"] != second["jti"]


def test_jwt_wrong_passphrase_is_a_clear_auth_error(rsa_key: rsa.RSAPrivateKey) -> None:
    app = jwt_app(rsa_key, passphrase="not-the-passphrase")
    fetcher = JWTFetcher(session=requests.Session(), oauth_url=OAUTH_URL, app=app, timeout=(1, 1))
    with pytest.raises(BoxAuthError, match="private key") as caught:
        fetcher.fetch()
    message = str(caught.value)
    assert "not-the-passphrase" not in message and "PRIVATE KEY" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "not-the-passphrase" not in repr(fetcher) and CLIENT_SECRET not in repr(fetcher)


# -- choosing the source --------------------------------------------------------------------------------------

def test_token_source_for_each_mode(rsa_key: rsa.RSAPrivateKey) -> None:
    redis_client, session = fakeredis.FakeRedis(), requests.Session()
    developer = Settings(box_developer_token=Secret("dev"))
    assert isinstance(token_source_for(settings=developer, redis=redis_client, session=session),
                      DeveloperTokenSource)
    ccg = Settings(box_client_id="cid", box_client_secret=Secret("s"), box_enterprise_id="777")
    assert isinstance(token_source_for(settings=ccg, redis=redis_client, session=session), CachedTokenSource)
    with_jwt = Settings(box_jwt=jwt_app(rsa_key))
    assert isinstance(token_source_for(settings=with_jwt, redis=redis_client, session=session), CachedTokenSource)
    with pytest.raises(BoxAuthError, match="no Box credentials"):
        token_source_for(settings=Settings(), redis=redis_client, session=session)
