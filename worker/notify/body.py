"""The bodies of a notification: boxcut's own JSON, and Slack's (`text` and `blocks`) for Slack receivers."""

from __future__ import annotations

from typing import Any

from worker.jobs.model import Job
from worker.notify.notice import AWAITING_APPROVAL, Notice

TYPE_PREFIX = "boxcut.job."
# Slack refuses a header over 150 characters and a text field over 2,000; a reason is cut well before either.
_SLACK_REASON_CHARS = 500


def links(job_id: str, public_url: str | None) -> dict[str, str]:
    """Where the job's record and report are read (the operator API): absolute under BOXCUT_PUBLIC_URL, else
    relative to the intake."""
    base = f"{(public_url or '').rstrip('/')}/v1/jobs/{job_id}"
    return {"job": base, "report": f"{base}/report"}


def generic_body(job: Job, notice: Notice, *, public_url: str | None, sent_at: str) -> dict[str, Any]:
    """boxcut's JSON summary of the job at the notice's event; its `state` is the event's (the job may have moved
    on since), its counts are the targets' statuses now."""
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
    if notice.event == AWAITING_APPROVAL:
        body["approval_reasons"] = list(job.approval.reasons) if job.approval else []
    return body


def slack_body(job: Job, notice: Notice, *, public_url: str | None, sent_at: str) -> dict[str, Any]:
    """The same summary as a Slack incoming webhook takes it: `text` (the notification's one line) and `blocks`."""
    summary = generic_body(job, notice, public_url=public_url, sent_at=sent_at)
    headline = _headline(notice)
    counts = ", ".join(f"{status} {n}" for status, n in sorted(summary["counts"].items())) or "none"
    fields = [("Job", f"`{job.job_id}`"), ("State", notice.state), ("Source", _escape(job.source)),
              ("Targets", counts), ("Reason", _escape(_cut(job.reason or "-")))]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields]},
    ]
    reasons = summary.get("approval_reasons")
    if reasons:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Needs approval:* "
                                                   + _escape(_cut("; ".join(reasons)))}})
    job_link = summary["links"]["job"]
    shown_link = f"<{job_link}|{job.job_id}>" if public_url else f"`{job_link}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{shown_link} · sent {sent_at}"}]})
    return {"text": f"{headline}: {job.job_id} ({notice.state}) from {job.source}", "blocks": blocks}


def _headline(notice: Notice) -> str:
    if notice.event == AWAITING_APPROVAL:
        return "boxcut: a job waits for approval"
    return f"boxcut: a job ended {notice.state}"


def _cut(text: str) -> str:
    return text if len(text) <= _SLACK_REASON_CHARS else text[:_SLACK_REASON_CHARS - 1] + "…"


def _escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally: `&`, `<` and `>` escaped (no link or mention is made of it)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
