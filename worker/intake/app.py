"""The intake's FastAPI app: alert webhooks, the operator API, health, readiness and metrics."""

from __future__ import annotations

import enum
import logging
from typing import Annotated, Any

import redis
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from config import defaults
from worker.console import ConsoleDeps, add_console
from worker.errors import AdapterError, AuthFailed, InvalidRequest, NoIdentityFound, NotEnqueued
from worker.intake.adapters.registry import adapter_for
from worker.intake.auth import Caller
from worker.intake.deps import IntakeDeps
from worker.intake.docs import add_offline_docs
from worker.intake.http import ApiError, error_response, parse_json, read_body, require_json_content_type
from worker.intake.metrics import IntakeMetrics
from worker.intake.middleware import LoopbackOnly, RequestLog
from worker.intake.openapi_security import declare_security
from worker.intake.operator_routes import add_operator_routes
from worker.intake.schemas import (
    AlertAccepted,
    GenericEnvelope,
    JobRef,
    OktaVerification,
    Readiness,
    component_schemas,
    error_responses,
)
from worker.intake.service import Accepted
from worker.intake.slack_routes import add_slack_routes
from worker.intake.ssf_routes import add_ssf_routes

log = logging.getLogger(__name__)

GENERIC_SOURCE = "generic"
# What a sender is told to wait when the broker refused its job, or Redis could not store it.
ENQUEUE_RETRY_AFTER_SECONDS = 5
STORE_RETRY_AFTER_SECONDS = 5

AlertSource = enum.StrEnum("AlertSource", {s.replace("-", "_"): s for s in defaults.ALERT_SOURCES})  # type: ignore[misc]


def intake_app_from_deps(deps: IntakeDeps) -> FastAPI:
    """The intake app for these dependencies."""
    app = FastAPI(title="boxcut intake", version="1", description=_DESCRIPTION, docs_url=None, redoc_url=None)
    add_offline_docs(app, title="boxcut intake")
    metrics = IntakeMetrics()
    if deps.insecure_dev:
        _add_loopback_guard(app)
    _add_request_log(app)
    _install_error_handlers(app)
    _add_alert_routes(app, deps, metrics)
    add_ssf_routes(app, deps, metrics)
    add_slack_routes(app, deps, metrics)
    add_operator_routes(app, deps, metrics)
    _add_health_routes(app, deps, metrics)
    if deps.settings.console:  # the operator console (worker/console), under /console
        add_console(app, ConsoleDeps(settings=deps.settings, store=deps.store, history=deps.jobs,
                                     enqueue=deps.intake.enqueue))
    _add_schema_components(app, GenericEnvelope)
    return app


def _add_schema_components(app: FastAPI, *models: type[BaseModel]) -> None:
    """List in the OpenAPI document the models of the bodies the routes read themselves (see `_ENVELOPE_BODY`),
    and the credentials each operation takes (worker/intake/openapi_security.py)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas(*models))
            declare_security(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


_DESCRIPTION = (
    "Security alerts that name people become boxcut jobs that end their Box sessions. Senders authenticate "
    "with `Authorization: Bearer <intake token>` or an HMAC signature (`X-Boxcut-Timestamp`, "
    "`X-Boxcut-Signature: v1=<hex HMAC-SHA256 of \"<timestamp>.<raw body>\">`); operators with an operator token."
)


def _add_loopback_guard(app: FastAPI) -> None:
    """`--insecure-dev` answers only requests addressed to loopback, from no web page elsewhere (DNS rebinding).

    Added before the request log, so the log (the outer middleware) still has a line for each refusal."""
    app.add_middleware(LoopbackOnly)


def _add_request_log(app: FastAPI) -> None:
    """One log line per request, without the query string: a Splunk `?token=` must never reach a log."""
    app.add_middleware(RequestLog)


# -- errors --------------------------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(NotEnqueued)
    async def not_enqueued(_request: Request, exc: NotEnqueued) -> JSONResponse:
        # Nothing was kept (the job ended `cancelled`, its key released): the sender's retry makes the job.
        return error_response(503, "unavailable", str(exc), headers={"Retry-After": str(ENQUEUE_RETRY_AFTER_SECONDS)})

    @app.exception_handler(redis.RedisError)
    async def store_unavailable(_request: Request, exc: redis.RedisError) -> JSONResponse:
        # Redis holds the records and the queue: while it is down or full nothing can be kept, so the sender is
        # told to come back (every sender retries a 503), never that its alert was taken.
        log.warning("Redis refused a request: %s", type(exc).__name__)
        message = f"boxcut cannot store requests now (Redis: {type(exc).__name__}); nothing was kept, retry shortly"
        return error_response(503, "unavailable", message, headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
        return error_response(422, "invalid_parameter", f"{where or 'request'}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(app, request)
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                              headers=headers)


def _allowed_methods(app: FastAPI, request: Request) -> str:
    """Every method some route serves at the request's path: Starlette's `Allow` names only the first route's,
    and `/v1/alerts/okta` has two (GET for Okta's verification, POST for its events)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


# -- alerts --------------------------------------------------------------------------------------------------

_ALERT_ERRORS = error_responses(400, 401, 413, 415, 422, 503)
_OKTA_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "description": "Okta's event hook payload: `data.events[]`."}}}}}
_NOTHING_NEW = {"model": AlertAccepted,
                "description": "No new job: a repeat of an event seen before (the first job), or a batch without an "
                               "event of interest (`job_id` null)"}
