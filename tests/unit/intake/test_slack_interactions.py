"""Approval from Slack, on an intake with fakeredis: Slack's request signature (fresh, stale, from the future,
tampered, missing), and `POST /v1/slack/interactions` deciding, refusing and replying as Slack expects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.unit.intake_fixtures import IntakeUnderTest, make_intake
from worker.intake import slack_routes
from worker.intake.slack_routes import (
    PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SlackRefused,
    is_slack_response_url,
    slack_signature,
    verify_signature,
)
from worker.jobs.model import JobState
from worker.notify.body import APPROVE_ACTION, CANCEL_ACTION, DECISION_BLOCK_ID

SECRET = "slack-signing-secret"
TEAM = "T0TEAM"
APPROVERS = "U0ALICE:alice,T0TEAM/U0BOB:bob"
FORM = "application/x-www-form-urlencoded"
NOW = 1_800_000_000.0

# The message as Slack shows it back in a click's payload (block ids added by Slack).
SHOWN_BLOCKS = [
    {"type": "header", "block_id": "h1", "text": {"type": "plain_text", "text": "boxcut: a job waits for approval"}},
    {"type": "section", "block_id": "s1", "fields": [{"type": "mrkdwn", "text": "*Job*\n`j-0`"}]},
    {"type": "actions", "block_id": DECISION_BLOCK_ID, "elements": []},
    {"type": "context", "block_id": "c1", "elements": [{"type": "mrkdwn", "text": "sent now"}]},
]


# -- the signature ---------------------------------------------------------------------------------------------


def signed_headers(body: bytes, *, stamp: float = NOW, secret: str = SECRET) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(int(stamp)), SIGNATURE_HEADER: slack_signature(secret, str(int(stamp)), body)}


def test_slacks_own_example_signature_is_computed_the_same() -> None:
    # The example of Slack's "Verifying requests from Slack": its secret, timestamp, body and signature.
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
            b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
            b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRs"
            b"kXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == expected
    verify_signature("8f742231b10e8888abcd99yyyzzz85a5",
                     {TIMESTAMP_HEADER: "1531420618", SIGNATURE_HEADER: expected}, body, now=1531420618 + 10)


@pytest.mark.parametrize("age", [0, 1, 299, 300, -300])
def test_a_signature_within_five_minutes_either_way_is_accepted(age: float) -> None:
    body = b"payload=%7B%7D"
    verify_signature(SECRET, signed_headers(body, stamp=NOW - age), body, now=NOW)


def test_header_names_are_matched_whatever_their_case() -> None:
    body = b"payload=%7B%7D"
    lowered = {name.lower(): value for name, value in signed_headers(body).items()}
    verify_signature(SECRET, lowered, body, now=NOW)


@pytest.mark.parametrize(("age", "said"), [(301, "301 s old"), (360, "360 s old"), (-301, "301 s ahead"),
                                           (-3600, "3600 s ahead")])
def test_a_stale_or_future_timestamp_is_refused(age: float, said: str) -> None:
    body = b"payload=%7B%7D"
    with pytest.raises(SlackRefused, match=said) as refused:
        verify_signature(SECRET, signed_headers(body, stamp=NOW - age), body, now=NOW)
    assert refused.value.status == 401


@pytest.mark.parametrize("tampered", [b"payload=%7B%7D ", b"payload=%7B%7E", b"", b"PAYLOAD=%7B%7D"])
def test_a_body_changed_after_signing_is_refused(tampered: bytes) -> None:
    with pytest.raises(SlackRefused, match="does not match the body"):
        verify_signature(SECRET, signed_headers(b"payload=%7B%7D"), tampered, now=NOW)


def test_another_secret_or_another_timestamp_does_not_verify() -> None:
    body = b"payload=%7B%7D"
    with pytest.raises(SlackRefused, match="does not match"):
        verify_signature(SECRET, signed_headers(body, secret="another"), body, now=NOW)
    headers = {**signed_headers(body), TIMESTAMP_HEADER: str(int(NOW) - 1)}  # the signature covers the stamp
    with pytest.raises(SlackRefused, match="does not match"):
        verify_signature(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_a_missing_header_is_refused(missing: str) -> None:
    body = b"payload=%7B%7D"
    headers = {k: v for k, v in signed_headers(body).items() if k != missing}
    with pytest.raises(SlackRefused, match="missing") as refused:
        verify_signature(SECRET, headers, body, now=NOW)
    assert refused.value.status == 401


@pytest.mark.parametrize("stamp", ["abc", "-5", "1e9", "\uff11\uff18\uff10\uff10", "9" * 13, "18000000.5"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(stamp: str) -> None:
    body = b"payload=%7B%7D"
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: slack_signature(SECRET, stamp, body)}
    with pytest.raises(SlackRefused, match="unix seconds"):
        verify_signature(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize(("url", "slack"), [
    ("https://hooks.slack.com/actions/T0/123/abc", True), ("https://hooks.slack-gov.com/actions/T0/1/x", True),
    ("http://hooks.slack.com/actions/T0/123/abc", False), ("https://hooks.slack.com:8443/actions/x", False),
    ("https://hooks.slack.com.evil.example/actions", False), ("https://evil.example/hooks.slack.com", False),
    ("https://user@127.0.0.1/actions", False), ("file:///etc/passwd", False)])
def test_only_slacks_own_response_urls_are_called(url: str, slack: bool) -> None:
    assert is_slack_response_url(url) is slack


# -- the route ---------------------------------------------------------------------------------------------------


@pytest.fixture
def intake() -> IntakeUnderTest:
    return make_intake({"BOXCUT_SLACK_SIGNING_SECRET": SECRET, "BOXCUT_SLACK_APPROVERS": APPROVERS})


@pytest.fixture
def replies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What the route POSTs to response URLs (recorded here, never sent)."""
    posted: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(slack_routes, "post_to_response_url", lambda url, reply: posted.append((url, dict(reply))))
    return posted


