"""An evidence report as Markdown, for a person to read; unsigned (the signed form is the JSON one)."""

from __future__ import annotations

import json
import re
from typing import Any


def render_markdown(report: dict[str, Any]) -> str:
    """The report (`report.build_report`) as a Markdown document."""
    job = report["job"]
    lines = [
        f"# Evidence report: job {job['job_id']}",
        "",
        f"> Unsigned: this Markdown form is for reading. The signed form is `boxcut report {job['job_id']}` "
        f"(JSON), checked with `boxcut report --verify FILE`.",
        "",
        f"Format {report['format']}, generated {report['generated_at']}.",
        *_request(report),
        *_policy(report["policy"]),
        *_targets(report["targets"]),
        *_calls(report["calls"]),
        *_watch(report["watch"]),
        *_audit(report["audit"]),
    ]
    return "\n".join(lines) + "\n"


def _request(report: dict[str, Any]) -> list[str]:
    job, request = report["job"], report["request"]
    return ["", "## Request", "",
            *_table(["field", "value"], [
                ["state", job["state"] + (" (dry run)" if job["dry_run"] else "")],
                ["source", job["source"]], ["source event id", job["source_event_id"]],
                ["requested by", job["requested_by"]], ["submitted at", request["submitted_at"]],
                ["reason", job["reason"]], ["severity", job["severity"]], ["link", job["link"]],
                ["created", job["created_at"]], ["updated", job["updated_at"]], ["note", job["note"]],
            ])]


def _policy(policy: dict[str, Any]) -> list[str]:
    approval = policy["approval"] or {}
    lines = ["", "## Policy and approval", "",
             f"- blast radius: {_cell(policy['blast_radius'])}",
             f"- approval required: {_cell(approval.get('required'))}; reasons: "
             f"{_cell('; '.join(approval.get('reasons') or []))}",
             f"- approved by: {_cell(approval.get('approved_by'))} at {_cell(approval.get('approved_at'))}",
             f"- cancelled by: {_cell(policy['cancelled_by'])} at {_cell(policy['cancelled_at'])}",
             f"- protected targets: {_cell(', '.join(str(p['index']) for p in policy['protected']))}",
             "", "### Decisions", ""]
    return lines + _table(["at", "from", "to", "by", "note"],
                          [[d["at"], d["from"], d["to"], d["actor"], d["note"]] for d in policy["decisions"]])


def _targets(targets: list[dict[str, Any]]) -> list[str]:
    rows = [[t["index"], t["type"], t["login"] or t["group_name"] or json.dumps(t["input"]), t["box_id"],
             t["status"], t["resolved_by"], ", ".join(t["call_ids"]), len(t["activity_after"]), t["detail"]]
            for t in targets]
    return ["", "## Targets", "",
            *_table(["#", "type", "name", "Box id", "status", "resolved by", "calls", "events after", "detail"],
                    rows)]


def _calls(calls: list[dict[str, Any]]) -> list[str]:
    rows = [[c["call_id"], c["endpoint"], ", ".join(c["ids"]), c["started_at"], c["finished_at"],
             c["http_status"], c["message"] or c["error_code"], c["request_id"], c["attempts"], c["requests_sent"]]
            for c in calls]
    return ["", "## Box calls", "",
            *_table(["call", "endpoint", "ids", "sent", "answered", "HTTP", "answer", "Box request id",
                     "attempts", "requests sent"], rows)]


def _watch(watch: dict[str, Any]) -> list[str]:
    if watch["watch_until"] is None:
        return ["", "## After termination", "", "No watch ran for this job."]
    said = "ACTIVITY AFTER TERMINATION SEEN" if watch["active_after"] else "no activity after termination seen"
    return ["", "## After termination", "",
            f"Watched until {watch['watch_until']}: {said} ({watch['events_after_termination']} events; each "
            "target's are in the JSON form)."]


def _audit(audit: list[dict[str, Any]]) -> list[str]:
    rows = [[e["at"], e["event"], json.dumps(e["data"], sort_keys=True, separators=(",", ":"))] for e in audit]
    return ["", "## Audit trail", "", *_table(["at", "event", "data"], rows)]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]]


def _cell(value: Any) -> str:
    """A value as text in the document: `-` for none; pipes and newlines escaped so a value cannot break a table,
    and Markdown's and HTML's own characters escaped so a sender's reason renders as the text it is, never as a
    link, an image or markup."""
    if value is None or value == "":
        return "-"
    text = str(value).replace("\r", " ").replace("\n", " ")
    return _MARKUP.sub(lambda found: "\\" + found.group(0), text)


# CommonMark's escapable punctuation that starts markup, `<` and `>` (HTML in Markdown) among it; one pass, so an
# escape added is never escaped again.
_MARKUP = re.compile(r"[\\`*_{}\[\]()<>#+!|~]")
