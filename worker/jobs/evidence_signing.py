"""Signing and checking evidence reports: Ed25519 over the report's canonical JSON, in one file form.

A signed report is `{"report": {...}, "signature": {...}}`; the signed bytes are the canonical JSON of `report`
(sorted keys, no spaces, UTF-8). The file is written in one form only (`render`), and `verify` refuses a file
that is not exactly that form of its own content, as well as a bad signature: any changed byte fails, even one
(a space, a key's order, a base64 letter) that would leave the signed content the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from config import Settings
from worker.errors import InvalidInput

ALGORITHM = "Ed25519"
_SIGNATURE_FIELDS = frozenset({"alg", "key_id", "public_key", "value"})


class ReportRejected(InvalidInput, ValueError):
    """A report file that does not verify; the message is one line saying why. Still a ValueError, as it was
    before it joined the error tree (worker/errors.py), so no `except ValueError` changes meaning."""


@dataclass(frozen=True)
class Verified:
    """A report whose signature holds: by which key, and whether that key is one the checker trusts (given to it)
    or only the one the file carries (which proves the file unchanged since signed, not who signed it)."""

    key_id: str
    trusted: bool
    job_id: str


def configured_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The key BOXCUT_REPORT_SIGNING_KEY names, or None when reports go unsigned."""
    secret = settings.report_signing_key
    return load_private_key(secret.reveal()) if secret else None


def load_private_key(pem: str) -> Ed25519PrivateKey:
    """The signing key from its PEM (settings checked it is an Ed25519 PKCS8 key)."""
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_trusted_key(pem: bytes) -> Ed25519PublicKey:
    """A key to check reports against: an Ed25519 public key in PEM (a private key's PEM gives its public key)."""
    try:
        key: object = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ReportRejected("the key file is not a PEM Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReportRejected("the key file is not an Ed25519 key")
    return key


def public_half(key: Ed25519PrivateKey | None) -> Ed25519PublicKey | None:
    """The public key of `key` (None for none)."""
    return key.public_key() if key is not None else None


def public_key_pem(key: Ed25519PrivateKey) -> str:
    """The PEM (SubjectPublicKeyInfo) of the signing key's public half: what an auditor is given to check with."""
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(_raw(key)).hexdigest()[:16]


def canonical(report: dict[str, Any]) -> bytes:
    """The bytes that are signed: the report's JSON with sorted keys and no spaces, in UTF-8."""
    return json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(report: dict[str, Any], key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """The report document: the report and its signature (None without a key: an unsigned report)."""
    if key is None:
        return {"report": report, "signature": None}
    public = key.public_key()
    return {"report": report, "signature": {
        "alg": ALGORITHM,
        "key_id": key_id(public),
        "public_key": base64.b64encode(_raw(public)).decode(),
        "value": base64.b64encode(key.sign(canonical(report))).decode(),
    }}


def render(document: dict[str, Any]) -> str:
    """The one form a report file is written in (and `verify` accepts)."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def verify(data: bytes, *, trusted: Ed25519PublicKey | None = None) -> Verified:
    """Check a report file: exactly as `render` writes it, signed, and signed by `trusted` when given (else by
    the key it carries). Raises ReportRejected saying why not."""
    document = _parse(data)
    signature = document["signature"]
    if signature is None:
        raise ReportRejected("the report is unsigned (no BOXCUT_REPORT_SIGNING_KEY was set when it was made)")
    embedded = _embedded_key(signature)
    if trusted is not None and _raw(trusted) != _raw(embedded):
        raise ReportRejected(f"signed by key {key_id(embedded)}, not by the trusted key {key_id(trusted)}")
    try:
        embedded.verify(_strict_b64(signature["value"], "signature value"), canonical(document["report"]))
    except InvalidSignature:
        raise ReportRejected("the signature does not match the report: it was changed after signing") from None
    job = document["report"].get("job")
    job_id = str(job.get("job_id")) if isinstance(job, dict) else ""
    return Verified(key_id=key_id(embedded), trusted=trusted is not None, job_id=job_id)


def _parse(data: bytes) -> dict[str, Any]:
    """The document, if the file is one `render` wrote byte for byte."""
    try:
        text = data.decode("utf-8")
        document = json.loads(text)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a 5,000-digit number, nesting past the limit
        raise ReportRejected("the file is not a boxcut report (not UTF-8 JSON)") from None
    if not isinstance(document, dict) or set(document) != {"report", "signature"} \
            or not isinstance(document["report"], dict):
        raise ReportRejected("the file is not a boxcut report (expected the keys report and signature)")
    if render(document) != text:
        raise ReportRejected("the file is not as boxcut wrote it (its bytes differ from the form boxcut writes)")
    return document


def _embedded_key(signature: Any) -> Ed25519PublicKey:
    if not isinstance(signature, dict) or set(signature) != _SIGNATURE_FIELDS:
        raise ReportRejected("the signature block is malformed (expected alg, key_id, public_key, value)")
    if signature["alg"] != ALGORITHM:
        raise ReportRejected(f"unsupported signature algorithm {signature['alg']!r} (expected {ALGORITHM})")
    raw = _strict_b64(signature["public_key"], "public key")
    if len(raw) != 32:
        raise ReportRejected("the public key is not 32 bytes")
    key = Ed25519PublicKey.from_public_bytes(raw)
    if signature["key_id"] != key_id(key):
        raise ReportRejected("the key id does not name the public key the report carries")
    return key


def _strict_b64(value: Any, what: str) -> bytes:
    """Base64 in its one canonical spelling: a letter changed where base64 ignores it is still a change."""
    try:
        decoded = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is None or base64.b64encode(decoded).decode() != value:
        raise ReportRejected(f"the {what} is not base64 as boxcut writes it")
    return decoded


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
