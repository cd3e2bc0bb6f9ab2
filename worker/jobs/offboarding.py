"""Bulk offboarding: a validated file becomes one job request with a target per row."""

from __future__ import annotations

from worker.jobs.actions import pre_approval
from worker.jobs.offboarding_file import OffboardFile
from worker.jobs.submit import JobRequest

OFFBOARDING_SOURCE = "offboarding"


def offboarding_key(submission_id: str | None, *, dry_run: bool) -> str | None:
    """The de-duplication key of a submission: a dry run and a real run of one id are two submissions."""
    if submission_id is None:
        return None
    return f"{submission_id}:dry-run" if dry_run else submission_id


def offboarding_request(parsed: OffboardFile, *, reason: str, actor: str, dry_run: bool = False,
                        approve: bool = False, expand_groups: bool = False,
                        submission_id: str | None = None) -> JobRequest:
    """The job request for a validated offboarding file (from the CLI or `POST /v1/offboarding`)."""
    return JobRequest(
        targets=list(parsed.specs), source=OFFBOARDING_SOURCE, reason=reason, requested_by=actor, dry_run=dry_run,
        source_event_id=submission_id, expand_groups=expand_groups,
        approval=pre_approval(actor) if approve else None,
    )
