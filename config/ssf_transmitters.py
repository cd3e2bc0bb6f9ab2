"""The Shared Signals transmitters boxcut receives Security Event Tokens from (BOXCUT_SSF_TRANSMITTERS): a JSON
file, docs/shared-signals.md documents it.

    {"transmitters": [{
        "issuer": "https://idp.example.com",             the SET's `iss`, exactly
        "audience": "https://boxcut.example.com/ssf",    the `aud` this receiver's stream was given (or a list)
        "algorithms": ["RS256"],                         the signing algorithms accepted, pinned (asymmetric only)
        "jwks": {"keys": [...]}  |  "jwks_file": "keys.json"  |  "jwks_uri": "https://idp.example.com/jwks",
        "iss_sub": "login" | "user_id" | "{sub}@example.com",   how an `iss_sub` subject names a Box user
        "subject_issuers": ["https://idp.example.com"],  whose `iss_sub` subjects are mapped (default: the issuer)
        "email_domains": ["example.com"]   the only e-mail domains its subjects may name; "*": any (default: the
                                           `iss_sub` template's domain, or any without one)
    }]}

Keys come from here only, never from a token (no `jku`, `x5u` or embedded `jwk` is followed). A `jwks_file` is
read relative to the transmitters file. Without `iss_sub`, an `iss_sub` subject is recorded, never acted on; so
is a subject whose login is outside `email_domains`, whatever its format, and, while `email_domains` is set, one
naming a Box user id (it shows no domain to check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

# Signatures by a transmitter's private key; never HMAC (a shared secret, or worse a public key used as one),
# never `none`.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})
ISS_SUB_AS_LOGIN, ISS_SUB_AS_USER_ID = "login", "user_id"
_FIELDS = {"issuer", "audience", "algorithms", "jwks", "jwks_file", "jwks_uri", "iss_sub", "subject_issuers",
           "email_domains"}
ANY_DOMAIN = "*"


@dataclass(frozen=True)
class Transmitter:
    """One transmitter: who it is, what it signs with, and how its subjects name Box users."""

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    jwks: tuple[Mapping[str, Any], ...] = ()  # inline or from `jwks_file`; empty when `jwks_uri` is set
    jwks_uri: str | None = None
    iss_sub: str | None = None  # "login", "user_id", or a template holding "{sub}"
    subject_issuers: tuple[str, ...] = field(default=())
    # The e-mail domains (lower case) its subjects may name; None: any. A stolen transmitter key, or a
    # misconfigured transmitter, then cannot reach beyond the directory it speaks for.
    email_domains: tuple[str, ...] | None = None

    def maps_iss_sub(self, iss: str) -> bool:
        return self.iss_sub is not None and iss in (self.subject_issuers or (self.issuer,))


def load_transmitters(path: Path) -> tuple[Transmitter, ...]:
    """The transmitters the file at `path` names, or ValueError saying which one and what is wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not JSON in UTF-8: {exc}") from None
    entries = document.get("transmitters") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'{path} must be an object with a non-empty "transmitters" list')
    transmitters = tuple(_transmitter(entry, f"transmitters[{i}]", path.parent) for i, entry in enumerate(entries))
    issuers = [t.issuer for t in transmitters]
    repeated = sorted({i for i in issuers if issuers.count(i) > 1})
    if repeated:
        raise ValueError(f"issuer {repeated[0]!r} is configured twice")
    return transmitters


def _transmitter(entry: object, where: str, base: Path) -> Transmitter:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    issuer = _text(entry.get("issuer"), f"{where}.issuer")
    sources = [name for name in ("jwks", "jwks_file", "jwks_uri") if entry.get(name) is not None]
    if len(sources) != 1:
        raise ValueError(f"{where}: give exactly one of jwks, jwks_file and jwks_uri")
    jwks: tuple[Mapping[str, Any], ...] = ()
    jwks_uri = None
    if sources[0] == "jwks_uri":
        jwks_uri = _https_uri(entry["jwks_uri"], f"{where}.jwks_uri")
    else:
        document = entry["jwks"] if sources[0] == "jwks" else _read_jwks(entry["jwks_file"], base, where)
        jwks = check_jwks(document, f"{where}.{sources[0]}")
    iss_sub = _iss_sub(entry.get("iss_sub"), f"{where}.iss_sub")
    return Transmitter(
        issuer=issuer, audiences=_texts(entry.get("audience"), f"{where}.audience"),
        algorithms=_algorithms(entry.get("algorithms"), f"{where}.algorithms"), jwks=jwks, jwks_uri=jwks_uri,
        iss_sub=iss_sub,
        subject_issuers=_texts(entry["subject_issuers"], f"{where}.subject_issuers")
        if entry.get("subject_issuers") is not None else (),
        email_domains=_email_domains(entry.get("email_domains"), iss_sub, f"{where}.email_domains"),
    )


