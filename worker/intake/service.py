"""Turning envelopes into jobs: validate all, de-duplicate each, create and enqueue — or change nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from config.shield_rules import DEFAULT_RULES, ShieldRule
from worker.event_stream.shield import SOURCE as BOX_SHIELD
from worker.event_stream.shield import decided
from worker.intake.adapters.base import Envelope
from worker.intake.auth import SignedDelivery
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import Job
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, TaskWrites, build_job, submit


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
    expand_groups: bool = False  # BOXCUT_EXPAND_GROUPS: record whose sessions a group call covered
    shield_rules: tuple[ShieldRule, ...] = DEFAULT_RULES  # BOXCUT_SHIELD_RULES
    # Box Shield event ids are Box's own, kept as long as the event-stream reader keeps them: an alert a SIEM
    # relays and the same alert read from the stream are one job (worker/event_stream/reader.py). None: `keys`.
    shield_keys: IdempotencyKeys | None = field(default=None)
    # The broker is the store's Redis: each job's claim, record and task are written in one step (`submit`).
    task_writes: TaskWrites | None = None

    def accept(
        self, *, source: str, envelopes: list[Envelope], requested_by: str, idempotency_key: str | None,
        signed: SignedDelivery | None = None,
    ) -> list[Accepted]:
        """One job per envelope, or the first job for an event seen before. Raises InvalidRequest before
        anything is written when any envelope is invalid.

        A signed delivery is de-duplicated only on what its signature covers (see `_event_key`), so a captured
        request sent again, whatever its unsigned headers say, gets the first delivery's jobs and makes none."""
        jobs = [self._job(source, envelope, requested_by) for envelope in envelopes]
        results = []
        for index, (job, envelope) in enumerate(zip(jobs, envelopes, strict=True)):
            if source == BOX_SHIELD and envelope.source_event_id:
                results.append(self._create_once(job, envelope.source_event_id, self.shield_keys or self.keys))
                continue
            key = _event_key(idempotency_key, envelope, index, len(envelopes), signed)
            results.append(self._create_once(job, key, self.keys))
        return results

    def _job(self, source: str, envelope: Envelope, requested_by: str) -> Job:
        request = JobRequest(
            targets=list(envelope.targets), source=source, reason=envelope.reason, requested_by=requested_by,
            dry_run=envelope.dry_run, source_event_id=envelope.source_event_id, severity=envelope.severity,
            link=envelope.link, expand_groups=self.expand_groups,
        )
        return build_job(decided(request, envelope.shield, self.shield_rules) if envelope.shield else request)

    def _create_once(self, job: Job, key: str | None, keys: IdempotencyKeys) -> Accepted:
        made = submit(store=self.store, enqueue=self.enqueue, job=job, keys=keys, key=key, task_writes=self.task_writes)
        return Accepted(made.job_id, made.duplicate, job.source_event_id)


def _event_key(header: str | None, envelope: Envelope, index: int, count: int,
               signed: SignedDelivery | None) -> str | None:
    """The de-duplication key of one envelope.

    Unsigned: the Idempotency-Key header (one per envelope of a batch) when sent, else the event id. Signed: only
    what the signature covers decides, so no unsigned header can make a captured request new, not even after a
    first delivery that failed half-way through a batch: the event id, else the signature itself. Keys are kept
    at least as long as a signature is accepted (`IdempotencyKeys`), so a replay inside the window is a repeat."""
    if signed is not None:
        return envelope.source_event_id or f"sig:{signed.signature}#{index}"
    if header:
        return header if count == 1 else f"{header}#{index}"
    return envelope.source_event_id
