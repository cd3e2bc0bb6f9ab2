"""The evidence report of one job: what an auditor keeps, built from what the job store or the archive holds and
nothing else.

Who or what asked (source, event id, sender), the policy's decisions and the approval (who, when), every target
and what became of it, every Box terminate call the job's targets went in (ids sent, times, Box's answer and
request id, requests sent), the job's whole audit trail, and the watch after termination. Signing and the file
form are `evidence_signing`'s; the Markdown form is `report_markdown`'s.

Lookups (the GETs that resolve a login or a group name) are not recorded by the store, so a report lists the
terminate calls only; each target says how it was resolved (`resolved_by`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from worker.jobs.history import JobHistory
from worker.jobs.model import Call, Job, utc_now

FORMAT = "boxcut-evidence-report/1"


def build_report(history: JobHistory, job_id: str, *, now: Callable[[], str] = utc_now) -> dict[str, Any]:
    """The report of the job (JobNotFound when there is none), wherever its record is: the same report from
    Redis, its packed copy or the archive."""
    evidence = history.evidence(job_id)
    job, audit = evidence.job, evidence.audit
    report: dict[str, Any] = _writable({
        "format": FORMAT,
        "generated_at": now(),
        "job": _job(job),
        "request": _request(job, audit),
        "policy": _policy(job, audit),
        "targets": [_target(job, i) for i in range(len(job.targets))],
        "calls": [_call(job.job_id, c, evidence.requests_sent.get(c.call_id, 0)) for c in job.calls],
        "audit": audit,
        "watch": {"watch_until": job.watch_until, "active_after": job.active_after,
                  "events_after_termination": sum(len(e) for e in job.activity_after.values())},
    })
    return report


def _writable(value: Any) -> Any:
    """`value` with every lone surrogate (text Box or a sender escaped as `\\ud800`: no character) made U+FFFD,
    so the report can be written as UTF-8 and signed; everything else as it is."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_writable(k): _writable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(v) for v in value]
    return value


# A str holds a surrogate code point only unpaired (a pair decodes to the character it encodes).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _job(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id, "state": job.state.value, "created_at": job.created_at, "updated_at": job.updated_at,
        "source": job.source, "source_event_id": job.source_event_id, "requested_by": job.requested_by,
        "reason": job.reason, "link": job.link, "severity": job.severity, "dry_run": job.dry_run,
        "expand_groups": job.expand_groups, "note": job.note, "summary": job.summary(),
    }


def _request(job: Job, audit: list[dict[str, Any]]) -> dict[str, Any]:
    """Who or what asked: the sender (an intake token's label, an operator, the CLI's user), from where, when."""
    created = next((e for e in audit if e["event"] == "created"), None)
    return {"source": job.source, "source_event_id": job.source_event_id, "requested_by": job.requested_by,
            "submitted_at": created["at"] if created else job.created_at,
            "targets_named": [t.input for t in job.targets]}


def _policy(job: Job, audit: list[dict[str, Any]]) -> dict[str, Any]:
    """The decisions: every state change with who made it and why, the approval, and the targets policy held
    back (protected)."""
    decisions = [{"at": e["at"], "from": e["data"].get("from"), "to": e["data"].get("to"),
                  "actor": e["data"].get("actor"), "note": e["data"].get("note") or None}
                 for e in audit if e["event"] == "state"]
    cancelled = next((d for d in decisions if d["to"] == "cancelled"), None)
    return {
        "blast_radius": job.blast_radius,
        "approval": job.approval.to_dict() if job.approval else None,
        "decisions": decisions,
        "cancelled_by": cancelled["actor"] if cancelled else None,
        "cancelled_at": cancelled["at"] if cancelled else None,
        "protected": [{"index": i, "detail": t.detail} for i, t in enumerate(job.targets)
                      if t.status.value == "protected"],
    }


def _target(job: Job, index: int) -> dict[str, Any]:
    target = job.targets[index]
    return {"index": index, **target.to_dict(), "box_id": target.box_id,
            "activity_after": job.activity_after.get(index, [])}


def _call(job_id: str, call: Call, sent: int) -> dict[str, Any]:
    """A Box call as this job's report shows it: a call shared with other jobs names only this job's targets (and
    how many other jobs it carried), though `ids` are every id Box was sent in it."""
    carried = call.carried()
    return {
        "call_id": call.call_id, "endpoint": call.endpoint, "ids": list(call.ids), "state": call.state.value,
        "started_at": call.started_at, "finished_at": call.finished_at, "http_status": call.http_status,
        "message": call.message, "error_code": call.error_code, "request_id": call.request_id,
        "attempts": call.attempts, "requests_sent": sent, "exhausted": call.exhausted,
        "targets": sorted(carried.get(job_id, [])), "other_jobs": len([j for j in carried if j != job_id]),
    }
