"""What one notification is about: a job, the audit entry where its state changed, and a receiver."""

from __future__ import annotations

from dataclasses import dataclass

from worker.jobs.model import JobState

AWAITING_APPROVAL = "awaiting_approval"
FINISHED = "finished"
# The brake across jobs engaged: told once, on the job whose hold engaged it (worker/jobs/brake.py).
BRAKE_ENGAGED = "brake_engaged"


def event_of(state: str) -> str | None:
    """The notification a job moving into `state` sends: `awaiting_approval`, `finished` (a final state), or
    none. A job `recorded` is never notified: it is created final (a Box Shield alert the rules record only) and
    never changes state, so the scanner sees no move of it (the listing `boxcut jobs --state recorded` has them)."""
    try:
        moved_to = JobState(state)
    except ValueError:
        return None
    if moved_to is JobState.AWAITING_APPROVAL:
        return AWAITING_APPROVAL
    return FINISHED if moved_to.is_final and moved_to is not JobState.RECORDED else None


@dataclass(frozen=True)
class Notice:
    """One notification to one receiver: `url_index` is its place in BOXCUT_NOTIFY_URLS (the URL itself never
    travels through the broker, whose messages and task events are no place for a secret)."""

    job_id: str
    audit_id: str
    event: str
    state: str
    url_index: int

    @property
    def field(self) -> str:
        """Its field in the job's notify hash."""
        return f"{self.audit_id}#{self.url_index}"

    @property
    def notification_id(self) -> str:
        """The same for every receiver and every attempt: what a receiver de-duplicates on."""
        return f"{self.job_id}/{self.audit_id}"

    def args(self) -> list[object]:
        return [self.job_id, self.audit_id, self.event, self.state, self.url_index]