def waiting_job(intake: IntakeUnderTest) -> str:
    answer = intake.post("/v1/alerts", {"targets": [{"type": "user", "login": "jdoe@example.com"}]})
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    intake.store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.QUEUED])
    return job_id


def click_payload(job_id: str, *, action: str = APPROVE_ACTION, user: str = "U0ALICE", team: str | None = TEAM,
                  response_url: str | None = None) -> dict[str, Any]:
    """A `block_actions` payload as Slack sends it for a click on one of boxcut's buttons."""
    return {"type": "block_actions", "api_app_id": "A0APP", "trigger_id": "1.2.3",
            "user": {"id": user, "username": "someone", "team_id": team},
            **({"team": {"id": team, "domain": "example"}} if team else {}),
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0CHAN"},
            "message": {"type": "message", "ts": "1.2", "text": "boxcut: a job waits", "blocks": SHOWN_BLOCKS},
            "actions": [{"type": "button", "action_id": action, "block_id": DECISION_BLOCK_ID, "value": job_id,
                         "action_ts": "1.3", "text": {"type": "plain_text", "text": "Approve"}}],
            **({"response_url": response_url} if response_url else {})}


def form(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def post_click(intake: IntakeUnderTest, body: bytes, *, stamp: float | None = None, secret: str = SECRET,
               content_type: str = FORM, signature: str | None = None) -> Any:
    stamp_text = str(int(stamp if stamp is not None else time.time()))
    headers = {"Content-Type": content_type, TIMESTAMP_HEADER: stamp_text,
               SIGNATURE_HEADER: signature or slack_signature(secret, stamp_text, body)}
    return intake.client.post(PATH, content=body, headers=headers)


def audit_of(intake: IntakeUnderTest, job_id: str) -> list[dict[str, Any]]:
    return intake.store.audit_entries(job_id=job_id)


def metric(intake: IntakeUnderTest, line_start: str) -> float:
    for line in intake.client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_route_is_off_without_a_signing_secret() -> None:
    intake = make_intake()
    answer = post_click(intake, form(click_payload("j-0123456789abcdef")))
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == ("approval from Slack is off: BOXCUT_SLACK_SIGNING_SECRET is not "
                                                 "set")


def test_an_approvers_approve_approves_as_them_and_replaces_the_message(
        intake: IntakeUnderTest, replies: list[tuple[str, dict[str, Any]]]) -> None:
    job_id = waiting_job(intake)
    url = "https://hooks.slack.com/actions/T0TEAM/1/abc"
    answer = post_click(intake, form(click_payload(job_id, response_url=url)))
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["replace_original"] is True and job_id in reply["text"] and "approved" in reply["text"]
    header, *kept, decision = reply["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "boxcut: a job was approved",
                                                 "emoji": False}}
    assert kept == [SHOWN_BLOCKS[1], SHOWN_BLOCKS[3]]  # the buttons are gone, the rest as Slack showed it
    assert decision["text"]["text"].startswith("*Approved* by `slack:alice` at ")
    assert replies == [(url, reply)]  # and the same, where Slack takes a reply to a click

    job = intake.store.load(job_id)
    assert job.state is JobState.RESOLVING and intake.enqueued == [job_id, job_id]
    assert job.approval is not None and job.approval.approved_by == "slack:alice"
    approval = audit_of(intake, job_id)[-1]["data"]
    assert approval["actor"] == "slack:alice" and approval["to"] == "resolving"
    assert approval["note"] == "approved in Slack by Slack user U0ALICE"
    assert metric(intake, 'boxcut_intake_requests_total{outcome="approved",source="slack"}') == 1


