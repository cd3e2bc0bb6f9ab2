"""The intake's request and response shapes, as typed models: they generate its OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. `unauthorized`, `no_identity`.")
    message: str = Field(description="What is wrong, in words.")


class ErrorBody(BaseModel):
    """Every error the intake answers: `{"error": {"code": "...", "message": "..."}}`."""

    error: ErrorDetail


# The generic envelope is read by `worker.intake.adapters.generic`, not by these models: they document what that
# adapter accepts, exactly, so that a sender can trust the document (what it allows is accepted, the rest is 422).
# Not blank once Python strips it: a character that is neither ECMA-262 whitespace (the regex dialect of JSON
# Schema) nor one that only Python counts as whitespace (U+001C to U+001F, U+0085).
NonBlank = Annotated[str, StringConstraints(pattern=r"[^\s\x1c-\x1f\x85]")]
# A login as `worker.identity.login_problem` has it, once stripped: no whitespace (Python's, spelled out: JSON
# Schema's `\s` differs), one @, a dotted domain, at most 254 characters, and neither character whose lower case
# holds ASCII (U+0130, U+212A; tests/unit/test_identity.py checks these two against all of Unicode).
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SECOND_SPELLINGS = "\u0130\u212a"
_PART = rf"[^@{_SPACE}{SECOND_SPELLINGS}]"
_LABEL = rf"[^@.{_SPACE}{SECOND_SPELLINGS}]"
Login = Annotated[str, StringConstraints(pattern=rf"^[{_SPACE}]*{_PART}+@{_LABEL}+(\.{_LABEL}+)+[{_SPACE}]*$",
                                         max_length=254)]
# A Box id is digits only, at most 20, without leading zeros (worker.identity); anything else is refused with
# 422 naming the field.
BoxIdText = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,19})$")]
BoxIdNumber = Annotated[int, Field(ge=0, le=10**20 - 1)]
BoxId = Annotated[BoxIdText | BoxIdNumber,
                  Field(description="A Box user or group id: 1 to 20 digits without leading zeros, as text or a "
                                    "whole number.")]


class _Target(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keys are ignored


class UserById(_Target):
    """A user by Box user id."""

    type: Literal["user"]
    id: BoxId
    login: None = Field(default=None, description="Give `id` or `login`, not both.")


class UserByLogin(_Target):
    """A user by login (e-mail)."""

    type: Literal["user"]
    login: Login = Field(description="The user's login: an e-mail address (one @, a dotted domain, no blank), "
                                     "without U+0130 or U+212A, which would compare equal to another login.")
    id: None = Field(default=None, description="Give `id` or `login`, not both.")


class GroupById(_Target):
    """A group by Box group id."""

    type: Literal["group"]
    id: BoxId
    name: None = Field(default=None, description="Give `id` or `name`, not both.")


class GroupByName(_Target):
    """A group by its exact name."""

    type: Literal["group"]
    name: NonBlank = Field(description="The group's exact name.")
    id: None = Field(default=None, description="Give `id` or `name`, not both.")


EnvelopeTarget = UserById | UserByLogin | GroupById | GroupByName


class GenericEnvelope(BaseModel):
    """The generic alert envelope of `POST /v1/alerts`."""

    id: NonBlank | int | None = Field(default=None,
                                      description="The sender's event id: a repeat returns the first job.")
    reason: str | None = None
    severity: str | None = None
    dry_run: bool | None = Field(default=False, description="null is false.")
    targets: list[EnvelopeTarget] = Field(min_length=1, description="Each names exactly one user or group.")


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
    stored: str = Field(description="Where the job's record is: `redis` (working), `hot` (settled, a compact copy "
                                    "in Redis) or `archive`.")


class JobList(BaseModel):
    jobs: list[JobSummaryModel]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class OktaVerification(BaseModel):
    verification: str


class Readiness(BaseModel):
    """`GET /readyz`: 200 when every dependency answers, else 503 with the same shape."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="Each dependency (`redis`, `broker`): `ok` or `unavailable` "
                                               "(why is in the intake's log, not here).")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, all in the contract's error shape."""
    words = {400: "Malformed JSON", 401: "Missing or invalid credentials", 403: "Valid credentials without the right",
             404: "No such job", 409: "Not allowed in the job's current state", 413: "Body over the limit",
             415: "Body is not JSON", 422: "No target found, or a field of the wrong type",
             503: "Redis or the broker is unavailable"}
    return {status: {"model": ErrorBody, "description": words[status]} for status in statuses}


def component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI component schemas of `models` and of every model they use, keyed by name.

    For bodies a route reads itself (and so declares through `openapi_extra`): FastAPI only lists the models of
    the parameters it parses, and a `$ref` to a component that is not listed leaves the document broken."""
    _, definitions = models_json_schema([(model, "validation") for model in models], ref_template=REF_TEMPLATE)
    return dict(definitions.get("$defs", {}))


class RetryStarted(BaseModel):
    """A retry was started: how many failed or dead targets are being sent again; or, `restarted`, a job that was
    not moving was enqueued again, with `retried` its targets still pending."""

    job_id: str
    retried: int
    restarted: bool = False
    status_url: str


class OffboardingAccepted(BaseModel):
    """An offboarding file became one job (202), or was submitted before with the same Idempotency-Key (200)."""

    job_id: str
    status_url: str
    duplicate: bool
    targets: int = Field(description="Targets after repeated rows were merged.")
    rows: int
    merged: int
