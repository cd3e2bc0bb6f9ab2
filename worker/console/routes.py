"""The console's pages and actions.

Pages (GET; a viewer sees them all): `now`, `now.json` (what the page polls), `jobs`, `jobs/{id}`,
`jobs/{id}/report.json`, `approvals`, `signin`. Actions (POST, approvers only, each form carrying the session's CSRF
token): approve and cancel a job, release the brake for a source, and sign out. An action calls what the operator
API calls (worker/jobs/actions.py) with the person as the actor (`console:<name>`), and answers 303 back to the
page it came from, with a one-line message saying what happened: the operator API's outcomes (no such job; a
state that does not allow it, its 409; the broker refusing the job, its 503, the action undone).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import redis
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from worker.archive import ArchiveError
from worker.console import auth, session
from worker.console.deps import PREFIX, ConsoleDeps
from worker.console.now import Now, NowReader
from worker.console.session import Person
from worker.errors import InvalidTransition, JobNotFound, NotEnqueued
from worker.jobs import actions as job_actions
from worker.jobs import evidence_signing
from worker.jobs.brake import Brake
from worker.jobs.history import Evidence
from worker.jobs.model import CANCELLABLE_STATES, Job, JobState
from worker.jobs.report import build_report

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 50
# The deepest page offset served: a listing merges Redis and the archive up to the offset, so a viewer asking for
# page 20,000 would have every summary read; past this, narrow by state or source.
MAX_CURSOR = 10_000
APPROVALS_SHOWN = 200
MAX_FORM_BYTES = 16 * 1024
JOB_FILTERS = [s.value for s in JobState] + ["dead", "active-after"]


class _SignInFirst(Exception):
    """Nobody is signed in (or the session ran out): a page goes to the sign-in page, `now.json` answers 401."""

    def __init__(self, *, json: bool) -> None:
        self.json = json


class _Refused(Exception):
    """A request the console answers with a page saying why (403 a forged or viewer's POST, 400, 404, 502)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        self.status, self.title, self.message = status, title, message


@dataclass
class _Console:
    deps: ConsoleDeps
    env: Environment
    now: NowReader
    brake: Brake
    oidc: Any
    sessions: session.Sessions
    key: str  # what operator tokens' fingerprints in sessions are made with
    clock: Callable[[], float] = time.time

    @property
    def settings(self) -> Any:
        return self.deps.settings

    # -- who asks --------------------------------------------------------------------------------------------

    @property
    def lifetime(self) -> float:
        return float(self.settings.console_session_minutes * 60)

    def person(self, request: Request) -> Person | None:
        return session.person(request, lifetime_seconds=self.lifetime, sessions=self.sessions,
                              role_now=self.role_now, now=self.clock())

    def role_now(self, who: Person) -> str | None:
        """The role the settings in force give whoever a session names (None: none any more)."""
        settings = self.settings
        if who.via == "token":
            return session.APPROVER if auth.token_still_valid(who.proof, settings, self.key) else None
        return auth.role_for(who.values, approvers=settings.console_approvers, viewers=settings.console_viewers)

    def viewer(self, request: Request, *, json: bool = False) -> Person:
        found = self.person(request)
        if found is None:
            raise _SignInFirst(json=json)
        return found

    def own_origin(self, request: Request) -> str:
        if self.settings.public_url:
            parts = urlsplit(self.settings.public_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"{request.url.scheme}://{request.url.netloc}"

    async def form(self, request: Request) -> dict[str, str]:
        """A POST's form, after its origin and CSRF token are checked (403 otherwise: nothing is done)."""
        if not session.origin_ok(request, self.own_origin(request)):
            log.warning("console: refused a POST to %s from another origin", request.url.path)
            raise _Refused(403, "Refused", "This request came from another site. Nothing was changed.")
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise _Refused(413, "Too large", "The form is larger than the console accepts.")
        if kind != "application/x-www-form-urlencoded":
            raise _Refused(403, "Refused", "This request did not come from a console form. Nothing was changed.")
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if not session.csrf_ok(request, fields.get(session.CSRF_FIELD)):
            log.warning("console: refused a POST to %s without a valid CSRF token", request.url.path)
            raise _Refused(403, "Refused", "This form has expired or did not come from the console (its CSRF token "
                                           "is missing or wrong). Nothing was changed: reload the page and try again.")
        return fields

    async def approver(self, request: Request) -> tuple[Person, dict[str, str]]:
        """An action's person (an approver) and its form; 403 for a viewer."""
        fields = await self.form(request)
        who = self.viewer(request)
        if not who.may_act:
            log.warning("console: refused %s to %s (a viewer)", request.url.path, who.actor)
            raise _Refused(403, "Not allowed", f"{who.name} is a viewer: viewers see the console and change "
                                               "nothing. Nothing was changed.")
        return who, fields

    # -- pages -----------------------------------------------------------------------------------------------

    def page(self, request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        who = self.person(request)
        html = self.env.get_template(template).render(
            person=who, csrf=session.csrf_token(request), flash=session.take_flash(request), prefix=PREFIX,
            path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def back(self, fields: dict[str, str], default: str) -> str:
        """Where an action returns: the form's `back` when it is a console page, else `default`."""
        target = fields.get("back", "")
        if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target \
                and urlsplit(target).netloc == "" and urlsplit(target).scheme == "":
            return target
        return default


def add_routes(app: FastAPI, deps: ConsoleDeps, *, clock: Callable[[], float] = time.time) -> None:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ago"] = _ago
    env.globals["chart_model"] = chart_model
    env.globals["brake_limits"] = brake_limits
    console = _Console(deps=deps, env=env, now=NowReader(deps.settings, deps.store, deps.history, clock=clock),
                       brake=Brake.from_settings(deps.store.redis, deps.settings), oidc=auth.oidc_client(deps.settings),
                       sessions=session.Sessions(deps.store.redis, key_prefix=deps.store.prefix),
                       key=_fingerprint_key(deps.settings), clock=clock)
    _add_errors(app, console)
    _add_signin(app, console)
    _add_pages(app, console)
    _add_actions(app, console)


# -- errors --------------------------------------------------------------------------------------------------


def _add_errors(app: FastAPI, console: _Console) -> None:
    @app.exception_handler(_SignInFirst)
    async def sign_in_first(request: Request, exc: _SignInFirst) -> Response:
        if exc.json:
            return JSONResponse({"error": {"code": "unauthorized", "message": "sign in to the console"}},
                                status_code=401)
        return RedirectResponse(f"{PREFIX}/signin?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        return console.page(request, "error.html", status=exc.status, title=exc.title, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "There is no such page in the console." if exc.status_code == 404 else str(exc.detail)
        return console.page(request, "error.html", status=exc.status_code, title=f"{exc.status_code}",
                            message=message)

    @app.exception_handler(redis.RedisError)
    async def store_down(request: Request, exc: redis.RedisError) -> Response:
        log.warning("console: Redis refused a request: %s", type(exc).__name__)
        return HTMLResponse(console.env.get_template("error.html").render(
            person=None, csrf="", flash=None, prefix=PREFIX, path=request.url.path, title="Redis is unavailable",
            message=f"boxcut cannot read or store anything now (Redis: {type(exc).__name__}); nothing was changed. "
                    "Try again shortly."), status_code=503)

    @app.exception_handler(ArchiveError)
    async def archive_down(request: Request, exc: ArchiveError) -> Response:
        return console.page(request, "error.html", status=503, title="The archive is unavailable",
                            message=f"The archive cannot be read now: {exc}")


# -- sign-in -------------------------------------------------------------------------------------------------


def _add_signin(app: FastAPI, console: _Console) -> None:
    settings = console.settings

    @app.get("/signin", include_in_schema=False)
    def signin(request: Request, next: str = "") -> Response:
        if console.person(request) is not None:
            return RedirectResponse(console.back({"back": next}, f"{PREFIX}/now"), status_code=303)
        if next:
            request.session["next"] = console.back({"back": next}, f"{PREFIX}/now")
        return console.page(request, "signin.html", oidc=console.oidc is not None,
                            token_signin=settings.console_token_signin and bool(settings.operator_tokens),
                            error=None)

    @app.post("/signin/token", include_in_schema=False)
    async def token_signin(request: Request) -> Response:
        if not (settings.console_token_signin and settings.operator_tokens):
            raise _Refused(404, "Not offered", "Token sign-in is turned off (BOXCUT_CONSOLE_TOKEN_SIGNIN).")
        fields = await console.form(request)
        token = fields.get("token", "").strip()
        name = auth.token_name(token, settings)
        if name is None:
            log.warning("console: a token sign-in was refused (not an operator token)")
            return console.page(request, "signin.html", status=401, oidc=console.oidc is not None,
                                token_signin=True, error="That is not an operator token.")
        return _signed_in(console, request, Person(auth.clean_name(name), session.APPROVER, "token", console.clock(),
                                                   ident=auth.clean_name(name),
                                                   proof=auth.token_fingerprint(token, console.key)))

    @app.get("/auth/login", include_in_schema=False)
    async def oidc_login(request: Request) -> Response:
        if console.oidc is None:
            raise _Refused(404, "Not offered", "No OpenID Connect provider is configured (BOXCUT_OIDC_ISSUER).")
        redirect_uri = (f"{settings.public_url}{PREFIX}/auth/callback" if settings.public_url
                        else f"{request.url.scheme}://{request.url.netloc}{PREFIX}/auth/callback")
        for stale in [key for key in request.session if key.startswith("_state_oidc_")]:
            del request.session[stale]  # only the latest sign-in of a browser completes; the cookie stays small
        try:
            response: Response = await console.oidc.authorize_redirect(request, redirect_uri)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("console: the OpenID Connect provider's metadata could not be read: %s", exc)
            raise _Refused(502, "Sign-in unavailable", "The organisation's sign-in provider did not answer. Try "
                                                       "again shortly, or sign in with an operator token.") from None
        return response

    @app.get("/auth/callback", include_in_schema=False)
    async def oidc_callback(request: Request) -> Response:
        from authlib.common.errors import AuthlibBaseError
        from authlib.integrations.base_client import OAuthError
        from joserfc.errors import JoseError

        if console.oidc is None:
            raise _Refused(404, "Not offered", "No OpenID Connect provider is configured (BOXCUT_OIDC_ISSUER).")
        try:
            token = await console.oidc.authorize_access_token(request)
            claims = dict(token.get("userinfo") or {})
            if not claims:
                raise OAuthError(error="no_id_token", description="the provider sent no ID token")
            values = auth.claim_values(claims, settings.oidc_roles_claim)
            if not values and settings.oidc_roles_claim.split(".")[0] not in claims:
                values = auth.claim_values(dict(await console.oidc.userinfo(token=token)), settings.oidc_roles_claim)
        except (OAuthError, AuthlibBaseError, JoseError) as exc:  # an ID token refused: signature, nonce, expiry
            exc = exc if isinstance(exc, OAuthError) else OAuthError(error="invalid_id_token",
                                                                     description=type(exc).__name__)
            log.warning("console: an OpenID Connect sign-in failed: %s", exc.error)
            raise _Refused(400, "Sign-in failed", f"The sign-in did not complete ({exc.error}"
                                                  f"{': ' + exc.description if exc.description else ''}). "
                                                  "Start again from the sign-in page.") from None
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("console: the OpenID Connect provider failed: %s", type(exc).__name__)
            raise _Refused(502, "Sign-in failed", "The organisation's sign-in provider did not answer as expected. "
                                                  "Start again from the sign-in page.") from None
        name = auth.display_name(claims) or "unnamed"
        role = auth.role_for(values, approvers=settings.console_approvers, viewers=settings.console_viewers)
        if role is None:
            log.warning("console: %s signed in but holds no console role (%s)", name, settings.oidc_roles_claim)
            session.sign_out(request, sessions=console.sessions)
            raise _Refused(403, "No access", f"You signed in as {name}, but your {settings.oidc_roles_claim} give "
                                             "you no role in the boxcut console (neither an approver's nor a "
                                             "viewer's). Ask whoever runs boxcut to add you.")
        return _signed_in(console, request, Person(name, role, "oidc", console.clock(), ident=auth.oidc_ident(claims),
                                                   values=tuple(sorted(values))))

    @app.post("/signout", include_in_schema=False)
    async def signout(request: Request) -> Response:
        await console.form(request)
        who = console.person(request)
        session.sign_out(request, sessions=console.sessions)
        if who is not None:
            log.info("console: %s signed out", who.actor)
        session.flash(request, "ok", "Signed out.")
        return RedirectResponse(f"{PREFIX}/signin", status_code=303)


def _fingerprint_key(settings: Any) -> str:
    secret = settings.console_session_secret
    return secret.reveal() if secret is not None else secrets.token_urlsafe(32)


def _signed_in(console: _Console, request: Request, who: Person) -> Response:
    target = request.session.get("next")
    who = session.sign_in(request, who, sessions=console.sessions, lifetime_seconds=console.lifetime)
    log.info("console: %s signed in (%s, %s)", who.actor, who.role, who.via)
    session.flash(request, "ok", f"Signed in as {who.name} ({who.role}).")
    if not isinstance(target, str) or not target.startswith(f"{PREFIX}/") or target.startswith(f"{PREFIX}/signin"):
        target = f"{PREFIX}/now"
    return RedirectResponse(target, status_code=303)


# -- pages ---------------------------------------------------------------------------------------------------


def _add_pages(app: FastAPI, console: _Console) -> None:
    deps = console.deps

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(f"{PREFIX}/now", status_code=303)

    @app.get("/now", include_in_schema=False)
    def now_page(request: Request) -> Response:
        console.viewer(request)
        snapshot = console.now.read()
        return console.page(request, "now.html", now=snapshot, tiles=tiles(snapshot))

    @app.get("/now.json", include_in_schema=False)
    def now_json(request: Request) -> Response:
        console.viewer(request, json=True)
        snapshot = console.now.read()
        return JSONResponse({**snapshot.to_dict(), "tiles": tiles(snapshot)})

    @app.get("/jobs", include_in_schema=False)
    def jobs_page(request: Request, state: str = "", source: str = "", cursor: str = "") -> Response:
        console.viewer(request)
        if state and state not in JOB_FILTERS:
            raise _Refused(400, "Unknown state", f"There is no job state {state[:64]!r}.")
        if len(source) > 64 or (cursor and (not cursor.isdigit() or int(cursor) > MAX_CURSOR)):
            raise _Refused(400, "Bad filter", "The source or the page asked for is not one the console knows.")
        rows, following = deps.history.list_jobs(state=state or None, source=source.strip() or None,
                                                 limit=PAGE_SIZE, cursor=int(cursor or 0))
        return console.page(request, "jobs.html", rows=rows, following=following, state=state, source=source,
                            states=JOB_FILTERS, cursor=int(cursor or 0))

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(request: Request, job_id: str) -> Response:
        console.viewer(request)
        evidence = _evidence(console, job_id)
        return console.page(request, "job.html", job=evidence.job, stored=evidence.stored,
                            audit=[_audit_line(e) for e in evidence.audit], targets=_target_rows(evidence.job),
                            calls=evidence.job.calls, sent=evidence.requests_sent,
                            report=_report_check(console, job_id), cancellable=evidence.job.state in CANCELLABLE_STATES)

    @app.get("/jobs/{job_id}/report.json", include_in_schema=False)
    def job_report(request: Request, job_id: str) -> Response:
        console.viewer(request)
        text = _signed_report(console, job_id)
        return Response(text, media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{job_id}-report.json"'})

    @app.get("/approvals", include_in_schema=False)
    def approvals_page(request: Request) -> Response:
        console.viewer(request)
        rows, _ = deps.history.list_jobs(state=JobState.AWAITING_APPROVAL.value, limit=APPROVALS_SHOWN)
        waiting = []
        for row in rows:
            try:
                job = deps.store.load(row.summary.job_id)
            except JobNotFound:
                continue
            if job.state is JobState.AWAITING_APPROVAL:
                waiting.append({"job": job, "reasons": approval_reasons(job)})
        brake = job_actions.brake_status(store=deps.store, brake=console.brake, now_ms=int(console.clock() * 1000))
        return console.page(request, "approvals.html", waiting=waiting, brake=brake)


def _evidence(console: _Console, job_id: str) -> Evidence:
    if not console.deps.store.is_job_id(job_id):
        raise _Refused(404, "No such job", f"There is no job {job_id[:40]!r}.")
    try:
        return console.deps.history.evidence(job_id)
    except JobNotFound:
        raise _Refused(404, "No such job", f"There is no job {job_id}.") from None


def _signed_report(console: _Console, job_id: str) -> str:
    """The evidence report as `GET /v1/jobs/{id}/report` serves it: signed with the configured key."""
    if not console.deps.store.is_job_id(job_id):
        raise _Refused(404, "No such job", f"There is no job {job_id[:40]!r}.")
    try:
        built = build_report(console.deps.history, job_id)
    except JobNotFound:
        raise _Refused(404, "No such job", f"There is no job {job_id}.") from None
    document = evidence_signing.sign(built, evidence_signing.configured_key(console.settings))
    return evidence_signing.render(document)


def _report_check(console: _Console, job_id: str) -> dict[str, Any]:
    """Whether the report the download serves verifies against the configured key's public half."""
    key = evidence_signing.configured_key(console.settings)
    if key is None:
        return {"signed": False, "verified": False, "key_id": None,
                "message": "unsigned: no BOXCUT_REPORT_SIGNING_KEY is set"}
    public = evidence_signing.public_half(key)
    assert public is not None
    try:
        checked = evidence_signing.verify(_signed_report(console, job_id).encode(), trusted=public)
    except evidence_signing.ReportRejected as rejected:
        return {"signed": True, "verified": False, "key_id": evidence_signing.key_id(public), "message": str(rejected)}
    return {"signed": True, "verified": True, "key_id": checked.key_id,
            "message": f"verifies against the configured key {checked.key_id}"}


# -- actions -------------------------------------------------------------------------------------------------


def _add_actions(app: FastAPI, console: _Console) -> None:
    deps = console.deps

    @app.post("/jobs/{job_id}/approve", include_in_schema=False)
    async def approve(request: Request, job_id: str) -> Response:
        who, fields = await console.approver(request)
        with _outcome(request, job_id, "not_awaiting_approval", "only a job in awaiting_approval can be approved"):
            await run_in_threadpool(job_actions.approve, store=deps.store, enqueue=deps.enqueue, job_id=job_id,
                                    actor=who.actor)
            log.info("console: %s approved job %s", who.actor, job_id)
            session.flash(request, "ok", f"Approved {job_id}: it runs now.")
        return RedirectResponse(console.back(fields, f"{PREFIX}/jobs/{job_id}"), status_code=303)

    @app.post("/jobs/{job_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, job_id: str) -> Response:
        who, fields = await console.approver(request)
        with _outcome(request, job_id, "not_cancellable", "a job can be cancelled until it is settled"):
            await run_in_threadpool(job_actions.cancel, store=deps.store, job_id=job_id, actor=who.actor)
            log.info("console: %s cancelled job %s", who.actor, job_id)
            session.flash(request, "ok", f"Cancelled {job_id}: its targets still waiting are never sent.")
        return RedirectResponse(console.back(fields, f"{PREFIX}/jobs/{job_id}"), status_code=303)

    @app.post("/brake/release", include_in_schema=False)
    async def release(request: Request) -> Response:
        who, fields = await console.approver(request)
        source = fields.get("source", "").strip()
        back = console.back(fields, f"{PREFIX}/approvals")
        if not source or len(source) > 512:
            session.flash(request, "error", "Name the source to release (or * for every source).")
            return RedirectResponse(back, status_code=303)
        try:
            done = await run_in_threadpool(job_actions.release_brake, store=deps.store, brake=console.brake,
                                           enqueue=deps.enqueue, source=source, actor=who.actor)
        except InvalidTransition as exc:
            session.flash(request, "error", f"Not released (invalid_source): {exc}")
        except NotEnqueued as exc:
            session.flash(request, "error", f"Released, but a held job could not be handed to the workers "
                                            f"(unavailable): {exc.why}")
        else:
            skipped = f", {len(done.skipped)} moved on meanwhile" if done.skipped else ""
            session.flash(request, "ok", f"Released the brake for {done.source} until {done.until}: "
                                         f"{len(done.approved)} held jobs approved{skipped}.")
            log.info("console: %s released the brake for %s", who.actor, done.source)
        return RedirectResponse(back, status_code=303)


@contextmanager
def _outcome(request: Request, job_id: str, code: str, rule: str) -> Iterator[None]:
    """An action's failure as the operator API words it, said in the next page's message."""
    try:
        yield
    except JobNotFound:
        session.flash(request, "error", f"Nothing done (not_found): there is no job {job_id}.")
    except InvalidTransition as exc:
        session.flash(request, "error", f"Nothing done ({code}): {exc}; {rule}.")
    except NotEnqueued as exc:
        session.flash(request, "error", f"Not done (unavailable): job {exc.why}; the action was undone, try again "
                                        "shortly.")


# -- what pages show -----------------------------------------------------------------------------------------


def approval_reasons(job: Job) -> list[str]:
    """Why a job waits for a person: its approval's reasons (blast radius, admins, a Shield rule) and the brake."""
    reasons = list(job.approval.reasons) if job.approval else []
    if job.brake:
        hold = job.brake
        reasons.append(f"held by the brake: source {hold.get('source')} reached {hold.get('count')} users of "
                       f"{hold.get('limit')} within {hold.get('window_seconds')} s ({hold.get('scope')})")
    if not reasons and job.note:
        reasons.append(job.note)
    return reasons


def _target_rows(job: Job) -> list[dict[str, Any]]:
    calls = {c.call_id: c for c in job.calls}
    rows = []
    for index, target in enumerate(job.targets):
        rode = [calls[c] for c in target.call_ids if c in calls]
        last = rode[-1] if rode else None
        rows.append({"index": index, "target": target, "named": _named(target.input),
                     "box_message": last.message if last else None, "call_ids": list(target.call_ids),
                     "activity": job.activity_after.get(index, [])})
    return rows


def _named(spec: dict[str, str]) -> str:
    return spec.get("login") or spec.get("name") or spec.get("id") or ", ".join(f"{k}={v}" for k, v in spec.items())


def _audit_line(entry: dict[str, Any]) -> dict[str, Any]:
    """One entry of the audit timeline: when, what, who, and a line saying it."""
    data = entry.get("data") or {}
    event = str(entry.get("event") or "")
    actor = data.get("actor")
    if event == "state":
        text = f"{data.get('from')} → {data.get('to')}" + (f": {data['note']}" if data.get("note") else "")
    elif event == "call":
        statuses: dict[str, int] = {}
        for t in data.get("targets") or []:
            if isinstance(t, dict):
                statuses[str(t.get("status"))] = statuses.get(str(t.get("status")), 0) + 1
        text = (f"call {data.get('call_id')} {data.get('endpoint')}: HTTP {data.get('http_status')}"
                + (f" {data['error_code']}" if data.get("error_code") else "")
                + f", {data.get('attempts')} attempts; targets " + ", ".join(f"{n} {s}" for s, n in statuses.items()))
    elif event == "waiting":
        text = f"waiting: {data.get('reason')}; next attempt {data.get('next_attempt_at')}"
    elif isinstance(data.get("targets"), list):
        text = ", ".join(f"#{t.get('index')} {t.get('status')}" + (f" ({t['detail']})" if t.get("detail") else "")
                         for t in data["targets"] if isinstance(t, dict))
    else:
        text = ", ".join(f"{k}: {v}" for k, v in data.items() if k != "actor" and not isinstance(v, dict | list))
    return {"id": entry.get("id"), "at": entry.get("at"), "event": event, "actor": actor, "text": text[:600]}


def tiles(now: Now) -> list[dict[str, Any]]:
    """The "now" page's tiles: label, value, a line of detail, and whether it calls for attention."""
    per_endpoint = " · ".join(f"{e.endpoint.strip('/').split('/')[0]} {e.in_flight}" for e in now.endpoints)
    waiting = " · ".join(f"{e.endpoint.strip('/').split('/')[0]} {e.waiting}" for e in now.endpoints)
    rate = now.rate
    out = now.waiting_out
    stream = now.event_stream
    engaged = now.engaged_sources
    if not stream.reading:
        stream_value, stream_detail = "off", "BOXCUT_EVENTS_POLL_SECONDS is 0"
    elif stream.age_seconds is None:
        stream_value, stream_detail = "never read", stream.problem or "no reader has read it yet"
    else:
        stream_value, stream_detail = f"read {_ago(stream.age_seconds)}", stream.problem or (stream.last_read_at or "")
    return [
        {"key": "in_flight", "label": "Calls in flight", "value": str(now.in_flight), "detail": per_endpoint,
         "alert": False},
        {"key": "waiting", "label": "Targets waiting", "value": str(now.waiting), "detail": waiting,
         "alert": now.waiting > 0 and now.pause_seconds > 0},
        {"key": "rate", "label": "Rate-limit budget", "value": f"{rate.calls_last_minute} / {rate.per_minute}",
         "detail": f"calls answered in the last minute; burst {rate.burst_used} of {rate.burst} in use",
         "alert": rate.burst_used * 2 >= rate.burst > 1},
        {"key": "pause", "label": "Box 429 pause",
         "value": f"paused, {now.pause_seconds:.0f} s left" if now.pause_seconds > 0 else "none",
         "detail": "Box answered 429: every worker waits" if now.pause_seconds > 0 else "Box takes calls",
         "alert": now.pause_seconds > 0},
        {"key": "waiting_out", "label": "Waiting out Box",
         "value": f"{out.jobs}{'+' if out.more else ''} jobs",
         "detail": "; ".join(f"{n} jobs: {r}" for r, n in out.reasons) or "no job waits out Box",
         "alert": out.jobs > 0},
        {"key": "approvals", "label": "Awaiting approval", "value": str(now.awaiting_approval),
         "detail": "jobs wait for a person" if now.awaiting_approval else "no job waits for a person",
         "alert": now.awaiting_approval > 0},
        {"key": "brake", "label": "Brake", "value": "engaged" if engaged else "clear",
         "detail": ", ".join(engaged) if engaged else "no source is held", "alert": bool(engaged)},
        {"key": "event_stream", "label": "Event stream", "value": stream_value, "detail": stream_detail,
         "alert": stream.behind},
        {"key": "workers", "label": "Live workers", "value": str(len(now.workers)),
         "detail": ", ".join(w.worker for w in now.workers[:4]) + (" …" if len(now.workers) > 4 else "")
         if now.workers else "no worker has a heartbeat", "alert": not now.workers},
    ]


def brake_limits(status: dict[str, Any]) -> str:
    """The brake's limits in a line."""
    limits = status["limits"]
    per_source, total = limits["users_per_source"], limits["total_users"]
    if not per_source and not total and not any(limits.get("source_overrides", {}).values()):
        return "The brake is off (BOXCUT_BRAKE_USERS and BOXCUT_BRAKE_TOTAL_USERS are 0)"
    return (f"{per_source or 'no limit of'} users per source, {total or 'no limit of'} users from all sources, within "
            f"{limits['window_seconds']} s")


CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BOTTOM = 720, 180, 16, 24


def chart_model(now: Now) -> dict[str, Any]:
    """The hour chart's geometry (the same as static/console.js draws): a bar per minute of targets accepted, a
    line of targets waiting, each on its own scale."""
    minutes = now.chart
    step = CHART_WIDTH / max(len(minutes), 1)
    plot = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    top_accepted = max([m.accepted for m in minutes] + [1])
    top_waiting = max([m.waiting or 0 for m in minutes] + [1])
    bars, points, dots = [], [], []
    for i, minute in enumerate(minutes):
        height = plot * minute.accepted / top_accepted
        bars.append({"x": round(i * step + 1, 1), "y": round(CHART_TOP + plot - height, 1),
                     "width": round(step - 2, 1), "height": round(height, 1),
                     "title": f"{minute.minute}: {minute.accepted} accepted"})
        if minute.waiting is not None:
            y = CHART_TOP + plot - plot * minute.waiting / top_waiting
            x = round(i * step + step / 2, 1)
            points.append(f"{x},{round(y, 1)}")
            dots.append({"x": x, "y": round(y, 1)})
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "bars": bars, "points": " ".join(points), "dots": dots,
            "top_accepted": top_accepted, "top_waiting": top_waiting, "baseline": CHART_HEIGHT - CHART_BOTTOM}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
