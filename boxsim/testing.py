"""Helpers for tests that drive a BoxSim: key pairs, JWT assertions and token requests."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from boxsim.config import SimConfig
from boxsim.oauth import CCG_GRANT, JWT_GRANT
from boxsim.sim import BoxSim


@dataclass(frozen=True)
class KeyPair:
    """An RSA key pair as PEM text: the private half signs assertions, the public half goes in SimConfig."""

    private_pem: str
    public_pem: str


def rsa_key_pair(bits: int = 2048) -> KeyPair:
    """Generate a fresh RSA key pair."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem.decode(), public_pem.decode())


def jwt_assertion(config: SimConfig, private_pem: str, audience: str, *, exp_in: float = 45, **overrides: Any) -> str:
    """Sign an assertion as a Box JWT app would; `overrides` replace claims (a None value drops one).

    The header's kid is the config's public key id unless `kid=` is among the overrides.
    """
    kid = overrides.pop("kid", config.jwt_public_key_id)
    claims: dict[str, Any] = {
        "iss": config.client_id,
        "sub": config.enterprise_id,
        "box_sub_type": "enterprise",
        "aud": audience,
        "jti": secrets.token_hex(16),
        "exp": int(time.time() + exp_in),
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, private_pem, algorithm="RS256", headers=headers)


def ccg_form(config: SimConfig, **overrides: str) -> dict[str, str]:
    """Return the Client Credentials token request form for a config, with optional field overrides."""
    form = {
        "grant_type": CCG_GRANT,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "box_subject_type": "enterprise",
        "box_subject_id": config.enterprise_id,
    }
    form.update(overrides)
    return form


def jwt_form(config: SimConfig, assertion: str) -> dict[str, str]:
    """Return the JWT grant token request form for a config and a signed assertion."""
    return {
        "grant_type": JWT_GRANT,
        "assertion": assertion,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
    }


def fetch_token(sim: BoxSim) -> str:
    """Get an access token from a running simulator through its token endpoint (Client Credentials)."""
    response = requests.post(sim.oauth_url, data=ccg_form(sim.config), timeout=10)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token
