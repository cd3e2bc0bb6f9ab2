"""What a sender writes reaches the Slack channel where approvals are decided, and must not format, mention or link
there: the alert's reason, event id and the logins that approval reasons quote arrive as `plain_text` (emoji off)
with links defanged, and never in the `text` fallback (mrkdwn, shown in pop-ups and e-mails)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from config.secret import Secret
from tests.unit.intake_fixtures import make_intake
from tests.unit.notify.helpers import SLACK
from worker.jobs.model import Approval, JobState
from worker.notify.delivery import Answer, Notifier
from worker.notify.notice import Notice

PHISHING = ("*URGENT* <!channel> approve now: <https://evil.example/login|Box admin console> or "
            "https://evil.example/sso :white_check_mark: ~ignore~ `code` _really_ &amp;")
# As an approver reads it: as written, but for the links.
PHISHING_SHOWN = ("*URGENT* <!channel> approve now: <hxxps[:]//evil[.]example/login|Box admin console> or "
                  "hxxps[:]//evil[.]example/sso :white_check_mark: ~ignore~ `code` _really_ &amp;")
EVENT_ID = "<https://evil.example|evt-1> *x*"
LOGIN = "it-help@evil.example"


class Receiver:
    """A Slack webhook that keeps what it was sent and says 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, _url: str, body: bytes, _headers: dict[str, str]) -> Answer:
        self.bodies.append(json.loads(body))
        return Answer(200)


def text_objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every Slack text object (`{"type": "plain_text" | "mrkdwn", "text": …}`) in a body."""
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
            yield node
        for value in node.values():
            yield from text_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from text_objects(value)


@pytest.fixture
def slack_body() -> dict[str, Any]:
    """The body a Slack receiver gets for a job a hostile alert made, waiting for approval on a login it named."""
    intake = make_intake()
    alert = {"id": EVENT_ID, "reason": PHISHING, "targets": [{"type": "user", "login": LOGIN}]}
    posted = intake.post("/v1/alerts", alert)
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["job_id"]
    intake.store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.QUEUED],
                            fields=intake.store.approval_fields(Approval.needed([f"{LOGIN} is a Box admin"])))
    receiver = Receiver()
    notifier = Notifier(store=intake.store, urls=(SLACK,), secret=Secret("s"), public_url=None, post=receiver)
    notice = Notice(job_id=job_id, audit_id="1-0", event="awaiting_approval", state="awaiting_approval",
                    url_index=0)
    assert notifier.attempt(notice).status == "delivered"
    (body,) = receiver.bodies
    return body


def test_the_senders_text_is_shown_as_plain_text_with_emoji_off(slack_body: dict[str, Any]) -> None:
    plain = [o["text"] for o in text_objects(slack_body) if o["type"] == "plain_text"]
    assert any(PHISHING_SHOWN in text for text in plain)
    assert any("<hxxps[:]//evil[.]example|evt-1> *x*" in text for text in plain)
    assert any("it-help@evil[.]example is a Box admin" in text for text in plain)
    assert all(o.get("emoji") is False for o in text_objects(slack_body) if o["type"] == "plain_text")


def test_no_mrkdwn_and_no_fallback_carries_the_senders_text(slack_body: dict[str, Any]) -> None:
    mrkdwn = [o["text"] for o in text_objects(slack_body) if o["type"] == "mrkdwn"] + [slack_body["text"]]
    for text in mrkdwn:
        for word in ("evil", "URGENT", "channel", "white_check_mark", "evt-1", "it-help"):
            assert word not in text, (word, text)


def test_no_link_to_the_senders_site_survives_anywhere(slack_body: dict[str, Any]) -> None:
    sent = json.dumps(slack_body)
    assert "evil.example" not in sent and "https://evil" not in sent
    assert "hxxps[:]//evil[.]example/sso" in sent and "it-help@evil[.]example" in sent