def check_jwks(document: object, where: str) -> tuple[Mapping[str, Any], ...]:
    """The keys of a JWK Set, each a public signing key with a `kid` (a JWKS fetched later is checked alike)."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError(f'{where} must be a JWK Set: an object with a non-empty "keys" list')
    kids = []
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or not isinstance(key.get("kid"), str) or not key["kid"]:
            raise ValueError(f"{where}.keys[{i}] must be a JWK with a kid")
        if key.get("kty") not in ("RSA", "EC", "OKP"):
            raise ValueError(f"{where}.keys[{i}] has kty {key.get('kty')!r}: only RSA, EC and OKP public keys")
        if "d" in key:
            raise ValueError(f"{where}.keys[{i}] is a private key: give the transmitter's public keys only")
        if key.get("use", "sig") != "sig":
            raise ValueError(f"{where}.keys[{i}] has use {key['use']!r}, not sig")
        try:
            jwt.PyJWK(key)  # a key that cannot be read is said now, not as invalid_key at the first SET
        except jwt.PyJWTError as error:
            raise ValueError(f"{where}.keys[{i}] ({key['kid']!r}) is not a usable key: {error}") from None
        kids.append(key["kid"])
    if len(set(kids)) != len(kids):
        raise ValueError(f"{where} names a kid twice")
    return tuple(keys)


def _read_jwks(name: object, base: Path, where: str) -> object:
    path = base / _text(name, f"{where}.jwks_file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}.jwks_file: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}.jwks_file: {path} is not JSON: {exc}") from None


def _algorithms(value: object, where: str) -> tuple[str, ...]:
    algorithms = _texts(value, where)
    refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
    if refused:
        raise ValueError(f"{where}: {refused[0]!r} is not accepted; use signature algorithms "
                         f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}), never none or HMAC")
    return algorithms


def _iss_sub(value: object, where: str) -> str | None:
    if value is None:
        return None
    text = _text(value, where)
    if text in (ISS_SUB_AS_LOGIN, ISS_SUB_AS_USER_ID):
        return text
    if text.count("{sub}") != 1 or re.search(r"[{}]", text.replace("{sub}", "")):
        raise ValueError(f'{where}: "login", "user_id", or a login template holding "{{sub}}" once '
                         f'(e.g. "{{sub}}@example.com")')
    return text


def _email_domains(value: object, iss_sub: str | None, where: str) -> tuple[str, ...] | None:
    """The domains given, lower-cased; None for "*". Not given: the domain an `iss_sub` template writes
    (`{sub}@example.com`: `example.com`), so a transmitter speaking for one directory names no one outside it."""
    if value is None:
        return _template_domain(iss_sub)
    if value == ANY_DOMAIN:
        return None
    domains = tuple(domain.lower() for domain in _texts(value, where))
    for i, domain in enumerate(domains):
        labels = domain.split(".")
        if "@" in domain or len(labels) < 2 or not all(labels) or any(ch.isspace() for ch in domain):
            raise ValueError(f'{where}[{i}]: {domain!r} is not an e-mail domain such as "example.com" '
                             f'(or give "{ANY_DOMAIN}" for any)')
    return domains


def _template_domain(iss_sub: str | None) -> tuple[str, ...] | None:
    """The domain after the @ of an `iss_sub` template, when the `sub` does not write it."""
    if iss_sub is None or iss_sub in (ISS_SUB_AS_LOGIN, ISS_SUB_AS_USER_ID) or "@" not in iss_sub:
        return None
    domain = iss_sub.rsplit("@", 1)[1]
    return None if "{sub}" in domain or not domain else (domain.lower(),)


def _https_uri(value: object, where: str) -> str:
    """An https URL: whoever could answer a plain-http fetch would supply the keys. Plain http only to this host
    (a local test transmitter)."""
    uri = _text(value, where)
    parts = urlsplit(uri)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError(f"{where} must be an https URL (plain http only to 127.0.0.1, ::1 or localhost)")
    return uri


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty string")
    return value.strip()


def _texts(value: object, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where} must be a string or a non-empty list of strings")
    return tuple(_text(item, f"{where}[{i}]") for i, item in enumerate(items))
