"""How the CLI shows jobs to a person: a job's record as text, a listing, and progress while waiting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from worker.job_model import Job, JobState, TargetStatus
from worker.job_store import JobStore, JobSummary

# Target statuses that are final: a target in one of these is done.
_DONE = frozenset(TargetStatus) - {TargetStatus.PENDING}


def describe_job(job: Job) -> str:
    """A job record as a person reads it: header, targets, calls."""
    lines = [
        f"job {job.job_id}: {job.state.value}" + (" (dry run)" if job.dry_run else ""),
        f"  source: {job.source}   requested by: {job.requested_by}   reason: {job.reason or '-'}",
        f"  created: {job.created_at}   updated: {job.updated_at}",
        f"  targets: {len(job.targets)}  " + "  ".join(f"{k} {v}" for k, v in sorted(job.summary().items())),
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


def describe_listing(rows: list[JobSummary]) -> str:
    """A table of jobs, newest first."""
    if not rows:
        return "no jobs"
    lines = [f"{'JOB':<20}  {'STATE':<18}  {'SOURCE':<12}  {'CREATED':<24}  REASON"]
    lines += [f"{r.job_id:<20}  {r.state:<18}  {r.source:<12}  {r.created_at:<24}  {r.reason}" for r in rows]
    return "\n".join(lines)


def progress_line(job: Job, elapsed: float) -> str:
    """One line of progress: state, targets done of total, accepted and failed counts."""
    done = sum(t.status in _DONE for t in job.targets)
    accepted = sum(t.status is TargetStatus.ACCEPTED for t in job.targets)
    failed = sum(t.status in (TargetStatus.FAILED, TargetStatus.DEAD) for t in job.targets)
    return (f"{job.state.value:<17} {done}/{len(job.targets)} targets done, {accepted} accepted, "
            f"{failed} failed, {len(job.calls)} Box calls  [{elapsed:.0f} s]")


def wait_for_job(
    store: JobStore,
    job_id: str,
    *,
    out: TextIO = sys.stderr,
    poll_seconds: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    """Show progress until the job is final or waits for approval; return its record."""
    start, last = clock(), ""
    live = out.isatty()
    while True:
        job = store.load(job_id)
        line = progress_line(job, clock() - start)
        if line.split("[")[0] != last.split("[")[0] or live:
            out.write(("\r" + line) if live else line + "\n")
            out.flush()
            last = line
        if job.state.is_final or job.state is JobState.AWAITING_APPROVAL:
            if live:
                out.write("\n")
            return job
        time.sleep(poll_seconds)