_ENVELOPE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": f"#/components/schemas/{GenericEnvelope.__name__}"}}}}}
_VENDOR_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": ["object", "array"],
               "description": "The sender's own JSON payload (an object, or a list for Box Shield)."}}}}}


IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
QueryToken = Annotated[str | None, Query(alias="token", description="Only for sources allowed by settings.")]
OktaChallenge = Annotated[str, Header(alias="X-Okta-Verification-Challenge", min_length=1, max_length=1000,
                                      description="Okta sends it with its one-time verification request.")]


def _add_alert_routes(app: FastAPI, deps: IntakeDeps, metrics: IntakeMetrics) -> None:
    @app.post("/v1/alerts", response_model=AlertAccepted, status_code=202, openapi_extra=_ENVELOPE_BODY,
              responses={200: _NOTHING_NEW, **_ALERT_ERRORS}, tags=["alerts"])
    async def post_generic(request: Request, response: Response, key: IdempotencyKeyHeader = None,
                           token: QueryToken = None) -> AlertAccepted:
        """Post the generic envelope: targets by id, login or group name."""
        return await _receive(deps, metrics, GENERIC_SOURCE, request, response, key, token)

    # Okta's own path, before `{source}` matches it: its verification (GET) lives there too, and the document
    # should list both methods at the one path a client (and `Allow`) sees.
    @app.post("/v1/alerts/okta", response_model=AlertAccepted, status_code=202, openapi_extra=_OKTA_BODY,
              responses={200: _NOTHING_NEW, **_ALERT_ERRORS}, tags=["alerts"])
    async def post_okta(request: Request, response: Response, key: IdempotencyKeyHeader = None,
                        token: QueryToken = None) -> AlertAccepted:
        """Okta's event hook: one job per event of a chosen type in the batch (`BOXCUT_OKTA_EVENT_TYPES`)."""
        return await _receive(deps, metrics, "okta", request, response, key, token)

    @app.post("/v1/alerts/{source}", response_model=AlertAccepted, status_code=202, openapi_extra=_VENDOR_BODY,
              responses={200: _NOTHING_NEW, **_ALERT_ERRORS}, tags=["alerts"])
    async def post_vendor(source: AlertSource, request: Request, response: Response,  # type: ignore[valid-type]
                          key: IdempotencyKeyHeader = None, token: QueryToken = None) -> AlertAccepted:
        """Post a sender's own payload (Splunk, Sentinel, Elastic, Datadog, Panther, Sumo Logic, Okta, Box Shield)."""
        return await _receive(deps, metrics, str(source.value), request, response, key, token)

    @app.get("/v1/alerts/okta", response_model=OktaVerification, responses=error_responses(401, 422),
             tags=["alerts"])
    def okta_verification(request: Request, challenge: OktaChallenge, token: QueryToken = None) -> OktaVerification:
        """Answer Okta's one-time event hook verification."""
        _authenticate_sender(deps, metrics, request, b"", token, "okta")
        return OktaVerification(verification=challenge)


