"""Jobs and receivers for the notification tests."""

from __future__ import annotations

from config.notify_urls import NotifyURL
from worker.jobs.model import JobState
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job

GENERIC = NotifyURL("https://receiver.example.com/hooks/s3cr3t?key=abc")
SLACK = NotifyURL("https://hooks.slack.com/services/T000/B000/XXXX", slack=True)


def new_job(store: JobStore, *, reason: str = "phished", approval_reasons: list[str] | None = None) -> str:
    job = build_job(JobRequest(targets=[{"type": "user", "login": "jdoe@example.com"}], source="splunk",
                               reason=reason, requested_by="pytest", source_event_id="evt-1"))
    store.create(job)
    return job.job_id


def move(store: JobStore, job_id: str, *states: JobState) -> None:
    """Walk the job through `states`, each a transition (an audit `state` entry)."""
    for state in states:
        store.transition(job_id, to=state, allowed_from=list(JobState))
