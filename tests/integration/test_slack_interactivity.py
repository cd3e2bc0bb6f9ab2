"""Approval from Slack with a real intake, a real worker and boxsim over HTTP: a job that waits for approval is
notified to a Slack receiver with Approve and Cancel buttons; a click on them, signed as Slack signs it, by a
mapped approver approves (the job ends `succeeded`, `slack:<name>` in its audit) or cancels it, and the reply
replaces the message naming who decided. A stale or badly signed request, or a click by someone who is not an
approver, changes nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from tests.integration.harness import Stack, running_stack, until
from tests.integration.test_notifications import Receiver, receiving, scanning
from worker.intake.slack_routes import PATH, SIGNATURE_HEADER, TIMESTAMP_HEADER, slack_signature
from worker.jobs.model import JobState, TargetStatus
from worker.notify.body import APPROVE_ACTION, CANCEL_ACTION, DECISION_BLOCK_ID

pytestmark = pytest.mark.integration

SIGNING_SECRET = "slack-app-signing-secret"
TEAM = "T0TEAM"
APPROVERS = "U0ALICE:alice,U0BOB:bob"


@pytest.fixture(scope="module")
def slack() -> Iterator[Receiver]:
    """Where the stack posts its Slack notices (the incoming webhook of the Slack app)."""
    with receiving(Receiver(), "/services/T0TEAM/B0/s3cr3t") as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory, slack: Receiver) -> Iterator[Stack]:
    # The workers put buttons on notices (approvers are named); only the intake needs Slack's signing secret.
    env = {"BOXCUT_APPROVAL_THRESHOLD": "0",  # every job waits
           "BOXCUT_NOTIFY_URLS": f"slack:{slack.url}", "BOXCUT_PUBLIC_URL": "https://boxcut.example.com",
           "BOXCUT_SLACK_APPROVERS": APPROVERS, "BOXCUT_INTAKE_TOKENS": "slack-test-intake-token"}
    with running_stack(redis_url, tmp_path_factory.mktemp("slack"), extra_env=env) as running:
        scanning(running)
        yield running


@pytest.fixture(scope="module")
def intake(stack: Stack) -> str:
    return stack.start_intake(extra_env={"BOXCUT_SLACK_SIGNING_SECRET": SIGNING_SECRET})


def waiting_job(stack: Stack, slack: Receiver, login: str) -> tuple[str, list[dict[str, Any]]]:
    """A job that waits for approval, once its notice reached Slack (its audit notes the delivery): its id and
    the notice's blocks."""
    job_id = stack.submit([{"type": "user", "login": login}], reason="phished")
    assert stack.wait(job_id).state is JobState.AWAITING_APPROVAL
    until(lambda: any(job_id in r.body["text"] for r in slack.got), f"the Slack notice of {job_id}")
    until(lambda: any(e["event"] == "notified" for e in audit(stack, job_id)), f"{job_id}'s delivery noted")
    (notice,) = [r.body for r in slack.got if job_id in r.body["text"]]
    return job_id, notice["blocks"]


