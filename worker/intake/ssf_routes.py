"""The Shared Signals push receiver (RFC 8935): `POST /v1/ssf/events` takes one SET per request and answers 202
with an empty body, or 400 with `{"err": ..., "description": ...}`. The SET's signature is its authentication:
no intake token is asked for."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from config import defaults
from worker.intake.deps import IntakeDeps
from worker.intake.http import read_body
from worker.intake.metrics import IntakeMetrics
from worker.intake.schemas import error_responses
from worker.ssf.events import SOURCE
from worker.ssf.verifier import SetRefused

log = logging.getLogger(__name__)

SET_MEDIA_TYPE = "application/secevent+jwt"

_SET_BODY = {"requestBody": {"required": True, "content": {SET_MEDIA_TYPE: {"schema": {
    "type": "string", "description": "One Security Event Token (RFC 8417): a compact JWS."}}}}}


class SetError(BaseModel):
    """A SET not taken (RFC 8935 section 2.3); nothing was created."""

    err: Literal["invalid_request", "invalid_key", "invalid_issuer", "invalid_audience", "authentication_failed",
                 "access_denied"]
    description: str


def add_ssf_routes(app: FastAPI, deps: IntakeDeps, metrics: IntakeMetrics) -> None:
    @app.post("/v1/ssf/events", status_code=202, tags=["shared signals"], openapi_extra=_SET_BODY,
              response_class=Response,
              responses={202: {"description": "The SET was taken: a job, acting or recorded"},
                         400: {"model": SetError, "description": "The SET was not taken; nothing was created"},
                         **error_responses(413, 503)})
    async def receive_set(request: Request) -> Response:
        """Receive a Security Event Token pushed by a Shared Signals transmitter (BOXCUT_SSF_TRANSMITTERS)."""
        try:
            token = await _token(request)
            if deps.ssf is None:
                raise SetRefused("access_denied", "this receiver has no transmitters (BOXCUT_SSF_TRANSMITTERS)")
            await run_in_threadpool(deps.ssf.receive, token)
        except SetRefused as refused:
            metrics.requests.labels(SOURCE, refused.err).inc()
            log.warning("refused a SET: %s: %s", refused.err, refused.description)
            return JSONResponse({"err": refused.err, "description": refused.description}, status_code=400)
        metrics.requests.labels(SOURCE, "accepted").inc()
        metrics.jobs_created.labels(SOURCE).inc()
        return Response(status_code=202)


async def _token(request: Request) -> str:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != SET_MEDIA_TYPE:
        raise SetRefused("invalid_request", f"send Content-Type: {SET_MEDIA_TYPE} (got {media_type or 'none'})")
    body = await read_body(request, defaults.SSF_MAX_BODY_BYTES)
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SetRefused("invalid_request", "the body is not a compact JWS (it holds non-ASCII bytes)") from None
