"""The operator API for the brake across jobs: what it counts and holds, and releasing a source in one decision."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from worker.errors import InvalidTransition
from worker.intake.deps import IntakeDeps
from worker.intake.http import ApiError, parse_json, read_body
from worker.intake.schemas import error_responses
from worker.jobs import actions as job_actions
from worker.jobs.brake import Brake

# A release names one source: its name as `GET /v1/brake` lists it, at most this long.
MAX_SOURCE_CHARS = 512


def add_brake_routes(app: FastAPI, deps: IntakeDeps, operator: Any) -> None:
    """Register `GET /v1/brake` and `POST /v1/brake/release`; both need an operator token."""
    brake = Brake.from_settings(deps.store.redis, deps.settings)

    @app.get("/v1/brake", responses=error_responses(401, 403), tags=["operator"])
    def brake_status(request: Request) -> dict[str, Any]:
        """The brake: its limits, the users counted per source and in all within the window, the sources it holds
        (engaged) or was released for, and the jobs it holds."""
        operator(request)
        return job_actions.brake_status(store=deps.store, brake=brake, now_ms=int(time.time() * 1000))

    @app.post("/v1/brake/release", responses=error_responses(400, 401, 403, 422, 503), tags=["operator"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["source"],
                  "properties": {"source": {"type": "string", "maxLength": MAX_SOURCE_CHARS,
                                            "description": "a source as GET /v1/brake lists it, or * for all"}}}}}}})
    async def release(request: Request) -> dict[str, Any]:
        """Release the brake for a source (`*`: every source): every job it holds for that source is approved by
        the caller, and the source is not held again for the rest of the window."""
        caller = operator(request)
        body = parse_json(await read_body(request, deps.settings.intake_max_body_bytes))
        source = body.get("source") if isinstance(body, dict) else None
        if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
            raise ApiError(422, "invalid_source", "give {\"source\": \"...\"}: a source as GET /v1/brake lists it, "
                           "or \"*\" for every source")
        try:
            done = await run_in_threadpool(lambda: job_actions.release_brake(
                store=deps.store, brake=brake, enqueue=deps.intake.enqueue, source=source, actor=caller.label))
        except InvalidTransition as exc:
            raise ApiError(422, "invalid_source", str(exc)) from None
        return {"source": done.source, "released_until": done.until, "approved": done.approved,
                "skipped": done.skipped}

