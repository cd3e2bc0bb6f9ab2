"""Slack notices about a job that waits: the console link, and (where approvers are named) the Approve and Cancel
buttons whose clicks the intake takes (worker/intake/slack_routes.py)."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from config.secret import Secret
from tests.unit.notify.helpers import SLACK, new_job
from worker.jobs.model import Approval, Job, JobState, TargetStatus
from worker.jobs.store import JobStore
from worker.notify.body import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    DECISION_BLOCK_ID,
    console_link,
    generic_body,
    slack_body,
)
from worker.notify.delivery import Answer, Notifier
from worker.notify.notice import AWAITING_APPROVAL, BRAKE_ENGAGED, FINISHED, Notice

PUBLIC = "https://boxcut.example.com"


def waiting_job() -> Job:
    store = JobStore(fakeredis.FakeRedis(), key_prefix="t:")
    job = store.load(new_job(store))
    job.state, job.approval = JobState.AWAITING_APPROVAL, Approval.needed(["1 users exceed the threshold of 0"])
    job.targets[0].status = TargetStatus.PENDING
    return job


def notice(job: Job, event: str = AWAITING_APPROVAL, state: str = "awaiting_approval") -> Notice:
    return Notice(job_id=job.job_id, audit_id="1700000000000-0", event=event, state=state, url_index=0)


def actions_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in body["blocks"] if b["type"] == "actions"]


def test_a_waiting_notice_carries_approve_and_cancel_buttons_whose_value_is_the_job() -> None:
    job = waiting_job()
    body = slack_body(job, notice(job), public_url=PUBLIC, sent_at="now", buttons=True)
    (actions,) = actions_blocks(body)
    assert actions["block_id"] == DECISION_BLOCK_ID
    approve, cancel = actions["elements"]
    assert (approve["action_id"], approve["value"], approve["style"]) == (APPROVE_ACTION, job.job_id, "primary")
    assert (cancel["action_id"], cancel["value"], cancel["style"]) == (CANCEL_ACTION, job.job_id, "danger")
    assert approve["text"] == {"type": "plain_text", "text": "Approve", "emoji": False}
    assert cancel["text"]["text"] == "Cancel"
    # A click ends people's sessions: Slack asks to confirm first, within its limits for a dialog's texts.
    for button in (approve, cancel):
        dialog = button["confirm"]
        assert job.job_id in dialog["text"]["text"] and len(dialog["title"]["text"]) <= 100
        assert len(dialog["text"]["text"]) <= 300 and len(dialog["confirm"]["text"]) <= 30
    assert body["blocks"][-1]["type"] == "context"  # the buttons come before the context line, after the reasons


@pytest.mark.parametrize(("event", "state"), [(FINISHED, "succeeded"), (FINISHED, "cancelled")])
def test_buttons_are_only_on_notices_about_a_job_that_waits(event: str, state: str) -> None:
    job = waiting_job()
    body = slack_body(job, notice(job, event, state), public_url=PUBLIC, sent_at="now", buttons=True)
    assert actions_blocks(body) == [] and "/console/jobs/" not in json.dumps(body)


def test_no_buttons_unless_approvers_are_named_but_the_console_link_always() -> None:
    job = waiting_job()
    body = slack_body(job, notice(job), public_url=PUBLIC, sent_at="now")
    assert actions_blocks(body) == []
    assert f"<{PUBLIC}/console/jobs/{job.job_id}|{job.job_id}>" in json.dumps(body)


def test_the_console_link_is_absolute_under_the_public_url_else_relative_as_code() -> None:
    job = waiting_job()
    assert console_link(job.job_id, PUBLIC + "/") == f"{PUBLIC}/console/jobs/{job.job_id}"
    assert console_link(job.job_id, None) == f"/console/jobs/{job.job_id}"
    body = slack_body(job, notice(job), public_url=None, sent_at="now", buttons=True)
    assert {"type": "mrkdwn", "text": f"*Console*: `/console/jobs/{job.job_id}`"} in [
        b.get("text") for b in body["blocks"]]


def test_the_brakes_notice_has_buttons_that_say_they_decide_this_job_only() -> None:
    job = waiting_job()
    job.brake = {"source": "okta:soc", "scope": "source", "count": 25, "limit": 25, "window_seconds": 600}
    body = slack_body(job, notice(job, BRAKE_ENGAGED), public_url=PUBLIC, sent_at="now", jobs_held=3, buttons=True)
    (actions,) = actions_blocks(body)
    assert "This job only" in actions["elements"][0]["confirm"]["text"]["text"]


def test_the_generic_body_links_the_console_only_while_the_job_waits() -> None:
    job = waiting_job()
    waiting = generic_body(job, notice(job), public_url=PUBLIC, sent_at="now")
    assert waiting["links"]["console"] == f"{PUBLIC}/console/jobs/{job.job_id}"
    ended = generic_body(job, notice(job, FINISHED, "succeeded"), public_url=PUBLIC, sent_at="now")
    assert "console" not in ended["links"]


@pytest.mark.parametrize("buttons", [True, False])
def test_the_notifier_sends_buttons_to_slack_receivers_where_told(buttons: bool) -> None:
    store = JobStore(fakeredis.FakeRedis(), key_prefix="t:")
    job_id = new_job(store)
    store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=list(JobState))
    sent: list[dict[str, Any]] = []

    def receiver(_url: str, body: bytes, _headers: dict[str, str]) -> Answer:
        sent.append(json.loads(body))
        return Answer(200)

    notifier = Notifier(store=store, urls=(SLACK,), secret=Secret("s"), public_url=PUBLIC, post=receiver,
                        slack_buttons=buttons)
    notifier.attempt(Notice(job_id=job_id, audit_id="1-0", event=AWAITING_APPROVAL, state="awaiting_approval",
                            url_index=0))
    (body,) = sent
    assert len(actions_blocks(body)) == (1 if buttons else 0)
