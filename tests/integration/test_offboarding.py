"""Bulk offboarding and the safety rules through the CLI, with a real worker and boxsim over HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Stack, running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration

# 41 seeded users (boxsim/seeds/default.json): 30 engineers, six more, two contractors and jdoe.
SEEDED = ([f"eng{i:02d}@example.com" for i in range(1, 31)]
          + [f"{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin", "frank", "rroe")]
          + [f"con{i}@contractor.example.com" for i in range(1, 4)] + ["jdoe@example.com"])


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"BOXCUT_PROTECTED_USERS": "jdoe@example.com"}
    with running_stack(redis_url, tmp_path_factory.mktemp("offboarding"), extra_env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_sim(stack: Stack) -> None:
    stack.sim.clear_faults()
    stack.sim.clear_requests()


def boxcut(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def csv_file(tmp_path: Path, rows: list[str], header: str = "user_login") -> Path:
    path = tmp_path / "offboard.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_a_protected_login_among_40_others_is_kept_and_the_rest_accepted(stack: Stack, tmp_path: Path) -> None:
    run = boxcut(stack, "offboard", str(csv_file(tmp_path, SEEDED)), "--approve", "--wait")
    assert run.returncode == 2, run.stdout + run.stderr  # partial: one target protected
    job = stack.store().load(run.stdout.splitlines()[0].split()[0])
    statuses = {t.login: t.status for t in job.targets}
    assert statuses.pop("jdoe@example.com") is TargetStatus.PROTECTED
    assert set(statuses.values()) == {TargetStatus.ACCEPTED} and len(statuses) == 40
    sent = [i for r in stack.terminate_requests() for i in r["body"]["user_ids"]]
    assert len(sent) == 40 and "17738362" not in sent
    assert job.approval is not None and job.approval.approved_by.startswith("cli:")
    assert "] 41/41 targets" in run.stderr  # the progress bar reached the end


def test_a_group_of_30_waits_for_approval_then_runs(stack: Stack) -> None:
    run = boxcut(stack, "terminate", "--group", "Engineering", "--wait")
    job_id = run.stdout.splitlines()[0]
    job = stack.store().load(job_id)
    assert job.state is JobState.AWAITING_APPROVAL and job.blast_radius == 30
    assert run.returncode == 3  # its own exit code: nothing was sent, a person must approve
    assert stack.terminate_requests("/groups/terminate_sessions") == []
    assert f"boxcut approve {job_id}" in run.stderr

    approved = boxcut(stack, "approve", job_id, "--wait")
    assert approved.returncode == 0, approved.stderr
    job = stack.store().load(job_id)
    assert job.state is JobState.SUCCEEDED and job.approval is not None
    assert job.approval.approved_by.startswith("cli:") and job.approval.approved_at
    assert len(stack.terminate_requests("/groups/terminate_sessions")) == 1


def test_an_admin_target_waits_for_approval(stack: Stack) -> None:
    run = boxcut(stack, "terminate", "--user", "admin@example.com", "--wait")
    job = stack.store().load(run.stdout.splitlines()[0])
    assert job.state is JobState.AWAITING_APPROVAL and stack.terminate_requests() == []
    assert job.approval is not None and "is a Box admin" in job.approval.reasons[0]
    assert boxcut(stack, "cancel", job.job_id).returncode == 0
    assert stack.store().load(job.job_id).state is JobState.CANCELLED


def test_a_file_with_three_bad_rows_is_refused_whole(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user_id,user_login\n17738363,\nabc,\n,\n,rroe@example.com\n17738362,,extra\n")
    before = stack.store().list_jobs(limit=1000)[0]
    run = boxcut(stack, "offboard", str(path), "--wait")
    assert run.returncode == 65
    problem_lines = [line.split(":")[0] for line in run.stderr.splitlines() if line.startswith("line ")]
    assert problem_lines == ["line 3", "line 4", "line 6"], run.stderr
    assert "nothing was submitted" in run.stderr
    assert stack.store().list_jobs(limit=1000)[0] == before and stack.terminate_requests() == []


def test_the_same_file_with_the_same_id_makes_one_job(stack: Stack, tmp_path: Path) -> None:
    path = csv_file(tmp_path, ["alice@example.com", "bob@example.com", "alice@example.com"])
    first = boxcut(stack, "offboard", str(path), "--id", "layoff-2026-11", "--wait")
    again = boxcut(stack, "offboard", str(path), "--id", "layoff-2026-11", "--wait")
    assert first.returncode == 0, first.stderr
    first_id, again_id = first.stdout.split()[0], again.stdout.split()[0]
    assert first_id == again_id and "submitted before" in again.stdout
    assert "2 targets from 3 rows (1 repeats merged)" in first.stderr
    assert len(stack.terminate_requests()) == 1


def test_retry_sends_only_the_failed_targets_again(stack: Stack) -> None:
    stack.sim.add_faults([{"method": "POST", "path": "/2.0/groups/terminate_sessions", "times": 1, "status": 403}])
    run = boxcut(stack, "terminate", "--user", "carol@example.com", "--group", "Contractors EU", "--wait")
    job_id = run.stdout.splitlines()[0]
    job = stack.store().load(job_id)
    assert job.state is JobState.PARTIAL and [t.status for t in job.targets] == [
        TargetStatus.ACCEPTED, TargetStatus.FAILED]
    stack.sim.clear_requests()

    retried = boxcut(stack, "retry", job_id, "--wait")
    assert retried.returncode == 0, retried.stderr
    job = stack.store().load(job_id)
    assert job.state is JobState.SUCCEEDED and len(job.calls) == 3
    assert stack.terminate_requests() == []  # the user's call was not sent again
    assert len(stack.terminate_requests("/groups/terminate_sessions")) == 1
    assert [c.http_status for c in job.calls] == [202, 403, 202]


def test_dry_run_lists_what_would_be_terminated(stack: Stack, tmp_path: Path) -> None:
    run = boxcut(stack, "offboard", str(csv_file(tmp_path, ["dave@example.com", "nobody@example.com"])),
                 "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "would terminate user dave@example.com" in run.stdout and "not_found" in run.stdout
    assert stack.terminate_requests() == []
    assert stack.store().load(run.stdout.split()[0]).state is JobState.DRY_RUN
