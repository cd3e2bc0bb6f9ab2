"""How the CLI shows jobs to a person: a job's record as text, a listing, and progress while waiting."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from worker.jobs.history import Listed
from worker.jobs.model import FAULT_EVENT, Job, JobState, TargetStatus
from worker.jobs.store import JobStore

# Target statuses that are final: a target in one of these is done.
_DONE = frozenset(TargetStatus) - {TargetStatus.PENDING}


def describe_job(job: Job) -> str:
    """A job record as a person reads it: header, targets, calls."""
    lines = [
        f"job {job.job_id}: {job.state.value}" + (" (dry run)" if job.dry_run else "")
        + ("   ACTIVE AFTER TERMINATION" if job.active_after else ""),
        f"  source: {job.source}   requested by: {job.requested_by}   reason: {job.reason or '-'}",
        f"  created: {job.created_at}   updated: {job.updated_at}",
        f"  targets: {len(job.targets)}  " + "  ".join(f"{k} {v}" for k, v in sorted(job.summary().items())),
        *_approval_lines(job),
        *([f"  note: {job.note}"] if job.note else []),
        *([_waiting_line(job.waiting)] if job.waiting else []),
        *_watch_lines(job),
        *_notification_lines(job),
        "",
        "  TARGET                                  BOX ID        STATUS           DETAIL",
    ]
    for target in job.targets:
        name = target.login or target.group_name or target.input.get("id", "")
        label = f"{target.type.value} {name}"
        lines.append(f"  {label[:38]:<38}  {target.box_id or '-':<12}  {target.status.value:<15}  "
                     f"{target.detail or ''}")
    if job.calls:
        lines += ["", "  CALL            ENDPOINT                     IDS  HTTP  ATTEMPTS  REQUEST ID    MESSAGE"]
    for call in job.calls:
        status = str(call.http_status) if call.http_status is not None else call.state.value
        lines.append(f"  {call.call_id.rsplit('-', 1)[-1]:<14}  {call.endpoint:<27}  {len(call.ids):>3}  "
                     f"{status:<4}  {call.attempts:>8}  {call.request_id or '-':<12}  {call.message or ''}")
    return "\n".join(lines)


def _watch_lines(job: Job) -> list[str]:
    """What the event-stream watch saw of the job's users after Box accepted their termination."""
    if job.watch_until is None:
        return []
    seen = [(job.targets[i], event) for i, events in sorted(job.activity_after.items()) for event in events]
    if not seen:
        return [f"  watched until {job.watch_until}: no activity after termination seen so far"]
    lines = [f"  ACTIVE AFTER TERMINATION: {len(seen)} events by terminated users (watched until {job.watch_until})"]
    for target, event in seen[:10]:
        where = f" from {event['ip_address']}" if event.get("ip_address") else ""
        session = f" session {event['session_id']}" if event.get("session_id") else ""
        lines.append(f"    {target.login or target.user_id}: {event.get('event_type')} at {event.get('created_at')} "
                     f"({event.get('seconds_after')} s after){where}{session}")
    return lines


def _notification_lines(job: Job) -> list[str]:
    """One line per notification sent about the job, to each receiver (shown by host and fingerprint only)."""
    lines = []
    for sent in job.notifications:
        answer = f", last HTTP {sent['last_http_status']}" if sent.get("last_http_status") else ""
        error = f": {sent['last_error']}" if sent.get("last_error") and sent.get("status") != "delivered" else ""
        tries = f"{sent.get('attempts')} attempt" + ("" if sent.get("attempts") == 1 else "s")
        lines.append(f"  notified {sent.get('event')} to {sent.get('url')} (#{sent.get('fingerprint')}): "
                     f"{sent.get('status')}, {tries}{answer}{error}")
    return lines


def _waiting_line(waiting: dict[str, object]) -> str:
    return (f"  waiting: {waiting.get('reason')}; since {waiting.get('since')}, next attempt at "
            f"{waiting.get('next_attempt_at')} ({waiting.get('attempts')} calls Box has seen)")


def _approval_lines(job: Job) -> list[str]:
    lines = [f"  blast radius: {job.blast_radius} users (groups' members counted)"] if job.blast_radius else []
    approval = job.approval
    if approval and approval.approved:
        lines.append(f"  approved by {approval.approved_by} at {approval.approved_at}")
    elif approval and approval.required:
        lines.append("  needs approval: " + "; ".join(approval.reasons))
    return lines


