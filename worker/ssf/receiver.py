"""Receiving one pushed SET: verify it, turn it into a job through the one submit path, claimed under its issuer
and `jti` so a replay makes nothing and is refused."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from worker import logs
from worker.errors import InvalidRequest
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.model import Job
from worker.jobs.store import JobStore
from worker.jobs.submit import Enqueue, JobRequest, Submitted, build_job, submit
from worker.ssf.events import SOURCE, job_request
from worker.ssf.verifier import SetRefused, SetVerifier

log = logging.getLogger(__name__)


@dataclass
class SetReceiver:
    """Verified SETs in, jobs out."""

    verifier: SetVerifier
    store: JobStore
    enqueue: Enqueue
    keys: IdempotencyKeys  # kept at least as long as a SET's iat is accepted (BOXCUT_SSF_MAX_AGE_SECONDS)

    def receive(self, token: str) -> Submitted:
        """The job this SET made. Raises SetRefused for a SET it will not take, a replay among them: a `jti`
        is one delivery, and its first delivery made the job (named in the refusal)."""
        verified = self.verifier.verify(token)
        job = _job(job_request(verified))
        with logs.context(job_id=job.job_id, source=SOURCE, source_event_id=verified.jti):
            made = submit(store=self.store, enqueue=self.enqueue, job=job, keys=self.keys,
                          key=f"{verified.transmitter.issuer}\n{verified.jti}")
        if made.duplicate:
            raise SetRefused("invalid_request", f"jti {verified.jti[:200]!r} was received before "
                                                f"(job {made.job_id}); a SET is delivered once")
        log.info("SET %s from %s became job %s (%s)", verified.jti[:200], verified.transmitter.issuer,
                 made.job_id, job.state.value)
        return made


def _job(request: JobRequest) -> Job:
    """The job for a verified SET. A target the job model refuses (a login longer than Box allows, say) makes it
    a recorded job that says why: the SET was genuine, and it is kept, but it names nobody boxcut can act on."""
    try:
        return build_job(request)
    except InvalidRequest as refused:
        return build_job(replace(request, targets=[], record_only=f"subject not usable ({refused}); recorded, "
                                                                   "not acted on"))
