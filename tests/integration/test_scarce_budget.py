"""Box's budget spent well when it is scarce, against real prefork workers, Redis and boxsim over HTTP: a storm
bigger than boxcut's rate limit rides a few full calls; a 429 pause gathers what arrives into the first call
after it; a worker killed while it holds a call has that call sent again within seconds."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from boxsim import SimConfig
from tests.integration.harness import running_stack, until
from tests.integration.test_shared_sending import ENV, USERS, alert, login, post_storm, sent_ids
from worker.jobs.model import CallState, JobState
from worker.run.directory_cache import DirectoryCache

pytestmark = pytest.mark.integration


def test_with_a_budget_of_20_a_minute_400_alerts_within_2_s_end_accepted_in_at_most_8_calls(
        redis_url: str, tmp_path: Path) -> None:
    env = {**ENV, "BOXCUT_RATE_LIMIT_PER_MINUTE": "20"}  # a slot every 3 s, a burst of 2
    with running_stack(redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=400), extra_env=env,
                       concurrency=4) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": -1, "latency_ms": 150}])
        url = stack.start_intake()
        job_ids, posting = post_storm(url, 400)
        jobs = [stack.wait(j, timeout=180) for j in job_ids]
        sent = sent_ids(stack)
    assert posting < 2.0, f"posting took {posting:.1f} s: the test is about alerts within 2 s"
    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 400
    assert len(sent) <= 8, [len(ids) for ids in sent]
    assert sorted(i for ids in sent for i in ids) == sorted(j.targets[0].user_id or "" for j in jobs)


def test_alerts_during_a_429_pause_are_queued_say_so_and_ride_the_first_call_after_it(redis_url: str,
                                                                                     tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=200), extra_env=ENV,
                       concurrency=2) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "status": 429,
                               "headers": {"retry-after": "3"}}])
        url = stack.start_intake()
        store = stack.store()
        directory = DirectoryCache(store.redis, key_prefix=stack.key_prefix, ttl_seconds=600)
        until(directory.ready, "the directory copied in the background", timeout=30)  # resolving needs no call
        first = alert(url, "first", login(1))
        until(lambda: bool(stack.terminate_requests()), "the first call answered 429", timeout=30)
        paused_at = stack.terminate_requests()[0]["time"]
        with ThreadPoolExecutor(8) as posting:
            later = list(posting.map(lambda n: alert(url, f"during-{n}", login(n)), range(2, 41)))
        until(lambda: all(store.load(j).state is JobState.TERMINATING or store.load(j).state.is_final
                          for j in later), "resolved and queued", timeout=30)
        queued_by = time.time()
        jobs = [stack.wait(j, timeout=60) for j in (first, *later)]
        requests_seen = stack.terminate_requests()
        audits = {j: store.audit_entries(job_id=j) for j in later}
    assert queued_by < paused_at + 3, "the alerts were not all queued within the pause: the test proves nothing"
    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 40
    assert [(r["status"], len(r["body"]["user_ids"])) for r in requests_seen] == [(429, 1), (202, 40)]
    assert requests_seen[1]["time"] - paused_at >= 3.0
    for job_id, entries in audits.items():  # each said, while it waited, that it waited for the pause
        waits = [e["data"] for e in entries if e["event"] == "waiting"]
        assert any("429" in str(w.get("reason")) for w in waits), (job_id, waits)
    assert all(not j.waiting for j in jobs)  # cleared once the call carrying it was answered
    [answered_429] = [c for c in jobs[0].calls if c.http_status == 429]
    assert answered_429.state is CallState.ANSWERED and answered_429.attempts == 1


def test_a_call_held_by_a_worker_killed_whole_is_sent_again_within_10_s(redis_url: str, tmp_path: Path) -> None:
    # The holder waits for Box's answer longer than Box holds the call, so that the request is still on its way
    # when the holder is killed (with the harness's 2 s read timeout the holder would send it again itself).
    env = {**ENV, "BOXCUT_HTTP_READ_TIMEOUT": "30", "BOXCUT_VISIBILITY_TIMEOUT": "60"}
    with running_stack(redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=50), extra_env=env,
                       worker=False) as stack:
        stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "latency_ms": 15_000}])
        holder = stack.start_worker(concurrency=2)
        job_id = stack.submit([{"type": "user", "login": login(n)} for n in range(1, 6)])
        store = stack.store()
        until(lambda: bool(store.load(job_id).targets[0].call_ids), "the call taken", timeout=30)
        stack.start_worker(concurrency=2)
        time.sleep(1.0)  # the call is on its way to Box (which holds it 15 s)
        holder.kill()
        killed_at = time.time()
        job = stack.wait(job_id, timeout=60)
        until(lambda: len(stack.terminate_requests()) >= 2, "the first request logged", timeout=30)
        requests_seen = stack.terminate_requests()
    resent = [r for r in requests_seen if r["time"] > killed_at]
    assert resent and resent[0]["time"] - killed_at <= 10.0, [r["time"] - killed_at for r in requests_seen]
    assert job.state is JobState.SUCCEEDED
    [call] = job.calls  # sent again under its own id: one call, answered once
    assert call.state is CallState.ANSWERED and call.http_status == 202
    assert call.attempts == len(requests_seen) == 2  # every request Box saw is counted