def describe_listing(rows: list[Listed]) -> str:
    """A table of jobs, newest first, with where each is stored (redis, hot, archive)."""
    if not rows:
        return "no jobs"
    lines = [f"{'JOB':<20}  {'STATE':<18}  {'SOURCE':<12}  {'CREATED':<24}  {'STORED':<7}  REASON"]
    lines += [f"{r.summary.job_id:<20}  {r.summary.state:<18}  {r.summary.source:<12}  {r.summary.created_at:<24}  "
              f"{r.stored:<7}  {r.summary.reason}" for r in rows]
    return "\n".join(lines)


@dataclass
class Progress:
    """Targets done of total, counts, rate and time left, from successive looks at a job."""

    started: float
    first_done: int | None = None
    first_at: float | None = None

    def line(self, tally: tuple[int, int, int, str], total: int, now: float, *, width: int = 24) -> str:
        """The bar for `tally` (from `counts`) out of `total` targets."""
        done, accepted, failed, state = tally
        filled = int(width * done / (total or 1))
        bar = "#" * filled + "-" * (width - filled)
        return (f"[{bar}] {done:,}/{total:,} targets  accepted {accepted:,}  failed {failed:,}  "
                f"{self._pace(done, total, now)}  {state}")

    def _pace(self, done: int, total: int, now: float) -> str:
        """Rate since the first target finished, the time the rest would take at it, and the time so far."""
        parts = []
        if self.first_done is None or self.first_at is None:
            if done:
                self.first_done, self.first_at = done, now
        else:
            elapsed = now - self.first_at
            rate = (done - self.first_done) / elapsed if elapsed > 0 else 0.0
            parts.append(f"{rate:,.0f}/s")
            if rate > 0 and done < total:
                parts.append(f"~{(total - done) / rate:.0f} s left")
        parts.append(f"{now - self.started:.0f} s")
        return " ".join(parts)


def counts(job: Job) -> tuple[int, int, int, str]:
    """Targets done, accepted and failed (or dead), and the job's state."""
    done = sum(t.status in _DONE for t in job.targets)
    accepted = sum(t.status is TargetStatus.ACCEPTED for t in job.targets)
    failed = sum(t.status in (TargetStatus.FAILED, TargetStatus.DEAD) for t in job.targets)
    state = job.state.value
    if job.waiting:  # Box down, a 429 pause: say what for and until when
        state += f" (waiting: {job.waiting.get('reason')}; next attempt {job.waiting.get('next_attempt_at')})"
    return done, accepted, failed, state


def summary_table(job: Job, *, limit: int = 20) -> str:
    """The end of a long job: counts by status, calls, and the targets that were not accepted."""
    lines = [f"job {job.job_id}: {job.state.value}   {len(job.targets):,} targets, {len(job.calls):,} Box calls"]
    lines += [f"  {status:<16} {count:>8,}" for status, count in sorted(job.summary().items())]
    unsettled = [t for t in job.targets if t.status is not TargetStatus.ACCEPTED]
    if unsettled and job.state is not JobState.DRY_RUN:
        lines.append("  not accepted:")
        lines += [f"    {t.type.value} {t.login or t.group_name or t.input.get('id', '')}: {t.status.value}"
                  f"{' - ' + t.detail if t.detail else ''}" for t in unsettled[:limit]]
        if len(unsettled) > limit:
            lines.append(f"    ... and {len(unsettled) - limit:,} more (boxcut status {job.job_id})")
    return "\n".join(lines)


# After this long still `queued`, `--wait` says that no worker has picked the job up; or, when a worker did and its
# runs fail, the last fault recorded (and again whenever it changes).
UNPICKED_WARNING_SECONDS = 10.0