def test_an_approvers_cancel_cancels_as_them(intake: IntakeUnderTest) -> None:
    job_id = waiting_job(intake)
    answer = post_click(intake, form(click_payload(job_id, action=CANCEL_ACTION, user="U0BOB")))
    assert answer.status_code == 200, answer.text
    assert answer.json()["blocks"][-1]["text"]["text"].startswith("*Cancelled* by `slack:bob` at ")
    assert intake.store.state(job_id) is JobState.CANCELLED
    assert audit_of(intake, job_id)[-1]["data"]["actor"] == "slack:bob"


@pytest.mark.parametrize(("user", "team"), [("U0MALLORY", TEAM), ("U0BOB", "T0OTHER"), ("U0BOB", None)])
def test_anyone_else_is_told_in_slack_only_and_nothing_changes(
        intake: IntakeUnderTest, replies: list[tuple[str, dict[str, Any]]], user: str, team: str | None) -> None:
    job_id = waiting_job(intake)
    before = audit_of(intake, job_id)
    url = "https://hooks.slack.com/actions/T0TEAM/1/abc"
    for action in (APPROVE_ACTION, CANCEL_ACTION):
        answer = post_click(intake, form(click_payload(job_id, action=action, user=user, team=team,
                                                       response_url=url)))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"response_type": "ephemeral", "replace_original": False,
                                 "text": f"You are not an approver of boxcut jobs: Slack user {user} is not in "
                                         "BOXCUT_SLACK_APPROVERS. Nothing was changed."}
    assert intake.store.state(job_id) is JobState.AWAITING_APPROVAL and audit_of(intake, job_id) == before
    assert [r for _, r in replies] == [answer.json()] * 2
    assert metric(intake, 'boxcut_intake_auth_failures_total{endpoint="slack"}') == 2


def test_a_click_after_someone_decided_says_what_the_job_is_now_and_changes_nothing(intake: IntakeUnderTest) -> None:
    job_id = waiting_job(intake)
    assert post_click(intake, form(click_payload(job_id))).status_code == 200
    before = audit_of(intake, job_id)
    for action in (APPROVE_ACTION, CANCEL_ACTION):  # a second approver, a moment late; or a cancel after it
        answer = post_click(intake, form(click_payload(job_id, action=action, user="U0BOB")))
        assert answer.status_code == 200
        reply = answer.json()
        assert reply["replace_original"] is True and reply["blocks"][0]["text"]["text"] == (
            "boxcut: the job no longer waits")
        assert reply["blocks"][-1]["text"]["text"] == (
            f"*Nothing changed*: job `{job_id}` no longer waits for approval; it is `resolving` now (approved by "
            f"`slack:alice` at {intake.store.load(job_id).approval.approved_at}).")  # type: ignore[union-attr]
    assert intake.store.state(job_id) is JobState.RESOLVING and audit_of(intake, job_id) == before


def test_a_click_on_a_job_that_is_gone_changes_nothing(intake: IntakeUnderTest) -> None:
    answer = post_click(intake, form(click_payload("j-0123456789abcdef")))
    assert answer.status_code == 200
    assert answer.json()["blocks"][-1]["text"]["text"] == (
        "*Nothing changed*: there is no job `j-0123456789abcdef` any more.")


def test_an_approval_the_broker_refuses_is_undone_and_said_in_slack_only() -> None:
    intake = make_intake({"BOXCUT_SLACK_SIGNING_SECRET": SECRET, "BOXCUT_SLACK_APPROVERS": APPROVERS},
                         refused_enqueues={1})  # the alert's job is enqueued; its approval is not
    job_id = waiting_job(intake)
    answer = post_click(intake, form(click_payload(job_id)))
    assert answer.status_code == 200
    reply = answer.json()
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
    assert reply["text"].startswith(f"Not approved: job {job_id} could not be enqueued")
    assert intake.store.state(job_id) is JobState.AWAITING_APPROVAL


