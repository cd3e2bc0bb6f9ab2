"""The `boxcut` CLI against the real stack: terminate --wait, status --json, jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Stack, running_stack
from worker.box.answers import TERMINATE_ACCEPTED_MESSAGE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("cli")) as running:
        yield running


def boxcut(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, cwd=REPO,
                          capture_output=True, text=True, timeout=90)


def test_terminate_wait_ends_succeeded_and_status_json_holds_boxs_message(stack: Stack) -> None:
    run = boxcut(stack, "terminate", "--user", "jdoe@example.com", "--reason", "cli test", "--wait")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.splitlines()[0]
    assert "succeeded" in run.stdout and TERMINATE_ACCEPTED_MESSAGE in run.stdout
    assert "1/1 targets  accepted 1" in run.stderr  # progress was shown
    record = json.loads(boxcut(stack, "status", job_id, "--json").stdout)
    assert record["state"] == "succeeded" and record["calls"][0]["message"] == TERMINATE_ACCEPTED_MESSAGE
    listing = json.loads(boxcut(stack, "jobs", "--state", "succeeded", "--json").stdout)
    assert job_id in [row["job_id"] for row in listing]


def test_terminate_without_targets_is_a_usage_error(stack: Stack) -> None:
    run = boxcut(stack, "terminate")
    assert run.returncode == 64 and "at least one --user or --group" in run.stderr


def test_status_of_an_unknown_job(stack: Stack) -> None:
    run = boxcut(stack, "status", "j-doesnotexist")
    assert run.returncode == 1 and "no job j-doesnotexist" in run.stderr


def test_a_bad_setting_stops_with_one_line_naming_it(stack: Stack, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "worker.cli", "jobs"], env={**stack.env, "BOXCUT_BATCH_SIZE": "x"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 64
    assert run.stderr.strip().splitlines() == ["boxcut: bad setting BOXCUT_BATCH_SIZE: expected a whole number "
                                               "from 1 to 1000, got 'x'"]


def test_intake_refuses_to_start_without_credentials(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k not in ("BOXCUT_INTAKE_TOKENS", "BOXCUT_INTAKE_HMAC_SECRETS")}
    run = subprocess.run([sys.executable, "-m", "worker.cli", "intake", "--port", "0"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 64 and "no intake credentials" in run.stderr


def test_insecure_dev_serves_on_loopback_only(stack: Stack) -> None:
    run = subprocess.run([sys.executable, "-m", "worker.cli", "intake", "--insecure-dev", "--host", "0.0.0.0"],
                         env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 64 and "loopback" in run.stderr


def test_audit_exports_json_lines_since_a_time_and_a_jobs_whole_trail(stack: Stack) -> None:
    run = boxcut(stack, "terminate", "--user", "jdoe@example.com", "--reason", "audit test", "--wait")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.splitlines()[0]
    lines = boxcut(stack, "audit", "--since", "1h", "--json").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert {"id", "job_id", "event", "at", "data"} <= set(entries[0])
    mine = [e for e in entries if e["job_id"] == job_id]
    assert mine[0]["event"] == "created" and mine[-1]["data"].get("to") == "succeeded"
    trail = [json.loads(line) for line in boxcut(stack, "audit", "--job", job_id, "--json").stdout.splitlines()]
    assert [e["event"] for e in trail] == [e["event"] for e in mine] and {e["job_id"] for e in trail} == {job_id}
    assert boxcut(stack, "audit", "--since", "2999-01-01T00:00:00Z", "--json").stdout == ""
    text = boxcut(stack, "audit", "--job", job_id).stdout.splitlines()
    assert len(text) == len(trail) and job_id in text[0] and "created" in text[0]


def test_audit_refuses_a_since_it_cannot_read_and_an_unknown_job(stack: Stack) -> None:
    bad = boxcut(stack, "audit", "--since", "yesterday")
    assert bad.returncode == 64 and "--since: expected an ISO 8601 time" in bad.stderr
    unknown = boxcut(stack, "audit", "--job", "j-0000000000000000")
    assert unknown.returncode == 1 and "no job j-0000000000000000" in unknown.stderr


def test_expire_keeps_what_the_retention_keeps(stack: Stack) -> None:
    run = boxcut(stack, "terminate", "--user", "jdoe@example.com", "--wait")
    job_id = run.stdout.splitlines()[0]
    expired = boxcut(stack, "expire")
    assert expired.returncode == 0 and expired.stdout.startswith("retention 400 days: removed 0 jobs"), expired.stdout
    assert boxcut(stack, "status", job_id).returncode == 0