def wait_for_job(
    store: JobStore,
    job_id: str,
    *,
    out: TextIO = sys.stderr,
    poll_seconds: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    """Show progress until the job is final or waits for approval; return its record."""
    progress, last, started = Progress(started=clock()), None, clock()
    live, said, faults = out.isatty(), None, FaultWatch(store, job_id)
    while True:
        job = store.load(job_id)
        tally = counts(job)
        stalled = job.state in (JobState.QUEUED, JobState.RESOLVING)
        if stalled and clock() - started >= UNPICKED_WARNING_SECONDS:
            warning = _stall_warning(job, faults.last())
            if warning is not None and warning != said:
                out.write(("\n" if live else "") + warning + "\n")
                said = warning
        # On a terminal the bar redraws in place; in a log, a new line only when the counts change.
        if live or tally != last:
            line = progress.line(tally, len(job.targets), clock())
            out.write(("\r" + line + "\x1b[K") if live else line + "\n")
            out.flush()
            last = tally
        if job.state.is_final or job.state is JobState.AWAITING_APPROVAL:
            if live:
                out.write("\n")
            return job
        time.sleep(poll_seconds)


def _stall_warning(job: Job, fault: str | None) -> str | None:
    """Why a job has not moved: a worker picked it up and its runs fail (`fault`, the last its trail recorded since
    the wait began), or no worker has picked it up at all; None while it merely runs."""
    if fault is not None:
        return (f"job {job.job_id} was picked up and is failing: {fault} (the worker tries again; "
                "boxcut doctor checks Box and Redis)")
    if job.state is JobState.QUEUED:
        return (f"job {job.job_id} is still queued after {UNPICKED_WARNING_SECONDS:.0f} s: no worker has picked it up "
                "(is `boxcut worker` running? boxcut doctor checks Redis and the broker)")
    return None


class FaultWatch:
    """The faults a job's runs record from the moment the wait began (an older one, from before a `retry`, says
    nothing of now), read from where the last look ended, so a long wait never reads the whole trail again."""

    def __init__(self, store: JobStore, job_id: str, *, since_ms: int | None = None) -> None:
        self.store, self.job_id = store, job_id
        self._next_ms = int(time.time() * 1000) if since_ms is None else since_ms
        self._fault: str | None = None

    def last(self) -> str | None:
        """The last fault recorded since the wait began, or None."""
        for entry in self.store.audit_since(since_ms=self._next_ms, stream=self.store.job_audit_key(self.job_id)):
            self._next_ms = int(str(entry["id"]).split("-", 1)[0]) + 1
            if entry.get("event") == FAULT_EVENT:
                self._fault = str((entry.get("data") or {}).get("error") or "an unnamed fault")
        return self._fault


_AGE = re.compile(r"(\d+)([mhd])")
_AGE_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: Callable[[], float] = time.time) -> int:
    """`--since`: an ISO 8601 time, or an age such as 90m, 24h or 7d; epoch ms. ValueError says what it takes."""
    age = _AGE.fullmatch(text.strip())
    if age:
        return int((now() - int(age.group(1)) * _AGE_SECONDS[age.group(2)]) * 1000)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time (2026-12-01T00:00:00Z) or an age (90m, 24h, 7d), got {text!r}"
                         ) from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def describe_audit_entry(entry: dict[str, Any]) -> str:
    """One audit entry as a line: when, which job, what happened, and its data."""
    data = json.dumps(entry["data"], separators=(",", ":"), sort_keys=True)
    return f"{entry['at']}  {entry['job_id']}  {entry['event']:<12} {data}"


def brake_table(shown: dict[str, Any]) -> str:
    """`boxcut brake`: the limits, then a line for all sources and one per source, then what to do."""
    limits, total = shown["limits"], shown["total"]
    minutes = f"{limits['window_seconds'] / 60:g} min"
    lines = [f"brake: {limits['users_per_source'] or 'off'} users per source, {limits['total_users'] or 'off'} "
             f"from all sources, within {minutes}"
             + "".join(f"; {name}: {n or 'off'}" for name, n in sorted(limits["source_overrides"].items()))]
    lines.append(_brake_line("all sources", total))
    lines += [_brake_line(state["source"], state) for state in shown["sources"]]
    held = [job for state in shown["sources"] for job in state["held_jobs"]]
    if held:
        lines.append(f"{len(held):,} jobs wait for the brake; release a source with: boxcut brake release SOURCE")
    return "\n".join(lines)


def _brake_line(name: str, state: dict[str, Any]) -> str:
    limit = state["limit"] or "off"
    if state["released_for_seconds"]:
        condition = f"released for {state['released_for_seconds']:,} s more"
    else:
        condition = "ENGAGED" if state["engaged"] else "clear"
    held = f", {len(state['held_jobs']):,} jobs held" if state["held_jobs"] and name != "all sources" else ""
    return f"  {name}: {state['users']:,} users (limit {limit}), {condition}{held}"
