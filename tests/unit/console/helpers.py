"""The console on fakeredis and an SQLite archive, with a recording enqueue and a provider that can be told
whose claims to send: for tests that need no browser."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import RedirectResponse

from config import Settings, load_settings
from tests.unit.fake_box import FakeBox, accepted, make_ctx, new_job, users
from worker.archive.migrate import upgrade
from worker.archive.store import Archive
from worker.box.answers import BoxUser
from worker.console import ConsoleDeps, add_console
from worker.intake.app import intake_app_from_deps
from worker.intake.auth import Authenticator
from worker.intake.deps import IntakeDeps
from worker.intake.service import AlertIntake
from worker.jobs.archiving import Archiver
from worker.jobs.history import JobHistory
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.send_queue import SendQueue
from worker.jobs.store import JobStore
from worker.run.runner import run_job

OPERATOR_TOKEN = "operator-token-for-alice"
SESSION_SECRET = "s" * 40
BASE = "https://boxcut.example.com"
ENV = {
    "BOXCUT_CONSOLE": "on",
    "BOXCUT_KEY_PREFIX": "t:",
    "BOXCUT_CONSOLE_SESSION_SECRET": SESSION_SECRET,
    "BOXCUT_INTAKE_TOKENS": "intake-token-1",
    "BOXCUT_OPERATOR_TOKENS": f"alice:{OPERATOR_TOKEN}",
    "BOXCUT_OIDC_ISSUER": "https://idp.example.com",
    "BOXCUT_OIDC_CLIENT_ID": "boxcut",
    "BOXCUT_OIDC_CLIENT_SECRET": "client-secret",
    "BOXCUT_CONSOLE_APPROVERS": "boxcut-approvers",
    "BOXCUT_CONSOLE_VIEWERS": "boxcut-viewers,soc",
}


class FakeProvider:
    """Stands in for Authlib's client: the redirect keeps a state in the session, and the callback answers the
    claims it was given (an ID token Authlib validated), or fails without that state."""

    def __init__(self) -> None:
        self.claims: dict[str, Any] = {}
        self.userinfo_claims: dict[str, Any] = {}
        self.redirect_uri = ""
        self.redirects = 0

    async def authorize_redirect(self, request: Request, redirect_uri: str) -> RedirectResponse:
        self.redirect_uri = redirect_uri
        self.redirects += 1
        state = f"s{self.redirects}"
        request.session[f"_state_oidc_{state}"] = {"data": {"redirect_uri": redirect_uri, "nonce": "n" * 20}}
        return RedirectResponse(f"https://idp.example.com/auth?state={state}", status_code=302)

    async def authorize_access_token(self, request: Request) -> dict[str, Any]:
        from authlib.integrations.base_client import OAuthError

        state = request.query_params.get("state", "")
        if f"_state_oidc_{state}" not in request.session:
            raise OAuthError(error="mismatching_state", description="CSRF Warning! State not equal in request")
        request.session.pop(f"_state_oidc_{state}")
        return {"access_token": "at", "userinfo": dict(self.claims)}

    async def userinfo(self, *, token: Any) -> dict[str, Any]:
        return dict(self.userinfo_claims)


@dataclass
class ConsoleUnderTest:
    client: TestClient
    store: JobStore
    history: JobHistory
    archive: Archive
    settings: Settings
    provider: FakeProvider
    enqueued: list[str] = field(default_factory=list)
    now: list[float] = field(default_factory=list)

    def csrf(self, path: str = "/console/signin") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def sign_in_with_token(self, token: str = OPERATOR_TOKEN) -> Any:
        return self.client.post("/console/signin/token", data={"csrf": self.csrf(), "token": token},
                                follow_redirects=False)

    def sign_in_with_provider(self, claims: Mapping[str, Any]) -> Any:
        self.provider.claims = dict(claims)
        state = self.client.get("/console/auth/login", follow_redirects=False).headers["location"].split("state=")[1]
        return self.client.get(f"/console/auth/callback?state={state}&code=c1", follow_redirects=False)

    def post(self, path: str, data: Mapping[str, str] | None = None, *, csrf: str | None = "page",
             headers: Mapping[str, str] | None = None) -> Any:
        fields = dict(data or {})
        if csrf == "page":
            fields["csrf"] = self.csrf("/console/now")
        elif csrf is not None:
            fields["csrf"] = csrf
        return self.client.post(path, data=fields, headers=dict(headers or {}), follow_redirects=False)


def finished_job(store: JobStore, *logins: str) -> str:
    box = FakeBox(users=[BoxUser(id=str(10 + i), login=login) for i, login in enumerate(logins)],
                  answers=[accepted()])
    job_id = new_job(store, users(*logins))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    return job_id


def archiver(store: JobStore, archive: Archive, *, hot_seconds: float = 86400.0) -> Archiver:
    """The archive pass, settling a finished job at once."""
    return Archiver(store, SendQueue(store.redis, key_prefix=store.prefix), archive, hot_seconds=hot_seconds,
                    settle_seconds=0.0, late_events_seconds=600)


def awaiting_job(store: JobStore, *logins: str) -> str:
    """A job held for approval: its blast radius exceeds a threshold of 0."""
    box = FakeBox(users=[BoxUser(id=str(20 + i), login=login) for i, login in enumerate(logins)],
                  answers=[accepted()])
    job_id = new_job(store, users(*logins))
    run_job(ctx=make_ctx(store, box, threshold=0), job_id=job_id)
    return job_id


def make_console(tmp_path: Path, env: Mapping[str, str] | None = None, *, provider: bool = True,
                 refuse_enqueue: bool = False, direct: bool = False, monkeypatch: Any = None) -> ConsoleUnderTest:
    """The intake (and so the console) on fakeredis and an SQLite archive of its own. `direct`: the console alone
    on an app of its own, with a clock the test moves (`console.now`)."""
    settings = load_settings({**ENV, **(env or {})}, env_file=None)
    redis = fakeredis.FakeRedis()
    store = JobStore(redis, key_prefix="t:")
    url = f"sqlite:///{tmp_path}/archive.sqlite3"
    upgrade(url)
    archive = Archive(url)
    history = JobHistory(store, archive)
    enqueued: list[str] = []

    def enqueue(job_id: str) -> None:
        if refuse_enqueue:
            raise ConnectionError("the broker refused the task")
        enqueued.append(job_id)

    fake = FakeProvider()
    if monkeypatch is not None:
        monkeypatch.setattr("worker.console.auth.oidc_client", lambda _settings: fake if provider else None)
    clock = [1_800_000_000.0]
    if direct:
        app = FastAPI()
        add_console(app, ConsoleDeps(settings=settings, store=store, history=history, enqueue=enqueue,
                                     clock=lambda: clock[0]))
    else:
        keys = IdempotencyKeys(redis, key_prefix="t:", ttl_seconds=settings.idempotency_ttl_seconds)
        deps = IntakeDeps(settings=settings, store=store, intake=AlertIntake(store=store, enqueue=enqueue, keys=keys),
                          auth=Authenticator(settings), readiness=lambda: {"redis": "ok", "broker": "ok"},
                          history=history)
        app = intake_app_from_deps(deps)
    client = TestClient(app, base_url=BASE)
    return ConsoleUnderTest(client, store, history, archive, settings, fake, enqueued, clock)
