"""`boxcut report`: write a job's evidence report (signed JSON, or Markdown), verify one, export the public key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.unit.jobs.test_report import approved_job
from worker.cli import commands
from worker.jobs import evidence_signing
from worker.jobs.store import JobStore


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


KEY = Ed25519PrivateKey.generate()
SIGNING_ENV = {"BOXCUT_REPORT_SIGNING_KEY": pem(KEY)}
UNSIGNED_ENV = {"BOXCUT_REPORT_SIGNING_KEY": ""}


@pytest.fixture
def job_id(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(commands, "_store", lambda _settings: store)
    return approved_job(store)


def boxcut(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(commands.main, list(args), env=env if env is not None else SIGNING_ENV)


def test_a_report_written_to_a_file_verifies_and_one_changed_byte_does_not(job_id: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = boxcut("report", job_id, "-o", str(out))
    assert run.exit_code == 0, run.stderr
    assert f"signed by key {evidence_signing.key_id(KEY.public_key())}" in run.stderr
    assert json.loads(out.read_bytes())["report"]["job"]["job_id"] == job_id
    checked = boxcut("report", "--verify", str(out))
    assert checked.exit_code == 0 and "signed by the trusted key" in checked.stdout
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    out.write_bytes(bytes(data))
    refused = boxcut("report", "--verify", str(out))
    assert refused.exit_code == commands.EXIT_FAILED
    assert "NOT VERIFIED" in refused.stderr and refused.stdout == ""


def test_verify_with_a_public_key_file_and_with_none_says_what_it_proves(job_id: str, tmp_path: Path) -> None:
    out, public = tmp_path / "report.json", tmp_path / "public.pem"
    assert boxcut("report", job_id, "-o", str(out)).exit_code == 0
    exported = boxcut("report", "--export-public-key")
    assert exported.exit_code == 0 and exported.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    public.write_text(exported.stdout)
    trusted = boxcut("report", "--verify", str(out), "--public-key", str(public), env=UNSIGNED_ENV)
    assert trusted.exit_code == 0 and "trusted key" in trusted.stdout
    embedded = boxcut("report", "--verify", str(out), env=UNSIGNED_ENV)
    assert embedded.exit_code == 4 and "integrity, not origin" in embedded.stderr
    other = tmp_path / "other.pem"
    other.write_text(evidence_signing.public_key_pem(Ed25519PrivateKey.generate()))
    wrong = boxcut("report", "--verify", str(out), "--public-key", str(other))
    assert wrong.exit_code == 1 and "not by the trusted key" in wrong.stderr


def test_without_a_key_the_report_is_unsigned_with_a_warning_and_does_not_verify(job_id: str,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = boxcut("report", job_id, "-o", str(out), env=UNSIGNED_ENV)
    assert run.exit_code == 0 and "unsigned" in run.stderr
    assert json.loads(out.read_text())["signature"] is None
    refused = boxcut("report", "--verify", str(out), env=UNSIGNED_ENV)
    assert refused.exit_code == 1 and "unsigned" in refused.stderr


def test_the_json_report_goes_to_stdout_as_the_file_would_hold_it(job_id: str) -> None:
    run = boxcut("report", job_id)
    assert run.exit_code == 0
    assert evidence_signing.verify(run.stdout_bytes, trusted=KEY.public_key()).job_id == job_id


def test_the_markdown_form(job_id: str, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    run = boxcut("report", job_id, "--format", "md", "-o", str(out))
    assert run.exit_code == 0, run.stderr
    text = out.read_text()
    assert text.startswith(f"# Evidence report: job {job_id}") and "Unsigned" in text and "| call |" in text


def test_an_unknown_job_and_a_muddled_command_line_are_refused(job_id: str, tmp_path: Path) -> None:
    unknown = boxcut("report", "j-0123456789abcdef")
    assert unknown.exit_code == 1 and "no job j-0123456789abcdef" in unknown.stderr
    both = boxcut("report", job_id, "--export-public-key")
    assert both.exit_code == commands.EXIT_USAGE
    no_key = boxcut("report", "--export-public-key", env=UNSIGNED_ENV)
    assert no_key.exit_code == commands.EXIT_USAGE and "BOXCUT_REPORT_SIGNING_KEY" in no_key.stderr


def test_a_bad_signing_key_is_a_bad_setting_naming_it(job_id: str) -> None:
    run = boxcut("report", job_id, env={"BOXCUT_REPORT_SIGNING_KEY": "not a key"})
    assert run.exit_code == commands.EXIT_USAGE
    assert "bad setting BOXCUT_REPORT_SIGNING_KEY:" in run.stderr


def test_a_report_re_signed_with_another_key_is_not_taken_for_verified_without_a_trusted_key(
        job_id: str, tmp_path: Path) -> None:
    """An edited report signed again by a key of the editor's own is unchanged since *that* signature: only a
    trusted key tells it from boxcut's, and without one the exit code must not say verified."""
    out = tmp_path / "report.json"
    assert boxcut("report", job_id, "-o", str(out)).exit_code == 0
    document = json.loads(out.read_text())
    document["report"]["job"]["reason"] = "nothing happened here"
    forger = Ed25519PrivateKey.generate()
    forged = tmp_path / "forged.json"
    forged.write_text(evidence_signing.render(evidence_signing.sign(document["report"], forger)))
    assert boxcut("report", "--verify", str(forged), env=UNSIGNED_ENV).exit_code == 4
    assert boxcut("report", "--verify", str(forged)).exit_code == 1  # against the configured key: refused


@pytest.mark.parametrize("content", [b"[" * 100_000, b'{"report": ' + b"1" * 5000 + b"}"],
                         ids=["deep", "long-number"])
def test_a_file_no_json_reader_takes_is_refused_in_a_line(tmp_path: Path, content: bytes) -> None:
    odd = tmp_path / "odd.json"
    odd.write_bytes(content)
    run = boxcut("report", "--verify", str(odd))
    assert run.exit_code == 1 and "not a boxcut report" in run.stderr and "Traceback" not in run.output


def test_a_missing_file_is_said_in_a_line(tmp_path: Path) -> None:
    run = boxcut("report", "--verify", str(tmp_path / "none.json"))
    assert run.exit_code == 2 and "does not exist" in run.output and "Traceback" not in run.output
