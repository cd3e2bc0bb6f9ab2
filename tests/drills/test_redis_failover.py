"""Drill: the Redis primary behind three Sentinels is SIGKILLed mid-storm. The Sentinels promote the replica; the
workers and the intake follow it by themselves (nobody restarts them or changes a setting), and every job answered
202 before the kill ends final, each of its users accepted by Box."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from boxsim import SimConfig
from tests.drills.sentinels import sentinel_group
from tests.integration.harness import running_stack
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
TOKEN = "failover-intake-token"
ALERTS = 60
# Approval out of the way, the sweep every second, small batches, and a claim over one call's worst case here.
ENV = {"BOXCUT_INTAKE_TOKENS": TOKEN, "BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1",
       "BOXCUT_BATCH_SIZE": "5", "BOXCUT_CALL_CLAIM_SECONDS": "15"}


@dataclass(frozen=True)
class Answer:
    """The intake's 202 for one alert: the job it made and when it said so (monotonic and epoch seconds)."""

    job_id: str
    at: float
    refused_before: int  # answers other than 202 this alert met first (503 during the failover), as a SIEM retries


def test_a_primary_killed_mid_storm_fails_over_and_every_job_answered_202_ends(tmp_path: Path) -> None:
    with sentinel_group(tmp_path / "redis") as group, running_stack(
            group.url, tmp_path, sim_config=SimConfig(port=0, generate_users=ALERTS), extra_env=ENV,
            worker=False) as stack:
        workers = [stack.start_worker(concurrency=2, beat=n == 0) for n in range(2)]
        intake = stack.start_intake()
        # Calls slow enough (under the 2 s read timeout) that some are in flight when the primary dies.
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 300}])
        answers: dict[int, Answer] = {}
        poster = threading.Thread(target=_post_alerts, args=(intake, answers), daemon=True)
        poster.start()
        _wait_until(lambda: len(answers) >= ALERTS // 3 and bool(stack.terminate_requests()), "work under way")

        killed_at, killed_epoch = group.primary.kill(), time.time()
        promoted_at = group.wait_for_failover()
        poster.join(timeout=240)
        assert not poster.is_alive(), "the intake did not answer every alert after the failover"

        jobs = {n: stack.wait(a.job_id, timeout=240) for n, a in answers.items()}
        after_kill = [r["time"] for r in stack.terminate_requests() if r["time"] > killed_epoch]
        alive = [w.proc.poll() is None for w in workers] + [s.proc.poll() is None for s in stack.servers]
        logs = stack.worker_logs()
        accepted_per_user = stack.sim.terminated_user_ids()

    before_kill = [n for n, a in answers.items() if a.at < killed_at]
    states = Counter(j.state for j in jobs.values())
    first_call = min(after_kill) - killed_epoch if after_kill else None
    refused = sum(a.refused_before for a in answers.values())
    print(f"Sentinel failover: {len(before_kill)} jobs answered 202 before the kill, {len(answers)} in all; "
          f"replica promoted {promoted_at - killed_at:.1f} s after the kill; first Box call after the kill "
          f"{first_call if first_call is None else round(first_call, 1)} s; {refused} answers other than 202 "
          f"during the failover; {dict(states)}; processes alive {alive}")
    assert len(answers) == ALERTS and before_kill
    assert all(alive) and "Unrecoverable error" not in logs
    assert states == {JobState.SUCCEEDED: ALERTS}  # jobs lost: 0
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs.values() for t in j.targets)
    assert len(accepted_per_user) == ALERTS
    assert first_call is not None


def _post_alerts(intake: str, answers: dict[int, Answer]) -> None:
    """Post one alert a user every 50 ms; an alert the intake does not take (503 while Redis fails over, or no
    answer) is posted again with the same event id after half a second, as a SIEM retries a webhook."""
    for n in range(1, ALERTS + 1):
        refused = 0
        while True:
            try:
                answer = requests.post(f"{intake}/v1/alerts", headers={"Authorization": f"Bearer {TOKEN}"},
                                       timeout=15, json={"id": f"failover-{n}", "targets": [
                                           {"type": "user", "login": f"user{n:05d}@example.com"}]})
            except requests.RequestException:
                answer = None
            if answer is not None and answer.status_code in (200, 202):
                answers[n] = Answer(job_id=str(answer.json()["job_id"]), at=time.monotonic(), refused_before=refused)
                break
            assert answer is None or answer.status_code == 503, answer.text
            refused += 1
            time.sleep(0.5)
        time.sleep(0.05)


def _wait_until(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)
