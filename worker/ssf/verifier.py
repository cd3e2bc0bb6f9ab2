"""Verifying a pushed Security Event Token (RFC 8417 as SSF 1.0 profiles it) with PyJWT: the transmitter by `iss`,
its key by `kid`, the algorithm pinned per transmitter, `aud`, `iat` inside a window. Every refusal carries the
RFC 8935 error code a transmitter is answered with. Replays (`jti`) are refused where jobs are claimed
(worker/ssf/receiver.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from config import defaults
from config.ssf_transmitters import Transmitter
from worker.errors import InvalidInput
from worker.ssf.keys import KeysUnavailable, TransmitterKeys

SET_TYPES = ("secevent+jwt", "application/secevent+jwt")  # the JOSE `typ` SSF requires (media type, or short)
MAX_JTI_CHARS = 1000
MAX_IAT = 2**53  # seconds: far past any real time, and where floats stop holding every whole number


class SetRefused(InvalidInput):
    """A SET this receiver will not take; `err` is the RFC 8935 code (invalid_request, invalid_key,
    invalid_issuer, invalid_audience, authentication_failed, access_denied)."""

    def __init__(self, err: str, description: str) -> None:
        # What a token said (PyJWT quotes it) may hold a lone surrogate, which no JSON answer can carry.
        description = description.encode("utf-8", "backslashreplace").decode("utf-8")[:500]
        super().__init__(f"{err}: {description}")
        self.err, self.description = err, description


@dataclass(frozen=True)
class VerifiedSet:
    """A SET whose signature, issuer, audience and age were checked."""

    transmitter: Transmitter
    claims: Mapping[str, Any]

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def events(self) -> Mapping[str, Any]:
        return self.claims["events"]  # type: ignore[no-any-return]


class SetVerifier:
    """Checks SETs against the configured transmitters."""

    def __init__(self, transmitters: tuple[Transmitter, ...], keys: TransmitterKeys, *,
                 max_age_seconds: float = defaults.SSF_MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.transmitters = {t.issuer: t for t in transmitters}
        self.keys, self.max_age, self.clock = keys, max_age_seconds, clock

    def verify(self, token: str) -> VerifiedSet:
        """The verified SET, or SetRefused. Nothing the token says is trusted before its signature is checked,
        except `iss` and `kid`, which only choose the transmitter and key to check it with."""
        header, unverified = _unverified(token)
        transmitter = self._transmitter(unverified.get("iss"))
        key = self._key(transmitter, header)
        claims = self._decode(token, transmitter, key, str(header["alg"]))
        self._check_age(claims["iat"])
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti.strip() or len(jti) > MAX_JTI_CHARS or not _utf8(jti):
            raise SetRefused("invalid_request", f"the SET's jti must be text of 1 to {MAX_JTI_CHARS} characters")
        events = claims.get("events")
        if not isinstance(events, dict) or not events or not all(isinstance(v, dict) for v in events.values()):
            raise SetRefused("invalid_request", "the SET's events claim must map event type URIs to objects")
        return VerifiedSet(transmitter, claims)

    def _transmitter(self, issuer: object) -> Transmitter:
        if not isinstance(issuer, str):
            raise SetRefused("invalid_request", "the SET has no iss claim")
        transmitter = self.transmitters.get(issuer)
        if transmitter is None:
            raise SetRefused("invalid_issuer", f"issuer {issuer[:200]!r} is not a configured transmitter")
        return transmitter

    def _key(self, transmitter: Transmitter, header: Mapping[str, Any]) -> jwt.PyJWK:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise SetRefused("authentication_failed", "the SET is not signed (alg none)")
        if alg not in transmitter.algorithms:
            raise SetRefused("invalid_key", f"alg {alg[:20]!r} is not accepted from this issuer "
                                            f"(accepted: {', '.join(transmitter.algorithms)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise SetRefused("invalid_key", "the SET's header names no kid")
        try:
            jwk = self.keys.key(transmitter, kid)
        except KeysUnavailable as unavailable:
            raise SetRefused("invalid_key", str(unavailable)) from None
        if jwk is None:
            raise SetRefused("invalid_key", f"kid {kid[:100]!r} is not one of this issuer's keys")
        if jwk.get("alg") not in (None, alg):
            raise SetRefused("invalid_key", f"key {kid[:100]!r} is for {jwk['alg']}, not {alg}")
        try:
            return jwt.PyJWK(dict(jwk), algorithm=alg)  # the algorithm bound to the key: PyJWT verifies with it
        except jwt.PyJWTError as error:
            raise SetRefused("invalid_key", f"key {kid[:100]!r} cannot verify {alg}: {error}") from None

    def _decode(self, token: str, transmitter: Transmitter, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, key=key, algorithms=[alg], audience=list(transmitter.audiences),
                              issuer=transmitter.issuer,
                              options={"require": ["iss", "aud", "iat", "jti"], "verify_iat": False})
        except jwt.InvalidAudienceError:
            raise SetRefused("invalid_audience", "the SET's aud is not this receiver's audience") from None
        except jwt.InvalidIssuerError:
            raise SetRefused("invalid_issuer", "the SET's iss is not the transmitter's issuer") from None
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise SetRefused("authentication_failed", "the SET's signature does not verify") from None
        except jwt.InvalidKeyError as error:
            raise SetRefused("invalid_key", f"the key cannot verify this SET: {error}") from None
        except jwt.MissingRequiredClaimError as missing:
            raise SetRefused("invalid_request", f"the SET has no {missing.claim} claim") from None
        except jwt.ExpiredSignatureError:
            raise SetRefused("invalid_request", "the SET carries an exp that has passed") from None
        except jwt.PyJWTError as error:
            raise SetRefused("invalid_request", f"the SET cannot be read: {error}") from None

    def _check_age(self, iat: object) -> None:
        # NaN compares false both ways and would pass any window; infinities and 400-digit numbers overflow.
        if not isinstance(iat, int | float) or isinstance(iat, bool) or not -MAX_IAT < iat < MAX_IAT:
            raise SetRefused("invalid_request", "the SET's iat must be a number (seconds since the epoch)")
        now = self.clock()
        if iat < now - self.max_age:
            raise SetRefused("invalid_request", f"the SET was issued {int(now - iat)} s ago; this receiver takes "
                                                f"SETs up to {int(self.max_age)} s old")
        if iat > now + defaults.SSF_FUTURE_LEEWAY_SECONDS:
            raise SetRefused("invalid_request", f"the SET's iat is {int(iat - now)} s in the future")


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, unchecked: only to choose the transmitter and key."""
    if token.count(".") != 2:
        raise SetRefused("invalid_request", "the body is not a compact JWS (three base64url parts)")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise SetRefused("invalid_request", f"the body is not a compact JWS: {error}") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in SET_TYPES:  # a media type: any case
        raise SetRefused("invalid_request", "the JOSE header's typ must be secevent+jwt")
    return header, claims


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape
        return False
    return True
