"""The bodies of a notification: boxcut's own JSON, and Slack's (`text` and `blocks`) for Slack receivers."""

from __future__ import annotations

from typing import Any

from worker.jobs.model import Job
from worker.notify.notice import AWAITING_APPROVAL, BRAKE_ENGAGED, Notice
from worker.notify.slack_text import escape_mrkdwn, labelled, plain_text, shown

TYPE_PREFIX = "boxcut.job."

# Approval from Slack (worker/intake/slack_routes.py): a Slack notice about a job that waits carries an actions block
# of this id, its buttons these action ids, each button's value the job's id. Slack posts a click on one to the
# intake, which decides and replaces the message without that block.
DECISION_BLOCK_ID = "boxcut_decision"
APPROVE_ACTION = "boxcut_approve"
CANCEL_ACTION = "boxcut_cancel"


def links(job_id: str, public_url: str | None) -> dict[str, str]:
    """Where the job's record and report are read (the operator API): absolute under BOXCUT_PUBLIC_URL, else
    relative to the intake."""
    base = f"{(public_url or '').rstrip('/')}/v1/jobs/{job_id}"
    return {"job": base, "report": f"{base}/report"}


def console_link(job_id: str, public_url: str | None) -> str:
    """The job's page in the operator console, where a person decides: absolute under BOXCUT_PUBLIC_URL, else
    relative to the intake."""
    return f"{(public_url or '').rstrip('/')}/console/jobs/{job_id}"


def waits(notice: Notice) -> bool:
    """Whether the notice is about a job that waits for a person: for approval, or held by the brake."""
    return notice.event in (AWAITING_APPROVAL, BRAKE_ENGAGED)


def generic_body(job: Job, notice: Notice, *, public_url: str | None, sent_at: str,
                 jobs_held: int | None = None) -> dict[str, Any]:
    """boxcut's JSON summary of the job at the notice's event; its `state` is the event's (the job may have moved
    on since), its counts are the targets' statuses now. The brake's engagement adds `brake`: the source, its
    count, limit and window, and `jobs_held`, the jobs it holds for that source as the notice is sent."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + notice.event,
        "id": notice.notification_id,
        "job_id": job.job_id,
        "state": notice.state,
        "source": job.source,
        "source_event_id": job.source_event_id,
        "reason": job.reason,
        "requested_by": job.requested_by,
        "dry_run": job.dry_run,
        "counts": job.summary(),
        "links": links(job.job_id, public_url),
        "sent_at": sent_at,
    }
    if waits(notice):
        body["approval_reasons"] = list(job.approval.reasons) if job.approval else []
        body["links"]["console"] = console_link(job.job_id, public_url)
    if notice.event == BRAKE_ENGAGED:
        body["brake"] = {**(job.brake or {}), "jobs_held": jobs_held}
    return body


def slack_body(job: Job, notice: Notice, *, public_url: str | None, sent_at: str,
               jobs_held: int | None = None, buttons: bool = False) -> dict[str, Any]:
    """The same summary as a Slack incoming webhook takes it: `text` (the notification's one line) and `blocks`.
    A notice about a job that waits links its console page and, with `buttons` (approvers are named in
    BOXCUT_SLACK_APPROVERS, so the intake takes the clicks), carries Approve and Cancel buttons.

    Only boxcut's own words are mrkdwn. A sender's (reason, event id, who asked, approval reasons that quote
    logins) are plain_text and defanged (worker/notify/slack_text.py), and never in `text`, which Slack reads
    as mrkdwn and shows in pop-ups and e-mails."""
    summary = generic_body(job, notice, public_url=public_url, sent_at=sent_at, jobs_held=jobs_held)
    headline = _headline(notice)
    counts = ", ".join(f"{status} {n}" for status, n in sorted(summary["counts"].items())) or "none"
    own = [("Job", f"`{job.job_id}`"), ("State", notice.state), ("Source", escape_mrkdwn(job.source)),
           ("Targets", counts)]
    senders = [("Reason", job.reason), ("Event", job.source_event_id), ("Requested by", job.requested_by)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain_text(headline)},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in own]},
        {"type": "section", "fields": [labelled(name, value) for name, value in senders]},
    ]
    if "brake" in summary:  # its source comes from boxcut's settings, never a sender: shown whole, as code
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _brake_line(summary["brake"])}})
    reasons = summary.get("approval_reasons")
    if reasons:
        blocks.append({"type": "section", "text": plain_text("Needs approval: " + shown("; ".join(reasons)))})
    if waits(notice):
        console = console_link(job.job_id, public_url)
        shown_console = f"<{console}|{job.job_id}>" if public_url else f"`{console}`"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Console*: {shown_console}"}})
        if buttons:
            blocks.append(decision_buttons(job.job_id, brake=notice.event == BRAKE_ENGAGED))
    job_link = summary["links"]["job"]
    shown_link = f"<{job_link}|{job.job_id}>" if public_url else f"`{job_link}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{shown_link} · sent {sent_at}"}]})
    return {"text": f"{headline}: {job.job_id} ({notice.state}) from {escape_mrkdwn(job.source)}",
            "blocks": blocks}


def decision_buttons(job_id: str, *, brake: bool = False) -> dict[str, Any]:
    """The actions block of a notice about a job that waits: Approve and Cancel, each asking to confirm first (a
    click ends people's sessions, or drops the job). Their value is the job id; the intake checks who clicked."""
    scope = " This job only: the brake still holds its source's other jobs." if brake else ""
    approve = _confirm("Approve this job?", f"boxcut then ends the Box sessions of job {job_id}'s targets.{scope}",
                       "Approve")
    cancel = _confirm("Cancel this job?", f"Nothing more of job {job_id} is sent to Box.", "Cancel the job")
    return {"type": "actions", "block_id": DECISION_BLOCK_ID, "elements": [
        {"type": "button", "action_id": APPROVE_ACTION, "value": job_id, "style": "primary",
         "text": plain_text("Approve"), "confirm": approve},
        {"type": "button", "action_id": CANCEL_ACTION, "value": job_id, "style": "danger",
         "text": plain_text("Cancel"), "confirm": {**cancel, "style": "danger"}},
    ]}


def _confirm(title: str, text: str, confirm: str) -> dict[str, Any]:
    """Slack's confirmation dialog before a button's click is sent."""
    return {"title": plain_text(title), "text": plain_text(text), "confirm": plain_text(confirm),
            "deny": plain_text("Not now")}


def _brake_line(brake: dict[str, Any]) -> str:
    """The engagement in Slack's words: "brake engaged: source `S`, N users in M minutes (limit L), K jobs held",
    and the release command to paste (the source escaped, in code, so it pastes as it is)."""
    source = f"`{escape_mrkdwn(str(brake.get('source')).replace('`', ''))}`"
    scope = "all sources" if brake.get("scope") == "total" else f"source {source}"
    minutes = f"{(brake.get('window_seconds') or 0) / 60:g}"
    return (f"*brake engaged*: {scope}, {brake.get('count')} users in {minutes} minutes (limit {brake.get('limit')}),"
            f" {brake.get('jobs_held')} jobs held; release with `boxcut brake release "
            f"{escape_mrkdwn(str(brake.get('source')).replace('`', ''))}`")


def _headline(notice: Notice) -> str:
    if notice.event == BRAKE_ENGAGED:
        return "boxcut: the brake engaged; jobs wait for a person"
    if notice.event == AWAITING_APPROVAL:
        return "boxcut: a job waits for approval"
    return f"boxcut: a job ended {notice.state}"
