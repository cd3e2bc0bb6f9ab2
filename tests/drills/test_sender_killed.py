"""Drill: a worker is SIGKILLed while it holds calls of an alert storm that Box has not answered; a new worker
sends them again under their ids, every target ends accepted once, and no answered call is sent twice."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from boxsim import SimConfig
from tests.integration.harness import running_stack
from worker.jobs.model import CallState, JobState, TargetStatus
from worker.jobs.send_queue import SendQueue

pytestmark = pytest.mark.drill

USERS = "/2.0/users/terminate_sessions"
TOKEN = "drill-intake-token"


def test_a_sender_killed_mid_storm_strands_nothing_and_sends_no_answered_call_twice(redis_url: str,
                                                                                   tmp_path: Path) -> None:
    env = {"BOXCUT_INTAKE_TOKENS": TOKEN, "BOXCUT_APPROVAL_THRESHOLD": "1000", "BOXCUT_BATCH_SIZE": "10",
           # Timings shortened for the drill: a dead sender's call is taken again 10 s after it was taken.
           "BOXCUT_CALL_CLAIM_SECONDS": "10", "BOXCUT_RETRY_BUDGET_SECONDS": "2", "BOXCUT_HTTP_READ_TIMEOUT": "5",
           "BOXCUT_HTTP_CONNECT_TIMEOUT": "2",
           "BOXCUT_SWEEP_SECONDS": "1"}
    with running_stack(redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=150), extra_env=env,
                       worker=False) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 1500}])
        first = stack.start_worker(concurrency=3)
        url = stack.start_intake()

        def alert(n: int) -> str:
            answer = requests.post(f"{url}/v1/alerts", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                                   json={"id": f"drill-{n}", "targets": [{"type": "user",
                                                                          "login": f"user{n:05d}@example.com"}]})
            assert answer.status_code == 202
            return str(answer.json()["job_id"])

        with ThreadPoolExecutor(4) as pool:
            job_ids = list(pool.map(alert, range(1, 151)))
        queue = SendQueue(redis.Redis.from_url(redis_url), key_prefix=stack.key_prefix)
        flight_key = queue.flight_key("/users/terminate_sessions")
        deadline = time.monotonic() + 60
        while not (stack.terminate_requests() and queue.redis.zcard(flight_key)):
            assert time.monotonic() < deadline, "no call was in flight after the first answer"
            time.sleep(0.05)
        first.kill()  # mid-call: Box has them, boxcut has no answer recorded
        held = {m.decode() for m in queue.redis.zrange(flight_key, 0, -1)}
        assert held

        stack.start_worker()
        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        open_counts = {j: n for j in job_ids if (n := queue.open_targets(j))}
        requests_seen = [tuple(sorted(r["body"]["user_ids"])) for r in stack.terminate_requests()]
        depth = queue.depth("/users/terminate_sessions", now_ms=int(time.time() * 1000))

    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 150
    calls = {c.call_id: c for j in jobs for c in j.calls}
    for job in jobs:
        accepted = [c for c in job.targets[0].call_ids if calls[c].state is CallState.ANSWERED
                    and calls[c].http_status == 202]
        assert job.targets[0].status is TargetStatus.ACCEPTED and len(accepted) == 1
    by_ids = {tuple(sorted(c.ids)): call_id for call_id, c in calls.items() if c.ids}
    sent = Counter(by_ids[ids] for ids in requests_seen)
    assert {call_id for call_id, times in sent.items() if times > 1} <= held  # only calls the dead worker held
    assert sum(sent.values()) == len(requests_seen)  # every request Box saw is a call in the records
    assert depth.waiting_ids == 0 and depth.in_flight == 0 and not open_counts