def test_a_stale_request_is_refused_and_counted_and_changes_nothing(intake: IntakeUnderTest) -> None:
    job_id = waiting_job(intake)
    before = audit_of(intake, job_id)
    answer = post_click(intake, form(click_payload(job_id)), stamp=time.time() - 360)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    assert "s old" in answer.json()["error"]["message"]
    assert intake.store.state(job_id) is JobState.AWAITING_APPROVAL and audit_of(intake, job_id) == before
    assert metric(intake, 'boxcut_intake_auth_failures_total{endpoint="slack"}') == 1


@pytest.mark.parametrize("how", ["another secret", "a signature of another body", "no signature"])
def test_a_request_not_signed_by_slack_is_refused_and_changes_nothing(intake: IntakeUnderTest, how: str) -> None:
    job_id = waiting_job(intake)
    body = form(click_payload(job_id))
    stamp = str(int(time.time()))
    if how == "no signature":
        answer = intake.client.post(PATH, content=body, headers={"Content-Type": FORM})
    else:
        signature = slack_signature("another" if how == "another secret" else SECRET, stamp,
                                    body if how == "another secret" else form(click_payload(job_id, user="U0BOB")))
        answer = post_click(intake, body, signature=signature)
    assert answer.status_code == 401, answer.text
    assert intake.store.state(job_id) is JobState.AWAITING_APPROVAL


@pytest.mark.parametrize(("body", "status", "said"), [
    (b"not a form", 400, "not a form"),
    (b"payload=%FF%FE", 400, "not a form"),
    (b"other=1", 400, "one `payload` field"),
    (b"payload=1&payload=2", 400, "one `payload` field"),
    (b"payload=%7Bnot+json", 400, "not JSON"),
    (form([1, 2]), 400, "not a JSON object"),
    (form({"type": "block_actions", "actions": []}), 400, "`actions`"),
    (form({**click_payload("j-0123456789abcdef"), "user": {"id": "<!channel>"}}), 400, "user id"),
    (form({**click_payload("j-0123456789abcdef"), "user": "U0ALICE"}), 400, "user id"),
    (form({**click_payload("j-0123456789abcdef"), "team": {"id": 7}}), 400, "team id"),
    (form(click_payload("../v1/jobs")), 400, "not a job id"),
    (form(click_payload("j-0123456789abcdef") | {"actions": [{"action_id": APPROVE_ACTION, "value": 5}]}), 400,
     "not a job id"),
])
def test_a_signed_body_that_is_not_a_click_boxcut_can_read_is_refused(
        intake: IntakeUnderTest, body: bytes, status: int, said: str) -> None:
    answer = post_click(intake, body)
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]["message"]
    assert intake.enqueued == []


def test_a_signed_body_that_is_not_a_form_gets_415(intake: IntakeUnderTest) -> None:
    answer = post_click(intake, b'{"payload": {}}', content_type="application/json")
    assert answer.status_code == 415 and answer.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("payload", [
    {"type": "view_submission", "user": {"id": "U0ALICE"}},
    {"type": "block_actions", "user": {"id": "U0ALICE"},
     "actions": [{"action_id": "open_console", "value": "j-0123456789abcdef"}]},
])
def test_another_interaction_is_acknowledged_and_nothing_is_done(intake: IntakeUnderTest,
                                                                 payload: dict[str, Any]) -> None:
    answer = post_click(intake, form(payload))
    assert answer.status_code == 200 and answer.content == b""


def test_a_response_url_that_is_not_slacks_is_never_called(
        intake: IntakeUnderTest, replies: list[tuple[str, dict[str, Any]]]) -> None:
    job_id = waiting_job(intake)
    answer = post_click(intake, form(click_payload(job_id, response_url="http://127.0.0.1:6379/")))
    assert answer.status_code == 200 and intake.store.state(job_id) is JobState.RESOLVING
    assert replies == []


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], Any]]]]:
    got: list[tuple[dict[str, str], Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((dict(self.headers), json.loads(raw)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/actions/T0/1/abc", got
    finally:
        server.shutdown()
        server.server_close()


def test_the_reply_is_posted_to_the_response_url_as_json(
        receiver: tuple[str, list[tuple[dict[str, str], Any]]]) -> None:
    url, got = receiver
    slack_routes.post_to_response_url(url, {"replace_original": True, "text": "done"})
    ((headers, body),) = got
    assert body == {"replace_original": True, "text": "done"} and headers["Content-Type"] == "application/json"
