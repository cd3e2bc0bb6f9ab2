"""Test transmitters for Shared Signals: RSA and EC keys, their JWKS, a transmitters file, and SETs signed with
them (or forged: unsigned, HMAC with the public key, another key); a JWKS endpoint that trickles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.example.test"
AUDIENCE = "https://boxcut.example.test/v1/ssf/events"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
ACCOUNT_DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
CREDENTIAL_COMPROMISE = "https://schemas.openid.net/secevent/risc/event-type/credential-compromise"
ACCOUNT_PURGED = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Transmitter:
    keys: list[SigningKey]
    issuer: str = ISSUER
    audience: str = AUDIENCE
    extra: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "audience": self.audience,
                "algorithms": sorted({k.alg for k in self.keys}),
                "jwks": {"keys": [k.jwk() for k in self.keys]}, **self.extra}

    def write(self, directory: Path, *others: Transmitter) -> Path:
        path = directory / "ssf-transmitters.json"
        path.write_text(json.dumps({"transmitters": [self.entry(), *(o.entry() for o in others)]}))
        return path


def set_claims(email: str = "jdoe@example.com", *, event: str = SESSION_REVOKED, issuer: str = ISSUER,
               audience: str = AUDIENCE, iat: float | None = None, jti: str | None = None,
               event_claims: dict[str, Any] | None = None, sub_id: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"iss": issuer, "aud": audience, "iat": int(iat if iat is not None else time.time()),
            "jti": jti or uuid.uuid4().hex,
            "sub_id": sub_id if sub_id is not None else {"format": "email", "email": email},
            "events": {event: event_claims if event_claims is not None else
                       {"event_timestamp": int(time.time()), "initiating_entity": "policy"}}}


def sign(claims: dict[str, Any], key: SigningKey, *, kid: str | None = None, typ: str = "secevent+jwt") -> str:
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": kid or key.kid, "typ": typ})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], kid: str = "rsa-1") -> str:
    """`alg: none`: a header and claims, and an empty signature."""
    header = {"alg": "none", "typ": "secevent+jwt", "kid": kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def hmac_with_public_key(claims: dict[str, Any], key: SigningKey) -> str:
    """HS256 keyed by the transmitter's public key (PEM): the algorithm-confusion forgery."""
    header = {"alg": "HS256", "typ": "secevent+jwt", "kid": key.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


class TricklingJwks:
    """A JWKS endpoint an attacker might stand behind: it sends its status line, then one header byte every 0.1 s
    (each well inside any read timeout), for `seconds`, and never ends its headers. `connected` is set when a
    fetch has reached it."""

    def __init__(self, seconds: float) -> None:
        self.connected = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connected.set()
                try:
                    self.request.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    ends = time.monotonic() + seconds
                    while time.monotonic() < ends:
                        self.request.sendall(b"a")
                        time.sleep(0.1)
                except OSError:  # the fetch gave up and closed its socket: what the tests want
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"

    def __enter__(self) -> TricklingJwks:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
