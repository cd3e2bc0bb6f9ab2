"""The intake's request and response shapes, as typed models: they generate its OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. `unauthorized`, `no_identity`.")
    message: str = Field(description="What is wrong, in words.")


class ErrorBody(BaseModel):
    """Every error the intake answers: `{"error": {"code": "...", "message": "..."}}`."""

    error: ErrorDetail


class EnvelopeTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["user", "group"]
    id: str | None = Field(default=None, description="A Box user or group id.")
    login: str | None = Field(default=None, description="A user's login (e-mail); users only.")
    name: str | None = Field(default=None, description="A group's exact name; groups only.")


class GenericEnvelope(BaseModel):
    """The generic alert envelope of `POST /v1/alerts`."""

    id: str | None = Field(default=None, description="The sender's event id: a repeat returns the first job.")
    reason: str | None = None
    severity: str | None = None
    dry_run: bool = False
    targets: list[EnvelopeTarget] = Field(min_length=1)


class JobRef(BaseModel):
    job_id: str
    status_url: str
    duplicate: bool
    source_event_id: str | None = None


class AlertAccepted(BaseModel):
    """A delivery's outcome: the job it created (202) or, for an event seen before, the first job (200)."""

    job_id: str | None = Field(description="The (first) job; null when a batch held no event of interest.")
    status_url: str | None
    duplicate: bool
    jobs: list[JobRef] = Field(description="One entry per job, for senders that batch events (Okta).")


class JobSummaryModel(BaseModel):
    job_id: str
    state: str
    source: str
    created_at: str
    updated_at: str
    reason: str


class JobList(BaseModel):
    jobs: list[JobSummaryModel]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class OktaVerification(BaseModel):
    verification: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, all in the contract's error shape."""
    words = {400: "Malformed JSON", 401: "Missing or invalid credentials", 403: "Valid credentials without the right",
             404: "No such job", 409: "Not allowed in the job's current state", 413: "Body over the limit",
             415: "Body is not JSON", 422: "No target found, or a field of the wrong type",
             503: "Redis or the broker is unavailable"}
    return {status: {"model": ErrorBody, "description": words[status]} for status in statuses}
