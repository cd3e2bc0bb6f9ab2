"""The operator API: read, list, approve, retry and cancel jobs, and submit offboarding files."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from worker.archive.store import ArchiveError
from worker.errors import AuthFailed, InvalidOffboardFile, InvalidRequest, InvalidTransition, JobNotFound
from worker.intake.auth import Caller
from worker.intake.brake_routes import add_brake_routes
from worker.intake.deps import IntakeDeps
from worker.intake.http import ApiError, parse_json, read_body
from worker.intake.metrics import IntakeMetrics
from worker.intake.schemas import JobList, JobSummaryModel, OffboardingAccepted, RetryStarted, error_responses
from worker.jobs import actions as job_actions
from worker.jobs import evidence_signing
from worker.jobs.model import JobState
from worker.jobs.offboarding import offboarding_key, offboarding_request
from worker.jobs.offboarding_file import OffboardFile, parse_csv
from worker.jobs.offboarding_file import parse_json as parse_json_rows
from worker.jobs.report import build_report
from worker.jobs.report_markdown import render_markdown
from worker.jobs.submit import build_job, submit

_LISTINGS = {"dead": "dead", "active_after": "active-after"}  # jobs holding dead targets; activity after termination
JobStateName = enum.StrEnum("JobStateName", {s.value: s.value for s in JobState} | _LISTINGS)  # type: ignore[misc]

T = TypeVar("T")


class ReportFormat(enum.StrEnum):
    JSON = "json"
    MD = "md"


_REPORT_CONTENT: dict[str, Any] = {
    "description": "The evidence report: signed JSON (`signature` null when no signing key is set), or Markdown",
    "content": {
        "application/json": {"schema": {"type": "object", "required": ["report", "signature"],
                                        "properties": {"report": {"type": "object"},
                                                       "signature": {"type": ["object", "null"]}}}},
        "text/markdown": {"schema": {"type": "string"}},
    },
}

# Offboarding files are larger than alerts: 100,000 rows of ids and logins fit in this.
OFFBOARDING_MAX_BODY_BYTES = 16 * 1024 * 1024

_OFFBOARDING_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "Columns user_id, user_login, group_id, group_name, "
                    "reason (header names case-insensitive; UTF-8 with or without BOM).",
                }
            },
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "user_id": {"type": ["string", "integer"]},
                            "group_id": {"type": ["string", "integer"]},
                            **{name: {"type": "string"} for name in ("user_login", "group_name", "reason")},
                        },
                    },
                }
            },
        },
    }
}


def add_operator_routes(app: FastAPI, deps: IntakeDeps, metrics: IntakeMetrics) -> None:
    """Register the operator API on `app`; every route needs an operator token."""
    operator = _operator_check(deps, metrics)
    _add_read_routes(app, deps, operator)
    _add_action_routes(app, deps, operator)
    _add_offboarding_route(app, deps, operator)
    add_brake_routes(app, deps, operator)


def _operator_check(deps: IntakeDeps, metrics: IntakeMetrics) -> Any:
    def operator(request: Request) -> Caller:
        if deps.insecure_dev:
            return Caller("operator", "insecure-dev")
        try:
            return deps.auth.operator(request.headers)
        except AuthFailed as failure:
            metrics.auth_failures.labels("operator").inc()
            raise ApiError(
                failure.status, "unauthorized" if failure.status == 401 else "forbidden", failure.message
            ) from None

    return operator


def _add_read_routes(app: FastAPI, deps: IntakeDeps, operator: Any) -> None:
    @app.get("/v1/jobs/{job_id}", responses=error_responses(401, 403, 404, 422, 503), tags=["operator"])
    def get_job(job_id: str, request: Request, response: Response) -> dict[str, Any]:
        """A job's record: state, every target, every Box call with Box's answer. The `Boxcut-Stored` header says
        where it was read: `redis` (working), `hot` (settled, a compact copy in Redis) or `archive`."""
        operator(request)
        with _archive_errors():
            try:
                found = deps.jobs.find(job_id)
            except JobNotFound:
                raise ApiError(404, "not_found", f"no job {job_id}") from None
        response.headers[STORED_HEADER] = found.stored
        return found.job.to_dict()

    @app.get("/v1/jobs/{job_id}/report", response_class=Response, tags=["operator"],
             responses={200: _REPORT_CONTENT, **error_responses(401, 403, 404, 422)})
    def get_job_report(job_id: str, request: Request,
                       fmt: Annotated[ReportFormat, Query(alias="format")] = ReportFormat.JSON) -> Response:
        """The job's evidence report: JSON signed with BOXCUT_REPORT_SIGNING_KEY (as `boxcut report` writes it,
        byte for byte: `boxcut report --verify` checks the saved answer), or Markdown to read (unsigned)."""
        operator(request)
        with _archive_errors():
            try:
                built = build_report(deps.jobs, job_id)
            except JobNotFound:
                raise ApiError(404, "not_found", f"no job {job_id}") from None
        if fmt is ReportFormat.MD:
            return Response(render_markdown(built), media_type="text/markdown; charset=utf-8")
        document = evidence_signing.sign(built, evidence_signing.configured_key(deps.settings))
        return Response(evidence_signing.render(document), media_type="application/json")

    @app.get("/v1/jobs", response_model=JobList, responses=error_responses(401, 403, 422), tags=["operator"])
    def list_jobs(
        request: Request,
        state: JobStateName | None = None,  # type: ignore[valid-type]
        source: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        # At most 10,000: a page merges Redis and the archive up to its cursor (narrow by state or source).
        cursor: Annotated[str | None, Query(pattern=r"^(\d{1,4}|10000)$")] = None,
    ) -> JobList:
        """Jobs newest first, by state (`dead`: holding targets whose retries ran out) and source."""
        operator(request)
        with _archive_errors():
            rows, following = deps.jobs.list_jobs(
                state=state.value if state else None, source=source, limit=limit, cursor=int(cursor or 0)
            )
        return JobList(
            jobs=[JobSummaryModel(**r.to_dict()) for r in rows],
            next_cursor=str(following) if following is not None else None,
        )


# Where a job's record was read (GET /v1/jobs/{id}): redis, hot or archive.
STORED_HEADER = "Boxcut-Stored"


@contextlib.contextmanager
def _archive_errors() -> Iterator[None]:
    """An archive that cannot be reached answers 503, saying so (never its URL)."""
    try:
        yield
    except ArchiveError as error:
        raise ApiError(503, "archive_unavailable", f"the archive cannot be read now: {error}") from None


def _add_action_routes(app: FastAPI, deps: IntakeDeps, operator: Any) -> None:
    actions = error_responses(401, 403, 404, 409, 422, 503)

    @app.post("/v1/jobs/{job_id}/cancel", responses=actions, tags=["operator"])
    def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        """Cancel a job, possible until it is settled: targets still waiting to be sent are then never sent."""
        caller = operator(request)
        job = _job_action(
            job_id,
            "not_cancellable",
            "a job can be cancelled until it is settled",
            lambda: job_actions.cancel(store=deps.store, job_id=job_id, actor=caller.label),
        )
        return job.to_dict()

    @app.post("/v1/jobs/{job_id}/approve", responses=actions, tags=["operator"])
    def approve_job(job_id: str, request: Request) -> dict[str, Any]:
        """Approve a job that waits for approval; who approved and when is recorded, then it runs."""
        caller = operator(request)
        job = _job_action(
            job_id,
            "not_awaiting_approval",
            "only a job in awaiting_approval can be approved",
            lambda: job_actions.approve(
                store=deps.store, enqueue=deps.intake.enqueue, job_id=job_id, actor=caller.label
            ),
        )
        return job.to_dict()

    @app.post("/v1/jobs/{job_id}/retry", response_model=RetryStarted, responses=actions, tags=["operator"])
    def retry_job(job_id: str, request: Request) -> RetryStarted:
        """Send again only the targets that ended `failed` or `dead`; new calls are recorded beside the old. A
        queued, resolving or terminating job that no worker is running is enqueued again (`restarted`)."""
        caller = operator(request)
        done = _job_action(
            job_id,
            "not_retryable",
            "a failed or partial job is retried, a job that is not moving is enqueued again",
            lambda: job_actions.retry(store=deps.store, enqueue=deps.intake.enqueue, job_id=job_id, actor=caller.label),
        )
        if not done.targets and not done.restarted:
            raise ApiError(409, "nothing_to_retry", f"job {job_id} has no failed or dead targets")
        return RetryStarted(job_id=job_id, retried=done.targets, restarted=done.restarted,
                            status_url=f"/v1/jobs/{job_id}")


def _job_action(job_id: str, code: str, rule: str, action: Callable[[], T]) -> T:
    """Run an action on a job: a missing job is 404, a state that forbids the action 409."""
    try:
        return action()
    except JobNotFound:
        raise ApiError(404, "not_found", f"no job {job_id}") from None
    except InvalidTransition as error:
        raise ApiError(409, code, f"{error}; {rule}") from None


def _add_offboarding_route(app: FastAPI, deps: IntakeDeps, operator: Any) -> None:
    @app.post(
        "/v1/offboarding",
        response_model=OffboardingAccepted,
        status_code=202,
        openapi_extra=_OFFBOARDING_BODY,
        tags=["operator"],
        responses={
            200: {"model": OffboardingAccepted, "description": "The same Idempotency-Key: the first job"},
            **error_responses(400, 401, 403, 413, 415, 422, 503),
        },
    )
    async def offboarding(
        request: Request,
        response: Response,
        key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
        reason: Annotated[str, Query(max_length=500)] = "",
        dry_run: bool = False,
        approve: bool = False,
        expand_groups: bool = False,
    ) -> OffboardingAccepted:
        """Offboard every user and group of a CSV file or JSON list; the whole input is checked first."""
        caller = operator(request)
        media_type = _offboarding_media_type(request)
        parsed = _parse_offboarding(media_type, await read_body(request, OFFBOARDING_MAX_BODY_BYTES))
        job_request = offboarding_request(
            parsed,
            reason=reason or "offboarding via the API",
            actor=caller.label,
            dry_run=dry_run,
            approve=approve,
            expand_groups=expand_groups,
            submission_id=key,
        )
        try:
            job = build_job(job_request)
        except InvalidRequest as exc:
            raise ApiError(422, "invalid_file", str(exc)) from None
        made = await run_in_threadpool(submit, store=deps.store, enqueue=deps.intake.enqueue, job=job,
                                       keys=deps.intake.keys, key=offboarding_key(key, dry_run=dry_run))
        response.status_code = 200 if made.duplicate else 202
        return OffboardingAccepted(
            job_id=made.job_id,
            status_url=f"/v1/jobs/{made.job_id}",
            duplicate=made.duplicate,
            targets=len(parsed.targets),
            rows=parsed.rows,
            merged=parsed.merged,
        )


def _offboarding_media_type(request: Request) -> str:
    """`text/csv` or `application/json`; anything else is refused (415) before the body is read."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in ("text/csv", "application/json"):
        raise ApiError(415, "unsupported_media_type", f"send text/csv or application/json (got {media_type or 'none'})")
    return media_type


def _parse_offboarding(media_type: str, body: bytes) -> OffboardFile:
    try:
        if media_type == "text/csv":
            return parse_csv(body)
        return parse_json_rows(parse_json(body))
    except InvalidOffboardFile as exc:
        raise ApiError(422, "invalid_file", str(exc)) from None
