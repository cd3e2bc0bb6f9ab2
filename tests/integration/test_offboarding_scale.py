"""5,000 users from a generated CSV, approved with --approve, against boxsim with a rate limit set."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.integration.harness import REPO, running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration

USERS = 5000


def test_5000_users_in_50_calls_resolved_from_the_directory_copy(redis_url: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "layoff.csv"
    csv_path.write_text("user_login\n" + "".join(f"user{i:05d}@example.com\n" for i in range(1, USERS + 1)))
    sim_config = SimConfig(port=0, generate_users=USERS, rate_limit_per_minute=1000)
    env = {"BOXCUT_RATE_LIMIT_PER_MINUTE": "900"}
    with running_stack(redis_url, tmp_path, sim_config=sim_config, extra_env=env) as stack:
        # Box takes a moment to answer a terminate call; without it the job ends before the bar is drawn twice.
        stack.sim.add_faults([{"method": "POST", "path": "/2.0/users/terminate_sessions", "times": -1,
                               "latency_ms": 150}])
        run = subprocess.run([sys.executable, "-m", "worker.cli", "offboard", str(csv_path), "--approve", "--wait"],
                             env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        job = stack.store().load(run.stdout.split()[0])
        requests_ = stack.sim.requests()

    assert job.state is JobState.SUCCEEDED
    assert Counter(t.status for t in job.targets) == {TargetStatus.ACCEPTED: USERS}
    by_endpoint = Counter((r["method"], r["path"]) for r in requests_)
    assert by_endpoint[("POST", "/2.0/users/terminate_sessions")] == 50
    resolution = by_endpoint[("GET", "/2.0/users")] + by_endpoint[("GET", "/2.0/users/me")]
    assert resolution <= USERS // 1000 + 3, by_endpoint
    assert {t.resolved_by for t in job.targets} == {"directory"}
    assert not [r for r in requests_ if r["status"] == 429]
    done = [int(m.replace(",", "")) for m in re.findall(r"\] ([\d,]+)/5,000 targets", run.stderr)]
    assert len(set(done)) >= 3 and done == sorted(done), run.stderr[-1500:]  # the bar moved, forward
