"""The console as an app of its own, mounted by the intake at `/console` (`add_console`): its session cookie,
its security headers and its error pages apply to it alone, and it is not in the operator API's OpenAPI
document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.console import session
from worker.console.deps import PREFIX, ConsoleDeps

STATIC = Path(__file__).parent / "static"

# Every console answer: no script or style but the console's own files, nothing framed, no referrer outside it,
# nothing cached (pages name people and jobs).
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeaders:
    """Sets SECURITY_HEADERS on every answer (pages, errors, redirects, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_console(deps: ConsoleDeps) -> FastAPI:
    """The console app (paths relative to where it is mounted)."""
    from starlette.middleware.sessions import SessionMiddleware  # itsdangerous: only when the console is on

    from worker.console.routes import add_routes  # Jinja2 and the routes' imports: only when the console is on

    settings = deps.settings
    console = FastAPI(title="boxcut console", docs_url=None, redoc_url=None, openapi_url=None, middleware=[
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=session.session_secret(settings), session_cookie=session.COOKIE,
                   max_age=settings.console_session_minutes * 60, path=session.PATH, same_site="lax",
                   https_only=session.secure_cookie(settings)),
    ])
    console.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_routes(console, deps, clock=deps.clock)
    return console


def add_console(app: FastAPI, deps: ConsoleDeps) -> None:
    """Serve the console under `/console` of the intake `app`."""
    app.mount(PREFIX, build_console(deps))

    @app.get(PREFIX, include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/now", status_code=303, headers=SECURITY_HEADERS)
