"""The two bodies of a notification: boxcut's JSON summary and Slack's text and blocks."""

from __future__ import annotations

import json

import fakeredis

from tests.unit.notify.helpers import new_job
from worker.jobs.model import Approval, Job, JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.notify.body import generic_body, links, slack_body
from worker.notify.notice import Notice

SENT_AT = "2026-12-02T17:00:00.000Z"


def waiting_job() -> Job:
    store = JobStore(fakeredis.FakeRedis(), key_prefix="t:")
    job = store.load(new_job(store, reason="phished <@channel> & more"))
    job.state, job.approval = JobState.AWAITING_APPROVAL, Approval.needed(["40 users exceed the threshold of 25"])
    job.targets[0].status = TargetStatus.PENDING
    return job


def notice(job: Job, event: str = "awaiting_approval", state: str = "awaiting_approval") -> Notice:
    return Notice(job_id=job.job_id, audit_id="1700000000000-0", event=event, state=state, url_index=0)


def test_the_generic_body_summarises_the_job_at_its_event() -> None:
    job = waiting_job()
    body = generic_body(job, notice(job), public_url="https://boxcut.example.com/", sent_at=SENT_AT)
    assert body == {
        "type": "boxcut.job.awaiting_approval", "id": f"{job.job_id}/1700000000000-0", "job_id": job.job_id,
        "state": "awaiting_approval", "source": "splunk", "source_event_id": "evt-1",
        "reason": "phished <@channel> & more", "requested_by": "pytest", "dry_run": False,
        "counts": {"pending": 1}, "approval_reasons": ["40 users exceed the threshold of 25"],
        "links": {"job": f"https://boxcut.example.com/v1/jobs/{job.job_id}",
                  "report": f"https://boxcut.example.com/v1/jobs/{job.job_id}/report",
                  "console": f"https://boxcut.example.com/console/jobs/{job.job_id}"},
        "sent_at": SENT_AT,
    }
    json.dumps(body)


def test_a_finished_body_has_the_events_state_and_no_approval_reasons() -> None:
    job = waiting_job()
    job.state = JobState.SUCCEEDED  # moved on since; the body says the event's state
    body = generic_body(job, notice(job, "finished", "cancelled"), public_url=None, sent_at=SENT_AT)
    assert body["type"] == "boxcut.job.finished" and body["state"] == "cancelled"
    assert "approval_reasons" not in body
    assert body["links"] == links(job.job_id, None) == {"job": f"/v1/jobs/{job.job_id}",
                                                       "report": f"/v1/jobs/{job.job_id}/report"}


def test_the_slack_body_has_text_and_blocks_with_the_senders_text_plain() -> None:
    job = waiting_job()
    body = slack_body(job, notice(job), public_url="https://boxcut.example.com", sent_at=SENT_AT)
    assert set(body) == {"text", "blocks"}
    assert job.job_id in body["text"] and "waits for approval" in body["text"] and "phished" not in body["text"]
    header, own, senders, reasons, console, context = body["blocks"]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    shown = " ".join(f["text"] for f in own["fields"])
    assert job.job_id in shown and "splunk" in shown and "pending 1" in shown and "phished" not in shown
    assert {f["type"] for f in senders["fields"]} == {"plain_text"}  # Slack makes no mention of `<@channel>`
    assert [f["text"] for f in senders["fields"]] == ["Reason\nphished <@channel> & more", "Event\nevt-1",
                                                      "Requested by\npytest"]
    assert reasons["text"]["type"] == "plain_text" and "40 users exceed" in reasons["text"]["text"]
    assert f"<https://boxcut.example.com/console/jobs/{job.job_id}|{job.job_id}>" in console["text"]["text"]
    assert f"<https://boxcut.example.com/v1/jobs/{job.job_id}|{job.job_id}>" in context["elements"][0]["text"]


def test_a_slack_body_without_a_public_url_shows_the_relative_link_as_text() -> None:
    job = waiting_job()
    body = slack_body(job, notice(job, "finished", "succeeded"), public_url=None, sent_at=SENT_AT)
    assert len(body["blocks"]) == 4 and "ended succeeded" in body["blocks"][0]["text"]["text"]
    assert f"`/v1/jobs/{job.job_id}`" in body["blocks"][-1]["elements"][0]["text"]


def test_the_brakes_engagement_says_the_source_count_limit_window_and_jobs_held() -> None:
    job = waiting_job()
    job.brake = {"source": "ssf:https://idp.example.com", "scope": "source", "count": 10, "limit": 10,
                 "window_seconds": 600}
    engaged = notice(job, event="brake_engaged")
    body = generic_body(job, engaged, public_url=None, sent_at="now", jobs_held=7)
    assert body["type"] == "boxcut.job.brake_engaged"
    assert body["brake"] == {**job.brake, "jobs_held": 7}
    slack = json.dumps(slack_body(job, engaged, public_url=None, sent_at="now", jobs_held=7))
    assert "the brake engaged" in slack and "10 users in 10 minutes (limit 10), 7 jobs held" in slack
    # The source comes from boxcut's settings: shown whole, in code, so the command pastes as it is.
    assert "release with `boxcut brake release ssf:https://idp.example.com`" in slack
