"""Checking a JWT bearer assertion the way Box's token endpoint does for server authentication."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

MAX_EXP_AHEAD_SECONDS = 60
# Clients usually write exp as a whole second; allow that rounding without accepting 61+ s.
EXP_ROUNDING_TOLERANCE_SECONDS = 1
ALGORITHMS = ["RS256"]
SIGNATURE_MESSAGE = (
    'Signature verification error. The public key identified by "kid" must correspond to the private key '
    "used for signing."
)


class AssertionRejected(Exception):
    """Raised with the `error_description` Box would give for an unacceptable assertion."""


@dataclass(frozen=True)
class AssertionPolicy:
    """What a valid assertion must carry for this simulator."""

    public_key: PublicKeyTypes
    key_id: str | None
    client_id: str
    enterprise_id: str
    audiences: Collection[str]


def verify_assertion(assertion: str, policy: AssertionPolicy, now: float | None = None) -> dict[str, Any]:
    """Verify signature, header and claims of an assertion; return its claims or raise AssertionRejected."""
    now = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise AssertionRejected("Invalid JWT assertion: it is not a well-formed JWT.") from None
    if policy.key_id is not None and header.get("kid") != policy.key_id:
        raise AssertionRejected(SIGNATURE_MESSAGE)
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key=policy.public_key,  # type: ignore[arg-type]
            algorithms=ALGORITHMS,
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise AssertionRejected(SIGNATURE_MESSAGE) from None
    except jwt.InvalidTokenError as exc:
        raise AssertionRejected(f"Invalid JWT assertion: {exc}.") from None
    _check_claims(claims, policy, now)
    return claims


def _check_claims(claims: dict[str, Any], policy: AssertionPolicy, now: float) -> None:
    """Refuse claims that do not name this app, enterprise and token URL, or a bad expiry."""
    expected = {"iss": policy.client_id, "sub": policy.enterprise_id, "box_sub_type": "enterprise"}
    for claim, value in expected.items():
        if claims.get(claim) != value:
            raise AssertionRejected(f"Please check the '{claim}' claim.")
    audience = claims.get("aud")
    if not isinstance(audience, str) or audience not in policy.audiences:
        raise AssertionRejected("Please check the 'aud' claim.")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise AssertionRejected("Please check the 'jti' claim.")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise AssertionRejected("Please check the 'exp' claim.")
    if exp <= now:
        raise AssertionRejected("Current date/time MUST be before the expiration date/time listed in the 'exp' claim")
    if exp > now + MAX_EXP_AHEAD_SECONDS + EXP_ROUNDING_TOLERANCE_SECONDS:
        raise AssertionRejected("Please check the 'exp' claim.")