def audit(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    return stack.store().audit_entries(job_id=job_id)


def button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    assert actions["block_id"] == DECISION_BLOCK_ID
    found: list[dict[str, Any]] = [e for e in actions["elements"] if e["action_id"] == action_id]
    assert len(found) == 1, actions
    return found[0]


def click(blocks: list[dict[str, Any]], action_id: str, *, user: str) -> bytes:
    """The form Slack posts for a click on a notice's button: `payload`, a block_actions document naming the
    button as the notice carries it and the message's blocks as Slack shows them."""
    pressed = button(blocks, action_id)
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": TEAM},
               "team": {"id": TEAM, "domain": "example"}, "api_app_id": "A0APP",
               "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0CHAN"},
               "message": {"type": "message", "ts": "1.2", "blocks": blocks},
               "actions": [{"type": "button", "action_id": pressed["action_id"], "block_id": DECISION_BLOCK_ID,
                            "value": pressed["value"], "text": pressed["text"], "action_ts": "1.3"}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


def post(intake: str, body: bytes, *, age: float = 0.0, secret: str = SIGNING_SECRET) -> requests.Response:
    stamp = str(int(time.time() - age))
    headers = {"Content-Type": "application/x-www-form-urlencoded", TIMESTAMP_HEADER: stamp,
               SIGNATURE_HEADER: slack_signature(secret, stamp, body)}
    return requests.post(intake + PATH, data=body, headers=headers, timeout=10)


def test_an_approvers_approve_runs_the_job_as_them_and_replaces_the_message(
        stack: Stack, slack: Receiver, intake: str) -> None:
    job_id, blocks = waiting_job(stack, slack, "rroe@example.com")
    assert button(blocks, APPROVE_ACTION)["value"] == job_id == button(blocks, CANCEL_ACTION)["value"]
    assert f"<https://boxcut.example.com/console/jobs/{job_id}|{job_id}>" in json.dumps(blocks)

    answer = post(intake, click(blocks, APPROVE_ACTION, user="U0ALICE"))
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["replace_original"] is True and [b for b in reply["blocks"] if b["type"] == "actions"] == []
    assert reply["blocks"][0]["text"]["text"] == "boxcut: a job was approved"
    assert reply["blocks"][-1]["text"]["text"].startswith("*Approved* by `slack:alice` at ")

    job = stack.wait(job_id)
    assert job.state is JobState.SUCCEEDED, job.to_dict()
    assert job.approval is not None and job.approval.approved_by == "slack:alice"
    decided = [e["data"] for e in audit(stack, job_id) if e["event"] == "state" and e["data"]["to"] == "resolving"
               and e["data"]["from"] == "awaiting_approval"]
    assert [(d["actor"], d["note"]) for d in decided] == [("slack:alice", "approved in Slack by Slack user U0ALICE")]

    # Bob clicks the same notice a moment later: told what the job is now, and nothing changes.
    before = [e for e in audit(stack, job_id) if e["event"] == "state"]
    late = post(intake, click(blocks, CANCEL_ACTION, user="U0BOB"))
    assert late.status_code == 200 and late.json()["blocks"][-1]["text"]["text"].startswith(
        f"*Nothing changed*: job `{job_id}` no longer waits for approval; it is `succeeded` now (approved by "
        "`slack:alice`")
    assert stack.store().state(job_id) is JobState.SUCCEEDED
    assert [e for e in audit(stack, job_id) if e["event"] == "state"] == before


def test_an_approvers_cancel_cancels_the_job_as_them(stack: Stack, slack: Receiver, intake: str) -> None:
    job_id, blocks = waiting_job(stack, slack, "jdoe@example.com")
    answer = post(intake, click(blocks, CANCEL_ACTION, user="U0BOB"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["blocks"][-1]["text"]["text"].startswith("*Cancelled* by `slack:bob` at ")
    assert stack.store().state(job_id) is JobState.CANCELLED
    cancelled = [e["data"] for e in audit(stack, job_id) if e["event"] == "state" and e["data"]["to"] == "cancelled"]
    assert [d["actor"] for d in cancelled] == ["slack:bob"]
    time.sleep(1.0)  # a worker's pass or two: nothing of it is sent
    assert [t.status for t in stack.store().load(job_id).targets] == [TargetStatus.PENDING]


def test_stale_badly_signed_and_unmapped_clicks_change_nothing(stack: Stack, slack: Receiver, intake: str) -> None:
    job_id, blocks = waiting_job(stack, slack, "alice@example.com")
    before = audit(stack, job_id)
    approve = click(blocks, APPROVE_ACTION, user="U0ALICE")

    stale = post(intake, approve, age=6 * 60)
    # 360 s old when signed, a second more by the time it is read on a busy machine
    assert stale.status_code == 401 and re.search(r"\b36[01] s old", stale.json()["error"]["message"]), stale.text
    forged = post(intake, approve, secret="not-the-apps-secret")
    assert forged.status_code == 401 and "does not match" in forged.json()["error"]["message"], forged.text
    stranger = post(intake, click(blocks, APPROVE_ACTION, user="U0MALLORY"))
    assert stranger.status_code == 200 and stranger.json() == {
        "response_type": "ephemeral", "replace_original": False,
        "text": "You are not an approver of boxcut jobs: Slack user U0MALLORY is not in BOXCUT_SLACK_APPROVERS. "
                "Nothing was changed."}

    time.sleep(1.0)  # a worker's pass or two: nothing moves the job
    assert stack.store().state(job_id) is JobState.AWAITING_APPROVAL
    assert audit(stack, job_id) == before
    metrics = requests.get(intake + "/metrics", timeout=10).text
    assert 'boxcut_intake_auth_failures_total{endpoint="slack"} 3.0' in metrics
