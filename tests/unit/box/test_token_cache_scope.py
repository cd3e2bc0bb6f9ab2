"""The token cache is keyed by the Box API, the token endpoint and the client: workers on one Redis and one prefix
that talk to two Boxes (a dev stack's boxsim beside the real Box) never hand each other's tokens out."""

from __future__ import annotations

import fakeredis
import pytest

from config import Settings, load_settings
from tests.unit.fakes import Reply, scripted_session
from worker.box.auth import token_source_for

CLIENT_SECRET = "client-secret-that-must-stay-out-of-keys"
REAL = {"BOX_CLIENT_ID": "real-client", "BOX_CLIENT_SECRET": CLIENT_SECRET, "BOX_ENTERPRISE_ID": "42"}
SIMULATOR = {**REAL, "BOX_API_BASE_URL": "http://127.0.0.1:8765/2.0",
             "BOX_OAUTH_URL": "http://127.0.0.1:8765/oauth2/token"}


def _settings(env: dict[str, str]) -> Settings:
    return load_settings({**env, "BOXCUT_KEY_PREFIX": "shared:"}, env_file=None)


def _token_from(settings: Settings, redis: fakeredis.FakeRedis, issued: str) -> str:
    """The token a worker with these settings gets, its token endpoint issuing `issued` when asked."""
    session, _ = scripted_session(Reply(200, {"access_token": issued, "expires_in": 3600}))
    return token_source_for(settings=settings, redis=redis, session=session).get()


@pytest.mark.parametrize("other", [
    SIMULATOR,
    {**REAL, "BOX_API_BASE_URL": "https://proxy.example.com/2.0"},
    {**REAL, "BOX_CLIENT_ID": "another-client"},
], ids=["another Box (boxsim)", "another API URL", "another client"])
def test_a_worker_talking_to_another_box_or_client_never_gets_the_cached_token(other: dict[str, str]) -> None:
    redis = fakeredis.FakeRedis()
    assert _token_from(_settings(REAL), redis, "token-of-the-real-box") == "token-of-the-real-box"
    assert _token_from(_settings(other), redis, "its-own-token") == "its-own-token"
    # Workers with the same Box and client still share one token: each kept its own, and nobody asked again.
    assert _token_from(_settings(REAL), redis, "never-asked") == "token-of-the-real-box"
    assert _token_from(_settings(other), redis, "never-asked") == "its-own-token"
    keys = [k.decode() for k in redis.keys("shared:box:token*")]
    assert len(keys) == 2 and not any(CLIENT_SECRET in key or "client" in key for key in keys)  # a hash of them
