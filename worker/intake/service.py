"""Turning envelopes into jobs: validate all, de-duplicate each, create and enqueue — or change nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.intake.adapters.base import Envelope
from worker.intake.idempotency import IdempotencyKeys
from worker.job_model import CANCELLABLE_STATES, Job, JobState
from worker.job_store import JobStore
from worker.submit import JobRequest, build_job


@dataclass(frozen=True)
class Accepted:
    """A job an alert created, or the job an earlier delivery of the same event created."""

    job_id: str
    duplicate: bool
    source_event_id: str | None


@dataclass
class AlertIntake:
    """Creates jobs from envelopes for the HTTP intake."""

    store: JobStore
    enqueue: Callable[[str], None]
    keys: IdempotencyKeys

    def accept(
        self, *, source: str, envelopes: list[Envelope], requested_by: str, idempotency_key: str | None
    ) -> list[Accepted]:
        """One job per envelope, or the first job for an event seen before. Raises InvalidRequest before
        anything is written when any envelope is invalid."""
        jobs = [self._job(source, envelope, requested_by) for envelope in envelopes]
        results = []
        for index, (job, envelope) in enumerate(zip(jobs, envelopes, strict=True)):
            key = _event_key(idempotency_key, envelope, index, len(envelopes))
            results.append(self._create_once(job, key))
        return results

    @staticmethod
    def _job(source: str, envelope: Envelope, requested_by: str) -> Job:
        return build_job(JobRequest(
            targets=list(envelope.targets), source=source, reason=envelope.reason, requested_by=requested_by,
            dry_run=envelope.dry_run, source_event_id=envelope.source_event_id, severity=envelope.severity,
            link=envelope.link,
        ))

    def _create_once(self, job: Job, key: str | None) -> Accepted:
        if key is not None:
            first = self.keys.claim(source=job.source, event_key=key, job_id=job.job_id)
            if first is not None:
                return Accepted(first, True, job.source_event_id)
        try:
            self.store.create(job)
        except Exception:
            if key is not None:
                self.keys.release(source=job.source, event_key=key, job_id=job.job_id)
            raise
        try:
            self.enqueue(job.job_id)
        except Exception:
            # The record exists but no worker will see it: say so in the record, let the sender retry.
            self.store.transition(job.job_id, to=JobState.CANCELLED, allowed_from=CANCELLABLE_STATES,
                                  note="could not be enqueued: the broker refused it")
            if key is not None:
                self.keys.release(source=job.source, event_key=key, job_id=job.job_id)
            raise
        return Accepted(job.job_id, False, job.source_event_id)


def _event_key(header: str | None, envelope: Envelope, index: int, count: int) -> str | None:
    """The de-duplication key: the Idempotency-Key header (one per envelope of a batch), else the event id."""
    if header:
        return header if count == 1 else f"{header}#{index}"
    return envelope.source_event_id
