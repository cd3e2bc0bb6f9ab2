"""Secrets (client secret, access tokens, JWT private key and passphrase) never reach logs or job records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from boxsim import SimConfig
from tests.integration.harness import Stack, running_stack
from worker.box.fingerprint import box_fingerprint
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration

PASSPHRASE = "correct-horse-battery-staple-7731"
CLIENT_SECRET = "jwt-client-secret-9f8e7d6c5b4a"
INTAKE_TOKEN = "intake-token-5e4d3c2b1a"
HMAC_SECRET = "hmac-secret-0a9b8c7d6e"
OPERATOR_TOKEN = "operator-token-1f2e3d4c"


def _jwt_app(tmp_path: Path, enterprise_id: str) -> tuple[Path, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(PASSPHRASE.encode())).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    config = {"boxAppSettings": {"clientID": "jwt-client-id", "clientSecret": CLIENT_SECRET,
                                 "appAuth": {"publicKeyID": "kid-42", "privateKey": private_pem,
                                             "passphrase": PASSPHRASE}},
              "enterpriseID": enterprise_id}
    path = tmp_path / "box_config.json"
    path.write_text(json.dumps(config))
    return path, private_pem, public_pem


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_secret_in_worker_logs_job_records_or_audit(redis_url: str, tmp_path: Path, log_format: str) -> None:
    config_path, private_pem, public_pem = _jwt_app(tmp_path, "boxsim-enterprise")
    sim_config = SimConfig(port=0, client_id="jwt-client-id", client_secret=CLIENT_SECRET,
                           jwt_public_key_pem=public_pem, jwt_public_key_id="kid-42")
    env = {"BOX_JWT_CONFIG_FILE": str(config_path), "BOX_CLIENT_ID": "", "BOX_CLIENT_SECRET": "",
           "BOX_ENTERPRISE_ID": "", "BOXCUT_INTAKE_TOKENS": INTAKE_TOKEN, "BOXCUT_INTAKE_HMAC_SECRETS": HMAC_SECRET,
           "BOXCUT_OPERATOR_TOKENS": OPERATOR_TOKEN, "BOXCUT_QUERY_TOKEN_SOURCES": "splunk",
           "BOXCUT_LOG_LEVEL": "DEBUG", "BOXCUT_LOG_FORMAT": log_format}
    with running_stack(redis_url, tmp_path, sim_config=sim_config, extra_env=env) as stack:
        job = stack.wait(stack.submit([{"type": "user", "login": "jdoe@example.com"}]))
        assert job.state is JobState.SUCCEEDED
        refused_token = _cached_token(redis_url, stack)
        stack.sim.expire_tokens()  # a 401 and a refresh: the paths most likely to log a token
        assert stack.wait(stack.submit([{"type": "user", "login": "rroe@example.com"}])).state is JobState.SUCCEEDED
        fresh_token = _cached_token(redis_url, stack)
        assert fresh_token != refused_token
        _use_the_intake(stack.start_intake())

        store = stack.store()
        records = json.dumps([store.load(job.job_id).to_dict(), *store.audit_entries()])
        logs = stack.worker_logs() + "".join(p.log_path.read_text(errors="replace") for p in stack.servers)
        key_line = private_pem.splitlines()[2]
        for secret in (CLIENT_SECRET, PASSPHRASE, refused_token, fresh_token, key_line, INTAKE_TOKEN, HMAC_SECRET,
                       OPERATOR_TOKEN):
            assert secret not in logs, "a secret reached the worker's or the intake's log"
            assert secret not in records, "a secret reached a job record or the audit stream"
        assert "POST /v1/alerts/splunk 202" in logs  # the intake did log the request, without its query


def _cached_token(redis_url: str, stack: Stack) -> str:
    key = f"{stack.key_prefix}box:token:{box_fingerprint(stack.settings())}"  # keyed by the Box and client
    cached = redis.Redis.from_url(redis_url).get(key)
    assert cached, "the access token is cached in Redis"
    return _token_from_cache(cached.decode())


def _use_the_intake(url: str) -> None:
    """A bearer post, a ?token= post (Splunk), a wrong token, and an operator read: every credential path."""
    alert = {"id": "secret-test", "targets": [{"type": "user", "login": "ann@example.com"}]}
    assert requests.post(f"{url}/v1/alerts", json=alert, timeout=10,
                         headers={"Authorization": f"Bearer {INTAKE_TOKEN}"}).status_code == 202
    splunk = {"sid": "s-1", "result": {"user": "ann@example.com"}}
    assert requests.post(f"{url}/v1/alerts/splunk?token={INTAKE_TOKEN}", json=splunk, timeout=10).status_code == 202
    assert requests.post(f"{url}/v1/alerts", json=alert, timeout=10,
                         headers={"Authorization": f"Bearer {HMAC_SECRET}"}).status_code == 401
    assert requests.get(f"{url}/v1/jobs", timeout=10,
                        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).status_code == 200


def _token_from_cache(raw: str) -> str:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return str(value["access_token"]) if isinstance(value, dict) else str(value)
