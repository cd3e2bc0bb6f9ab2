"""BOXCUT_DRY_RUN: no source can make boxcut send a terminate call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.harness import REPO, running_stack
from worker.jobs.model import JobState

pytestmark = pytest.mark.integration

TOKEN = "dry-run-intake-token"


def test_global_dry_run_sends_no_terminate_call_from_any_source(redis_url: str, tmp_path: Path) -> None:
    env = {"BOXCUT_DRY_RUN": "true", "BOXCUT_INTAKE_TOKENS": TOKEN}
    with running_stack(redis_url, tmp_path, extra_env=env) as stack:
        url = stack.start_intake()

        def cli(*args: str) -> str:
            run = subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
            return run.stdout.split()[0]

        csv_path = tmp_path / "offboard.csv"
        csv_path.write_text("user_login,group_name\nalice@example.com,\n,Engineering\n")
        alert = requests.post(f"{url}/v1/alerts", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"id": "dry-1", "targets": [{"type": "user", "login": "jdoe@example.com"}]})
        jobs = [cli("terminate", "--user", "rroe@example.com", "--group", "Contractors", "--wait"),
                alert.json()["job_id"],
                cli("offboard", str(csv_path), "--approve", "--wait")]
        records = [stack.wait(job_id) for job_id in jobs]
        terminate_calls = stack.terminate_requests() + stack.terminate_requests("/groups/terminate_sessions")

    assert [r.state for r in records] == [JobState.DRY_RUN] * 3
    assert [r.source for r in records] == ["cli", "generic", "offboarding"]
    assert terminate_calls == []
