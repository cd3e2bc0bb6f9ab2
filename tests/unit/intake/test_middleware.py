"""The request log is plain ASGI middleware and logs each request as before: method, path, status, time; never a
query string."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware

from tests.unit.intake_fixtures import INTAKE_TOKEN, make_intake, sample
from worker.intake.middleware import RequestLog


def _intake_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the intake logged (not the test client: httpx logs the URLs it sends, query and all)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("worker.")]


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for line in _intake_log(caplog) if line.endswith(" ms")]


def test_each_request_is_logged_with_method_path_status_and_time_without_its_query(
        caplog: pytest.LogCaptureFixture) -> None:
    intake = make_intake({"BOXCUT_QUERY_TOKEN_SOURCES": "splunk"})
    caplog.set_level(logging.INFO, logger="worker.intake.app")
    intake.post("/v1/alerts/panther", sample("panther.json"))
    intake.client.post(f"/v1/alerts/splunk?token={INTAKE_TOKEN}", json=sample("splunk.json"))
    intake.client.get("/healthz")
    intake.client.get("/v1/nowhere")
    lines = _request_lines(caplog)
    assert [line.rsplit(" ", 2)[0] for line in lines] == [
        "POST /v1/alerts/panther 202", "POST /v1/alerts/splunk 202", "GET /healthz 200", "GET /v1/nowhere 404"]
    assert all(float(line.rsplit(" ", 2)[1]) >= 0 for line in lines)
    assert not [line for line in _intake_log(caplog) if INTAKE_TOKEN in line or "token=" in line]


def test_a_request_that_raised_is_logged_as_500_and_answered_by_the_error_handler(
        caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    app.add_middleware(RequestLog)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.INFO, logger="worker.intake.app")
    answer = TestClient(app, raise_server_exceptions=False).get("/boom?secret=1")
    assert answer.status_code == 500
    assert [line.rsplit(" ", 2)[0] for line in _request_lines(caplog)] == ["GET /boom 500"]
    assert not [line for line in _intake_log(caplog) if "secret" in line]


def test_the_intake_uses_no_base_http_middleware() -> None:
    app = make_intake().client.app
    assert isinstance(app, FastAPI)
    classes = [m.cls for m in app.user_middleware]
    assert RequestLog in classes
    assert not any(isinstance(c, type) and issubclass(c, BaseHTTPMiddleware) for c in classes)


def test_other_scopes_pass_through_unlogged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, object], _receive: object, _send: object) -> None:
        seen.append(str(scope["type"]))

    caplog.set_level(logging.INFO, logger="worker.intake.app")
    asyncio.run(RequestLog(app)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"] and not _request_lines(caplog)
