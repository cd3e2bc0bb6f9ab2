"""BOXCUT_REPORT_SIGNING_KEY: an Ed25519 PEM private key, from the variable or a file; a bad one stops the start
with a line naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from config import SettingsError, load_settings
from worker.jobs import evidence_signing

KEY = Ed25519PrivateKey.generate()
PEM = KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def test_unset_means_unsigned_reports() -> None:
    assert load_settings({}, env_file=None).report_signing_key is None


def test_the_key_from_the_variable_a_one_line_form_and_a_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(PEM)
    for env in ({"BOXCUT_REPORT_SIGNING_KEY": PEM}, {"BOXCUT_REPORT_SIGNING_KEY": PEM.replace("\n", "\\n")},
                {"BOXCUT_REPORT_SIGNING_KEY_FILE": str(path)}):
        key = evidence_signing.configured_key(load_settings(env, env_file=None))
        assert key is not None and evidence_signing.key_id(key.public_key()) == evidence_signing.key_id(
            KEY.public_key())
    assert "BEGIN" not in repr(load_settings({"BOXCUT_REPORT_SIGNING_KEY": PEM}, env_file=None))


@pytest.mark.parametrize(("value", "says"), [
    ("not a key", "expected an unencrypted PEM private key"),
    (ec.generate_private_key(ec.SECP256R1()).private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                            NoEncryption()).decode(), "expected an Ed25519 key"),
])
def test_a_bad_key_is_a_settings_error_naming_the_variable(value: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"^BOXCUT_REPORT_SIGNING_KEY: {says}"):
        load_settings({"BOXCUT_REPORT_SIGNING_KEY": value}, env_file=None)
    path = tmp_path / "key.pem"
    path.write_text(value)
    with pytest.raises(SettingsError, match=f"^BOXCUT_REPORT_SIGNING_KEY_FILE: {says}"):
        load_settings({"BOXCUT_REPORT_SIGNING_KEY_FILE": str(path)}, env_file=None)
