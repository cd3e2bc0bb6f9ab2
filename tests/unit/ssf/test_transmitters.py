"""BOXCUT_SSF_TRANSMITTERS: a file that would let a forged SET through, or could never verify one, stops boxcut
at start with a line naming the transmitter and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from config import SettingsError, load_settings
from tests.ssf_tokens import Transmitter, rsa_key

KEY = rsa_key()


def _settings(tmp_path: Path, document: Any) -> Any:
    path = tmp_path / "transmitters.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return load_settings({"BOXCUT_SSF_TRANSMITTERS": str(path)}, env_file=None)


def _entry(**changes: Any) -> dict[str, Any]:
    entry = Transmitter([KEY]).entry() | changes
    return {"transmitters": [{k: v for k, v in entry.items() if v is not None}]}


def test_a_good_file_gives_its_transmitters(tmp_path: Path) -> None:
    [transmitter] = _settings(tmp_path, _entry(iss_sub="user_id")).ssf_transmitters
    assert transmitter.algorithms == ("RS256",) and transmitter.jwks[0]["kid"] == KEY.kid
    assert transmitter.maps_iss_sub(transmitter.issuer) and not transmitter.maps_iss_sub("https://x.test")


def test_a_jwks_file_is_read_beside_the_transmitters_file(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [KEY.jwk()]}))
    [transmitter] = _settings(tmp_path, _entry(jwks=None, jwks_file="keys.json")).ssf_transmitters
    assert [k["kid"] for k in transmitter.jwks] == [KEY.kid]


@pytest.mark.parametrize(("document", "said"), [
    ("not json", "not JSON"),
    ({"transmitters": []}, "non-empty"),
    (_entry(algorithms=["HS256"]), "'HS256' is not accepted"),
    (_entry(algorithms=["none"]), "'none' is not accepted"),
    (_entry(algorithms=[]), "non-empty list"),
    (_entry(jwks_uri="https://idp.example.test/jwks"), "exactly one of jwks"),
    (_entry(jwks=None), "exactly one of jwks"),
    (_entry(jwks={"keys": [{**KEY.jwk(), "d": "secret"}]}), "private key"),
    (_entry(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}), "only RSA, EC and OKP"),
    (_entry(jwks={"keys": [{k: v for k, v in KEY.jwk().items() if k != "kid"}]}), "with a kid"),
    (_entry(jwks={"keys": [KEY.jwk(), KEY.jwk()]}), "names a kid twice"),
    (_entry(jwks={"keys": [{**KEY.jwk(), "use": "enc"}]}), "not sig"),
    (_entry(jwks={"keys": [{**KEY.jwk(), "n": "not-base64!"}]}), "not a usable key"),
    (_entry(iss_sub="{sub}@{domain}"), "login template"),
    (_entry(iss_sub="everyone"), "login template"),
    (_entry(issuer=""), "issuer must be a non-empty string"),
    (_entry(audiences=["typo"]), "unknown field 'audiences'"),
    (_entry(jwks=None, jwks_uri="file:///etc/keys"), "must be an https URL"),
    (_entry(jwks=None, jwks_uri="http://idp.example.test/keys"), "plain http only to 127.0.0.1"),
])
def test_a_bad_file_is_refused_at_start_naming_what_is_wrong(tmp_path: Path, document: Any, said: str) -> None:
    with pytest.raises(SettingsError, match="BOXCUT_SSF_TRANSMITTERS") as refused:
        _settings(tmp_path, document)
    assert said in str(refused.value)


def test_an_issuer_configured_twice_is_refused(tmp_path: Path) -> None:
    entry = Transmitter([KEY]).entry()
    with pytest.raises(SettingsError, match="configured twice"):
        _settings(tmp_path, {"transmitters": [entry, entry]})


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"BOXCUT_SSF_TRANSMITTERS": str(tmp_path / "none.json")}, env_file=None)
