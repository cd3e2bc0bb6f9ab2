"""Evidence reports end to end: a job run by a real worker against boxsim, its report written by the `boxcut`
CLI as a process of its own, verified, and refused once one byte of it is changed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.integration.harness import REPO, Stack, running_stack
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("report")
    key_file = tmp / "report-signing-key.pem"
    key_file.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                                     NoEncryption()))
    with running_stack(redis_url, tmp, extra_env={"BOXCUT_REPORT_SIGNING_KEY_FILE": str(key_file)}) as running:
        yield running


def boxcut(stack: Stack, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=env or stack.env, cwd=REPO,
                          capture_output=True, text=True, timeout=90)


def test_a_finished_jobs_report_verifies_and_with_one_byte_changed_does_not(stack: Stack, tmp_path: Path) -> None:
    job = stack.wait(stack.submit([{"type": "user", "login": "jdoe@example.com"}], reason="evidence e2e"))
    assert job.state is JobState.SUCCEEDED
    out = tmp_path / "report.json"
    written = boxcut(stack, "report", job.job_id, "-o", str(out))
    assert written.returncode == 0, written.stderr
    report = json.loads(out.read_text())["report"]
    [call] = report["calls"]
    assert report["job"]["state"] == "succeeded" and report["job"]["reason"] == "evidence e2e"
    assert call["http_status"] == 202 and call["ids"] == ["17738362"] and call["attempts"] == 1
    assert call["request_id"], "boxsim sends a box-request-id: the report must carry it"
    assert report["audit"][0]["event"] == "created"

    verified = boxcut(stack, "report", "--verify", str(out))
    assert verified.returncode == 0, verified.stderr
    assert "signed by the trusted key" in verified.stdout

    public = tmp_path / "public.pem"
    exported = boxcut(stack, "report", "--export-public-key")
    public.write_text(exported.stdout)
    elsewhere = {k: v for k, v in stack.env.items() if not k.startswith("BOXCUT_REPORT_")}  # an auditor's machine
    assert boxcut(stack, "report", "--verify", str(out), "--public-key", str(public), env=elsewhere).returncode == 0

    data = bytearray(out.read_bytes())
    data[data.index(b'"17738362"') + 2] ^= 1  # one byte of the Box id sent
    out.write_bytes(bytes(data))
    refused = boxcut(stack, "report", "--verify", str(out))
    assert refused.returncode == 1 and "NOT VERIFIED" in refused.stderr, refused
    assert boxcut(stack, "report", "--verify", str(out), "--public-key", str(public), env=elsewhere).returncode == 1
