"""Box's event stream with real workers, their periodic reader and boxsim over HTTP: Box Shield alerts become
jobs as the rule table decides, once each however they arrive, and what terminated users did afterwards is
recorded in their job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO, Stack, post_signed, running_stack, until
from worker.event_stream.cursor import StreamCursor
from worker.jobs.model import Job, JobState, TargetStatus

pytestmark = pytest.mark.integration

JDOE, RROE = "17738362", "17738363"
SECRET, OPERATOR = "shield-hmac-secret", "shield-operator-token"
READING = {"BOXCUT_EVENTS_POLL_SECONDS": "0.5", "BOXCUT_WATCH_MINUTES": "30",
           "BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_OPERATOR_TOKENS": OPERATOR}


def cursor(stack: Stack) -> StreamCursor:
    return StreamCursor(stack.store().redis, key_prefix=stack.key_prefix)


def reading(stack: Stack) -> None:
    """Wait until the reader has taken its first position (it starts from `now`: earlier events are not read)."""
    until(lambda: cursor(stack).position() is not None, "the event-stream reader's first pass", timeout=30)


def shield_jobs(stack: Stack) -> list[Job]:
    store = stack.store()
    return [store.load(row.job_id) for row in store.list_jobs(source="box-shield", limit=100)[0]]


def one_shield_job(stack: Stack, event_id: str) -> Job:
    until(lambda: any(j.source_event_id == event_id for j in shield_jobs(stack)), f"a job for {event_id}")
    jobs = [j for j in shield_jobs(stack) if j.source_event_id == event_id]
    assert len(jobs) == 1, [j.to_dict() for j in jobs]
    return stack.wait(jobs[0].job_id)


def stream_alert(stack: Stack, *, category: str, priority: str, user_id: str = JDOE, **more: Any) -> dict[str, Any]:
    (event,) = stack.sim.add_events([{"event_type": "SHIELD_ALERT", "user_id": user_id, "rule_category": category,
                                      "priority": priority, "risk_score": 90, **more}])
    return event


def boxcut(stack: Stack, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def test_an_alert_the_rules_terminate_is_accepted_once_through_repeats_and_a_restart_and_the_user_is_watched(
        redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, extra_env=READING) as stack:
        reading(stack)
        (alert,) = stack.sim.add_events([{"event_type": "SHIELD_ALERT", "user_id": JDOE,
                                          "rule_category": "Ransomware Activity", "priority": "high"}],
                                        duplicate=True)  # Box repeats it
        job = one_shield_job(stack, alert["event_id"])
        assert job.state is JobState.SUCCEEDED and job.requested_by == "box-event-stream"
        assert [(t.input, t.status) for t in job.targets] == [({"type": "user", "id": JDOE}, TargetStatus.ACCEPTED)]
        assert job.watch_until is not None

        # Two minutes after Box accepted, Jane Doe still acts; Richard Roe's event is none of this job's business.
        accepted = time.time()
        stack.sim.add_events([
            {"event_type": "LOGIN", "user_id": JDOE, "created_at": iso(accepted + 120), "session_id": "s-77",
             "ip_address": "203.0.113.50"},
            {"event_type": "DOWNLOAD", "user_id": RROE, "created_at": iso(accepted + 120)},
        ])
        until(lambda: stack.store().load(job.job_id).active_after, "activity after termination in the job")
        record = stack.store().load(job.job_id).to_dict()
        (seen,) = record["targets"][0]["activity_after"]
        assert (seen["event_type"], seen["session_id"], seen["ip_address"]) == ("LOGIN", "s-77", "203.0.113.50")
        assert 100 <= seen["seconds_after"] <= 130 and record["active_after"] is True
        listed = json.loads(boxcut(stack, "jobs", "--state", "active-after", "--json"))
        assert [row["job_id"] for row in listed] == [job.job_id]
        assert "ACTIVE AFTER TERMINATION" in boxcut(stack, "status", job.job_id)

        # The reader's worker restarts; Box repeats the alert once more: the position holds, no second job.
        until(lambda: cursor(stack).status().events_read == 4, "the reader past Richard Roe's event")
        position = cursor(stack).position()
        for worker in stack.workers:
            worker.stop()
        stack.workers.clear()
        stack.start_worker()
        stack.sim.add_events([alert])
        until(lambda: cursor(stack).position() != position and cursor(stack).status().events_read == 5,
              "the reader going on after its restart", timeout=30)
        time.sleep(1.5)  # a few more passes
        assert [j.job_id for j in shield_jobs(stack)] == [job.job_id]
        assert cursor(stack).status().restart_why is not None
        assert "reading begins now" in (cursor(stack).status().restart_why or "")  # never started again
        assert stack.sim.terminated_user_ids() == {JDOE: 1}
        assert len(stack.store().load(job.job_id).activity_after[0]) == 1


def test_an_alert_the_rules_send_for_approval_waits_and_one_received_both_ways_is_one_job(
        redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, extra_env=READING) as stack:
        url = stack.start_intake()
        reading(stack)
        # Relayed by a SIEM first, then read from the stream.
        first = {"type": "event", "event_id": "shield-both-1", "event_type": "SHIELD_ALERT",
                 "created_at": iso(time.time()), "created_by": {"type": "user", "id": "2", "login": ""},
                 "additional_details": {"shield_alert": {
                     "rule_category": "Suspicious Sessions", "priority": "medium", "risk_score": 60,
                     "rule_name": "Suspicious Session", "user": {"id": int(JDOE), "email": "jdoe@example.com"}}}}
        answer = post_signed(f"{url}/v1/alerts/box-shield", SECRET, first)
        assert answer.status_code == 202, answer.text
        stack.sim.add_events([first])
        job = one_shield_job(stack, "shield-both-1")
        assert job.job_id == answer.json()["job_id"] and job.state is JobState.AWAITING_APPROVAL
        assert job.approval is not None and "BOXCUT_SHIELD_RULES rule 3" in job.approval.reasons[0]

        # Read from the stream first, then relayed: the relay gets the stream's job back.
        second = stream_alert(stack, category="Suspicious Sessions", priority="low", user_id=RROE)
        from_stream = one_shield_job(stack, second["event_id"])
        again = post_signed(f"{url}/v1/alerts/box-shield", SECRET, second)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["job_id"] == from_stream.job_id

        # One the table records only: a job that called nothing.
        recorded = one_shield_job(stack, stream_alert(stack, category="Anomalous Download",
                                                      priority="low")["event_id"])
        assert recorded.state is JobState.RECORDED and recorded.calls == []
        assert {t.status for t in recorded.targets} == {TargetStatus.RECORDED}
        time.sleep(1.0)
        assert stack.terminate_requests() == []
        assert len(shield_jobs(stack)) == 3


def test_a_429_on_the_event_stream_pauses_every_worker_like_a_terminate_call(redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, extra_env=READING, worker=False) as stack:
        stack.start_worker(concurrency=1)  # beat and the reader
        stack.start_worker(concurrency=1, beat=False)
        reading(stack)
        stack.sim.add_faults([{"method": "GET", "path": "/2.0/events", "status": 429,
                               "headers": {"retry-after": "3"}}])

        def refused_at() -> float | None:
            hits = [r for r in stack.sim.requests(path="/2.0/events") if r["status"] == 429]
            return hits[0]["time"] if hits else None

        until(lambda: refused_at() is not None, "the reader meeting the 429")
        job_id = stack.submit([{"type": "user", "login": "rroe@example.com"}])
        job = stack.wait(job_id, timeout=60)
        assert job.state is JobState.SUCCEEDED
        sent = stack.terminate_requests()[0]["time"]
        paused_at = refused_at()
        assert paused_at is not None and sent - paused_at >= 2.8, (sent - paused_at)
        reads_during = [r for r in stack.sim.requests(path="/2.0/events")
                        if paused_at < r["time"] < paused_at + 2.8]
        assert reads_during == []  # the reader waited too