async def _receive(deps: IntakeDeps, metrics: IntakeMetrics, source: str, request: Request, response: Response,
                   idempotency_key: str | None, query_token: str | None) -> AlertAccepted:
    try:
        accepted = await _accept(deps, metrics, source, request, idempotency_key, query_token)
    except ApiError as error:
        metrics.requests.labels(source, error.code).inc()
        raise
    except NotEnqueued:
        metrics.requests.labels(source, "unavailable").inc()
        raise
    new = [a for a in accepted if not a.duplicate]
    metrics.requests.labels(source, "accepted" if new else "duplicate").inc()
    metrics.jobs_created.labels(source).inc(len(new))
    metrics.duplicates.labels(source).inc(len(accepted) - len(new))
    response.status_code = 202 if new else 200
    return _accepted_body(accepted)


async def _accept(deps: IntakeDeps, metrics: IntakeMetrics, source: str, request: Request,
                  idempotency_key: str | None, query_token: str | None) -> list[Accepted]:
    if not deps.insecure_dev and not deps.auth.has_sender_headers(request.headers, query_token):
        metrics.auth_failures.labels("alerts").inc()
        raise ApiError(401, "unauthorized", "missing credentials: send Authorization: Bearer <token> or a signature")
    require_json_content_type(request)
    body = await read_body(request, deps.settings.intake_max_body_bytes)
    caller = _authenticate_sender(deps, metrics, request, body, query_token, source)
    payload = parse_json(body)
    adapter = adapter_for(source, okta_event_types=deps.settings.okta_event_types)
    try:
        envelopes = adapter.parse(payload, paths=deps.settings.identity_paths.get(source))
        return await run_in_threadpool(deps.intake.accept, source=source, envelopes=envelopes,
                                       requested_by=f"{source}:{caller.credential}", idempotency_key=idempotency_key,
                                       signed=caller.signed)
    except (AdapterError, InvalidRequest) as error:
        code = "no_identity" if isinstance(error, NoIdentityFound) else "invalid_payload"
        raise ApiError(422, code, str(error)) from None


def _authenticate_sender(deps: IntakeDeps, metrics: IntakeMetrics, request: Request, body: bytes,
                         query_token: str | None, source: str) -> Caller:
    if deps.insecure_dev:
        return Caller("sender", "insecure-dev")
    try:
        return deps.auth.sender(request.headers, body, query_token=query_token, source=source)
    except AuthFailed as failure:
        metrics.auth_failures.labels("alerts").inc()
        log.warning("refused an alert for %s: %s", source, failure.message)
        raise ApiError(failure.status, "unauthorized", failure.message) from None


def _accepted_body(accepted: list[Accepted]) -> AlertAccepted:
    refs = [JobRef(job_id=a.job_id, status_url=f"/v1/jobs/{a.job_id}", duplicate=a.duplicate,
                   source_event_id=a.source_event_id) for a in accepted]
    first = refs[0] if refs else None
    return AlertAccepted(job_id=first.job_id if first else None, status_url=first.status_url if first else None,
                         duplicate=bool(refs) and all(r.duplicate for r in refs), jobs=refs)


# -- operator API --------------------------------------------------------------------------------------------


# -- health --------------------------------------------------------------------------------------------------


def _add_health_routes(app: FastAPI, deps: IntakeDeps, metrics: IntakeMetrics) -> None:
    # Answered on the event loop: nothing to wait for, so no hop to the thread pool.
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={
        200: {"model": Readiness, "description": "Redis and the broker answer"},
        503: {"model": Readiness, "description": "Redis or the broker does not answer"}})
    def readyz() -> JSONResponse:
        """Redis and the broker really answer."""
        checks = deps.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}})
    def prometheus() -> Response:
        """Prometheus metrics: requests by source and outcome, jobs created, duplicates, auth failures."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")
