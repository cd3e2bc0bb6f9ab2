"""Approval from Slack: `POST /v1/slack/interactions`, where Slack posts the clicks on the Approve and Cancel
buttons of a notice about a job that waits (Slack's interactivity: a form whose `payload` field is a
`block_actions` JSON document).

Slack signs each request with the app's signing secret (BOXCUT_SLACK_SIGNING_SECRET): `X-Slack-Signature: v0=<hex
HMAC-SHA256 of "v0:<X-Slack-Request-Timestamp>:<raw body>">`. A request without a matching signature, or whose
timestamp is more than five minutes from this clock (either way), gets 401 before its body is read as anything;
a signed body that is not a payload boxcut can read gets 400 (415 when it is not a form). Nothing changes then.

Who clicked is a Slack user id (and team id), which BOXCUT_SLACK_APPROVERS maps to an approver's name: the audit
records `slack:<name>`, as it records `operator:<name>` for the operator API. Anyone else is told so in Slack (an
ephemeral reply, seen by them only) and nothing changes. An approver's Approve and Cancel do what the operator
API's approve and cancel do (worker/jobs/actions.py), only while the job still waits for approval: a button
clicked after someone decided (here, in the console, with the CLI) says what the job is now and changes nothing.

The reply is the message's update (`replace_original`: who decided, the buttons gone) or the ephemeral refusal.
It is the body of the 200 Slack waits for (3 s at most), and is also POSTed to the payload's `response_url` once
that 200 is sent: Slack applies a reply to a `block_actions` click from there (it may ignore the body). The
`response_url` is used only when it is https on Slack's own hooks host, so no payload can make the intake call
anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from worker.archive.store import ArchiveError
from worker.errors import InvalidTransition, JobNotFound, NotEnqueued
from worker.intake.deps import IntakeDeps
from worker.intake.http import ApiError, read_body
from worker.intake.metrics import IntakeMetrics
from worker.jobs import actions as job_actions
from worker.jobs.model import Job, JobState
from worker.jobs.store import JobStore
from worker.notify.body import APPROVE_ACTION, CANCEL_ACTION, DECISION_BLOCK_ID
from worker.notify.delivery import http_post
from worker.notify.slack_text import cut, escape_mrkdwn, plain_text

log = logging.getLogger(__name__)

PATH = "/v1/slack/interactions"
SOURCE = "slack"  # the route's label in the intake's metrics, and the actor's prefix in the audit
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
SIGNATURE_VERSION = "v0"
# Slack's own advice: a request stamped more than five minutes from now may be a replay.
TOLERANCE_SECONDS = 300
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# Where Slack's response URLs live (its commercial and its GovSlack hosts); any other is never called.
RESPONSE_URL_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
RESPONSE_URL_TIMEOUT = (3.0, 10.0)
USER_AGENT = "boxcut-slack/1"
_SLACK_ID = re.compile(r"[A-Z0-9]{2,32}")
_HEADER_CHARS = 150  # Slack's limit for a header block's text


class SlackRefused(Exception):
    """A request not taken, nothing changed: its HTTP status, the contract's error code, and why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Slack sends for `body` at `timestamp`: `v0=` and the hex HMAC-SHA256 of `v0:<ts>:<body>`."""
    signed = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                     tolerance: float = TOLERANCE_SECONDS) -> None:
    """Raise SlackRefused (401) unless Slack signed `body` with `secret` at a time at most `tolerance` seconds from
    `now`, either way: a stamp from the future is as suspect as an old one (a request captured and replayed later
    is refused once it is old). The signature is compared in constant time, over the raw bytes as received."""
    lowered = {name.lower(): value for name, value in headers.items()}
    stamp = lowered.get(TIMESTAMP_HEADER.lower(), "").strip()
    sent = lowered.get(SIGNATURE_HEADER.lower(), "").strip()
    if not stamp or not sent:
        raise SlackRefused(401, "unauthorized", f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}: Slack signs "
                           "every request it sends")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SlackRefused(401, "unauthorized", f"{TIMESTAMP_HEADER} must be unix seconds (digits)")
    skew = now - int(stamp)
    if abs(skew) > tolerance:
        direction = "old" if skew > 0 else "ahead of this clock"
        raise SlackRefused(401, "unauthorized", f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s {direction}; at most "
                           f"{tolerance:.0f} s is accepted")
    expected = slack_signature(secret, stamp, body)
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise SlackRefused(401, "unauthorized", f"{SIGNATURE_HEADER} does not match the body (is "
                           "BOXCUT_SLACK_SIGNING_SECRET the Slack app's signing secret?)")


@dataclass(frozen=True)
class Click:
    """A click on one of boxcut's buttons: who (Slack user id, and team id when Slack names one), which button
    (APPROVE_ACTION or CANCEL_ACTION), which job, where Slack takes a reply, and the message's blocks as Slack
    shows them (for its update)."""

    user_id: str
    team_id: str | None
    action: str
    job_id: str
    response_url: str | None
    blocks: tuple[dict[str, Any], ...] = ()


