"""Batching against boxsim: 250 users in one job become calls of 100, 100 and 50 ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.integration.harness import running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration


def test_250_users_in_one_job_make_3_calls_of_100_100_50(redis_url: str, tmp_path: Path) -> None:
    sim_config, env = SimConfig(port=0, generate_users=250), {"BOXCUT_APPROVAL_THRESHOLD": "1000"}
    with running_stack(redis_url, tmp_path, sim_config=sim_config, extra_env=env) as stack:
        logins = [f"user{i:05d}@example.com" for i in range(1, 251)]
        job = stack.wait(stack.submit([{"type": "user", "login": login} for login in logins]), timeout=120)
        assert job.state is JobState.SUCCEEDED
        assert all(t.status is TargetStatus.ACCEPTED for t in job.targets)
        assert [len(r["body"]["user_ids"]) for r in stack.terminate_requests()] == [100, 100, 50]
        assert len(job.calls) == 3
