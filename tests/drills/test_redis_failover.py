"""Drill: the Redis primary behind three Sentinels is SIGKILLed mid-storm, twice. The Sentinels promote the replica;
the workers and the intake follow it by themselves (nobody restarts them or changes a setting), and every job
answered 202 ends final, each of its users accepted by Box."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from boxsim import SimConfig
from tests.drills.sentinels import SentinelGroup, sentinel_group
from tests.integration.harness import running_stack, until
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
TOKEN = "failover-intake-token"
ALERTS = 80
# Approval out of the way, the sweep every second, small batches, and a claim over one call's worst case here.
ENV = {"BOXCUT_INTAKE_TOKENS": TOKEN, "BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_SWEEP_SECONDS": "1",
       "BOXCUT_BATCH_SIZE": "5", "BOXCUT_CALL_CLAIM_SECONDS": "15"}


@dataclass(frozen=True)
class Answer:
    """The intake's 202 for one alert: the job it made and when it said so (monotonic and epoch seconds)."""

    job_id: str
    at: float
    refused_before: int  # answers other than 202 this alert met first (503 during the failover), as a SIEM retries


def test_a_primary_killed_mid_storm_fails_over_twice_and_every_job_answered_202_ends(tmp_path: Path) -> None:
    """The primary is SIGKILLed, the replica promoted; the old primary restarted rejoins as a replica; then the new
    primary is SIGKILLed too. The second failover is what a worker meets after a failed reconnect (which once left
    it on kombu's own transport, unmended)."""
    with sentinel_group(tmp_path / "redis") as group, running_stack(
            group.url, tmp_path, sim_config=SimConfig(port=0, generate_users=ALERTS), extra_env=ENV,
            worker=False) as stack:
        workers = [stack.start_worker(concurrency=2, beat=n == 0) for n in range(2)]
        intake = stack.start_intake()
        # Calls slow enough (under the 2 s read timeout) that some are in flight when a primary dies.
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 300}])
        answers: dict[int, Answer] = {}
        surprises: list[str] = []
        half = ALERTS // 2
        failovers = []
        for alerts in (range(1, half + 1), range(half + 1, ALERTS + 1)):  # a storm of alerts, a kill within it
            poster = threading.Thread(target=_post_alerts, args=(intake, alerts, answers, surprises), daemon=True)
            poster.start()
            under_way = alerts.start - 1 + half // 3
            until(lambda n=under_way: len(answers) >= n and bool(stack.terminate_requests()), "work under way",
                  timeout=60, interval=0.05)
            failovers.append(_fail_over(group))
            poster.join(timeout=240)
            assert not poster.is_alive(), "the intake did not answer every alert after the failover"
            if len(failovers) == 1:
                group.rejoin()  # the old primary, restarted, is the replica the second failover promotes

        jobs = {n: stack.wait(a.job_id, timeout=240) for n, a in answers.items()}
        calls = [r["time"] for r in stack.terminate_requests()]
        alive = [w.proc.poll() is None for w in workers] + [s.proc.poll() is None for s in stack.servers]
        logs = stack.worker_logs()
        accepted_per_user = stack.sim.terminated_user_ids()

    first_calls = [min((t for t in calls if t > f.killed_epoch), default=None) for f in failovers]
    states = Counter(j.state for j in jobs.values())
    refused = sum(a.refused_before for a in answers.values())
    for n, (failover, first_call) in enumerate(zip(failovers, first_calls, strict=True), start=1):
        answered_before = sum(1 for a in answers.values() if a.at < failover.killed_at)
        print(f"Sentinel failover {n}: {answered_before} jobs answered 202 before the kill; replica promoted "
              f"{failover.promoted_at - failover.killed_at:.1f} s after it; first Box call after it "
              f"{'none' if first_call is None else f'{first_call - failover.killed_epoch:.1f} s'}")
    print(f"  {len(answers)} jobs in all, {refused} answers other than 202 met on the way; {dict(states)}; "
          f"processes alive {alive}")
    assert surprises == []
    assert len(answers) == ALERTS and all(any(a.at < f.killed_at for a in answers.values()) for f in failovers)
    assert all(alive) and "Unrecoverable error" not in logs
    assert states == {JobState.SUCCEEDED: ALERTS}  # jobs lost: 0
    assert all(t.status is TargetStatus.ACCEPTED for j in jobs.values() for t in j.targets)
    assert len(accepted_per_user) == ALERTS
    assert all(first_calls)  # Box was called again after each kill


@dataclass(frozen=True)
class Failover:
    killed_at: float  # monotonic
    killed_epoch: float  # boxsim's clock
    promoted_at: float


def _fail_over(group: SentinelGroup) -> Failover:
    killed_at, killed_epoch = group.primary.kill(), time.time()
    return Failover(killed_at=killed_at, killed_epoch=killed_epoch, promoted_at=group.wait_for_failover())


def _post_alerts(intake: str, alerts: range, answers: dict[int, Answer], surprises: list[str]) -> None:
    """Post one alert a user every 100 ms; an alert the intake does not take (503 while Redis fails over, or no
    answer) is posted again with the same event id after half a second, as a SIEM retries a webhook. Any other
    answer is a surprise, noted for the test to report."""
    for n in alerts:
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
            if answer is not None and answer.status_code != 503:
                surprises.append(f"alert {n}: {answer.status_code} {answer.text[:300]}")
                return
            refused += 1
            time.sleep(0.5)
        time.sleep(0.1)