def read_click(content_type: str, body: bytes) -> Click | None:
    """The click a signed request carries; None for an interaction that is not a click on boxcut's buttons (Slack
    is answered 200, nothing is done). SlackRefused (400, or 415) for a body that is not Slack's form."""
    if content_type.split(";", 1)[0].strip().lower() != FORM_MEDIA_TYPE:
        raise SlackRefused(415, "unsupported_media_type", f"send Content-Type: {FORM_MEDIA_TYPE}, as Slack does")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict",
                        max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise _malformed("the body is not a form (field=value pairs, UTF-8)") from None
    values = form.get("payload", [])
    if len(values) != 1:
        raise _malformed("the form must hold one `payload` field")
    try:
        payload = json.loads(values[0])
    except (ValueError, RecursionError):
        raise _malformed("the payload field is not JSON") from None
    if not isinstance(payload, dict):
        raise _malformed("the payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise _malformed("a block_actions payload names its action in `actions`")
    action = actions[0]
    if action.get("action_id") not in (APPROVE_ACTION, CANCEL_ACTION):
        return None
    user = payload.get("user")
    user = user if isinstance(user, dict) else {}
    user_id = user.get("id")
    if not isinstance(user_id, str) or not _SLACK_ID.fullmatch(user_id):
        raise _malformed("payload.user.id is not a Slack user id")
    team = payload.get("team")
    team_id = team.get("id") if isinstance(team, dict) else user.get("team_id")
    if team_id is not None and (not isinstance(team_id, str) or not _SLACK_ID.fullmatch(team_id)):
        raise _malformed("payload.team.id is not a Slack team id")
    job_id = action.get("value")
    if not isinstance(job_id, str) or not JobStore.is_job_id(job_id):
        raise _malformed("the button's value is not a job id")
    response_url = payload.get("response_url")
    message = payload.get("message")
    blocks = message.get("blocks") if isinstance(message, dict) else None
    return Click(user_id=user_id, team_id=team_id, action=str(action["action_id"]), job_id=job_id,
                 response_url=response_url if isinstance(response_url, str) else None,
                 blocks=tuple(b for b in blocks if isinstance(b, dict)) if isinstance(blocks, list) else ())


def _malformed(message: str) -> SlackRefused:
    return SlackRefused(400, "malformed_payload", message)


def approver_name(approvers: Mapping[str, str], click: Click) -> str | None:
    """The approver BOXCUT_SLACK_APPROVERS names for the clicking user: by `TEAM/USER` (that workspace's user
    only), else by the user id alone; None for anyone else."""
    if click.team_id is not None and f"{click.team_id}/{click.user_id}" in approvers:
        return approvers[f"{click.team_id}/{click.user_id}"]
    return approvers.get(click.user_id)


def decide(deps: IntakeDeps, click: Click, actor: str) -> tuple[str, dict[str, Any]]:
    """Do what an approver's click asks, as the operator API's approve and cancel do it, while the job waits for
    approval; return the outcome (for the metrics) and Slack's reply."""
    try:
        if click.action == APPROVE_ACTION:
            job = job_actions.approve(store=deps.store, enqueue=deps.intake.enqueue, job_id=click.job_id,
                                      actor=actor, note=f"approved in Slack by Slack user {click.user_id}")
            at = job.approval.approved_at if job.approval and job.approval.approved_at else job.updated_at
            log.info("job %s approved in Slack by %s (Slack user %s)", click.job_id, actor, click.user_id)
            return "approved", replacement(click, "boxcut: a job was approved",
                                           f"*Approved* by {_code(actor)} at {at}: job {_code(click.job_id)} runs now.")
        # Cancel is allowed until a job settles, but this button is about the wait: a job approved since (it runs,
        # by someone's decision) is not cancelled by a click on a notice about its wait. (An approval landing
        # between this check and the cancel is the one race left: the job is then cancelled, as cancel would.)
        if deps.store.state(click.job_id) is not JobState.AWAITING_APPROVAL:
            raise InvalidTransition(f"job {click.job_id} no longer awaits approval")
        job = job_actions.cancel(store=deps.store, job_id=click.job_id, actor=actor)
        log.info("job %s cancelled in Slack by %s (Slack user %s)", click.job_id, actor, click.user_id)
        return "cancelled", replacement(click, "boxcut: a job was cancelled",
                                        f"*Cancelled* by {_code(actor)} at {job.updated_at}: nothing more of job "
                                        f"{_code(click.job_id)} is sent to Box.")
    except JobNotFound:
        return "not_found", replacement(click, "boxcut: no such job",
                                        f"*Nothing changed*: there is no job {_code(click.job_id)} any more.")
    except InvalidTransition:
        return "not_awaiting_approval", replacement(click, "boxcut: the job no longer waits", _as_it_is(deps, click))
    except NotEnqueued as refused:
        # The approval was undone (worker/jobs/submit.py): the job waits as before, and the buttons stay.
        return "unavailable", ephemeral(f"Not approved: job {click.job_id} {refused.why}. It still waits for "
                                        "approval: try again in a moment.")


def _as_it_is(deps: IntakeDeps, click: Click) -> str:
    """What became of a job someone decided on before this click: its state, and who approved it and when."""
    job: Job | None
    try:
        job = deps.jobs.find(click.job_id).job
    except (JobNotFound, ArchiveError):
        job = None
    if job is None:
        return f"*Nothing changed*: job {_code(click.job_id)} no longer waits for approval."
    approval = job.approval
    by = (f" (approved by {_code(approval.approved_by)} at {approval.approved_at})"
          if approval and approval.approved_by else "")
    return (f"*Nothing changed*: job {_code(click.job_id)} no longer waits for approval; it is "
            f"{_code(job.state.value)} now{by}.")


def refusal(click: Click) -> dict[str, Any]:
    """The reply to a click by someone BOXCUT_SLACK_APPROVERS does not name: seen by them only."""
    return ephemeral(f"You are not an approver of boxcut jobs: Slack user {click.user_id} is not in "
                     "BOXCUT_SLACK_APPROVERS. Nothing was changed.")


def ephemeral(text: str) -> dict[str, Any]:
    """A reply only the clicking user sees; the message stays as it is."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def replacement(click: Click, headline: str, line: str) -> dict[str, Any]:
    """The message, updated: a header saying what became of the job, its blocks as Slack showed them without the
    buttons (and without the old header), and `line`, the decision."""
    kept = [block for block in click.blocks
            if block.get("type") not in ("header", "actions") and block.get("block_id") != DECISION_BLOCK_ID]
    blocks = [{"type": "header", "text": plain_text(cut(headline, _HEADER_CHARS))}, *kept,
              {"type": "section", "text": {"type": "mrkdwn", "text": line}}]
    return {"replace_original": True, "text": f"{headline}: {click.job_id}", "blocks": blocks}


def _code(text: str) -> str:
    """`text` as inline code in mrkdwn: shown as it is, never a link or a mention."""
    return "`" + escape_mrkdwn(text.replace("`", "'")) + "`"


def post_to_response_url(url: str, reply: Mapping[str, Any]) -> None:
    """POST the reply where Slack takes it for this click (a failure is logged with the host only: the URL's path
    is the capability to write to the message)."""
    host = urlsplit(url).hostname
    with requests.Session() as session:
        answer = http_post(session, timeout=RESPONSE_URL_TIMEOUT)(
            url, json.dumps(reply).encode(), {"Content-Type": "application/json", "User-Agent": USER_AGENT})
    if answer.status is None or not 200 <= answer.status < 300:
        log.warning("Slack's response_url on %s did not take the reply: %s", host,
                    answer.error or f"HTTP {answer.status}")


def is_slack_response_url(url: str) -> bool:
    """Whether `url` is one of Slack's response URLs (https on its hooks host): the only kind the intake calls."""
    parts = urlsplit(url)
    return parts.scheme == "https" and parts.hostname in RESPONSE_URL_HOSTS and parts.port in (None, 443)


def add_slack_routes(app: FastAPI, deps: IntakeDeps, metrics: IntakeMetrics) -> None:
    """Register `POST /v1/slack/interactions`. It is off (404, saying so) while BOXCUT_SLACK_SIGNING_SECRET is not
    set. Slack's signature is its authentication: no intake or operator token is asked for. It is left out of the
    OpenAPI document: its only client is Slack, whose form it takes."""

    @app.post(PATH, include_in_schema=False)
    async def slack_interaction(request: Request, background: BackgroundTasks) -> Response:
        """A click on a Slack notice's Approve or Cancel button."""
        secret = deps.settings.slack_signing_secret
        if secret is None:
            raise ApiError(404, "not_found", "approval from Slack is off: BOXCUT_SLACK_SIGNING_SECRET is not set")
        body = await read_body(request, deps.settings.intake_max_body_bytes)
        try:
            verify_signature(secret.reveal(), request.headers, body, now=time.time())
            click = read_click(request.headers.get("content-type", ""), body)
        except SlackRefused as refused:
            if refused.status == 401:
                metrics.auth_failures.labels(SOURCE).inc()
            metrics.requests.labels(SOURCE, refused.code).inc()
            log.warning("refused a Slack interaction: %s", refused.message)
            raise ApiError(refused.status, refused.code, refused.message) from None
        if click is None:  # another interaction of the app (a link button, a shortcut): acknowledged, nothing done
            metrics.requests.labels(SOURCE, "ignored").inc()
            return Response(status_code=200)
        name = approver_name(deps.settings.slack_approvers, click)
        if name is None:
            metrics.auth_failures.labels(SOURCE).inc()
            log.warning("refused a click on job %s's %s button: Slack user %s (team %s) is not in "
                        "BOXCUT_SLACK_APPROVERS", click.job_id, click.action, click.user_id, click.team_id)
            outcome, reply = "not_an_approver", refusal(click)
        else:
            outcome, reply = await run_in_threadpool(decide, deps, click, f"{SOURCE}:{name}")
        metrics.requests.labels(SOURCE, outcome).inc()
        if click.response_url is not None and is_slack_response_url(click.response_url):
            background.add_task(post_to_response_url, click.response_url, reply)
        return JSONResponse(reply)
