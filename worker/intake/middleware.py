"""The intake's ASGI middleware: plain ASGI (`__call__(scope, receive, send)`), not Starlette's
BaseHTTPMiddleware, which runs every request through a task group and memory streams of its own."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.intake.http import error_response
from worker.intake.loopback import is_loopback_authority, is_loopback_origin

# The app's logger, as before: a deployment filtering on `worker.intake.app` still sees the request lines.
log = logging.getLogger("worker.intake.app")


class RequestLog:
    """One log line per HTTP request: method, path, status and time taken, once the response is sent.

    Never the query string: a Splunk `?token=` must never reach a log. A request whose handling raised (Starlette
    then answers 500) is logged as 500 before the error goes on to the server-error handler."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            log.info("%s %s %d %.1f ms", scope["method"], _path(scope), status, (time.monotonic() - started) * 1000)


class LoopbackOnly:
    """`--insecure-dev`'s guard: only requests addressed to this machine, from no page but this machine's.

    The mode checks no credentials, so whoever reaches the port may post alerts and approve jobs. Binding to
    loopback keeps other machines out, but not a web page the operator visits: by DNS rebinding its own name comes
    to resolve to 127.0.0.1, and the browser then sends the page's requests here with that name in `Host`. So a
    `Host` that is not a loopback name is refused (421), and so is an `Origin` that is not a loopback origin
    (403: a page elsewhere, or `null`); a request without `Origin` (curl, a script, a server) is let through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = _refusal(Headers(scope=scope))
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accepting: the server answers 403
        else:
            status, code, message = refusal
            log.warning("--insecure-dev refused a request: %s", message)
            await error_response(status, code, message)(scope, receive, send)


def _refusal(headers: Headers) -> tuple[int, str, str] | None:
    """Why a request may not reach the insecure intake (status, code, message), or None when it may."""
    host = headers.get("host", "")
    if not is_loopback_authority(host):
        return 421, "misdirected_request", (f"--insecure-dev answers only requests addressed to localhost, "
                                            f"127.0.0.1 or [::1], not {host[:100]!r}")
    origin = headers.get("origin")
    if origin is not None and not is_loopback_origin(origin):
        return 403, "forbidden_origin", (f"--insecure-dev answers no web page but one served from this machine, "
                                         f"not {origin[:100]!r}")
    return None


def _path(scope: Scope) -> str:
    """The path as Starlette's `request.url.path` spells it (the characters a URL could not hold escaped)."""
    path: str = scope["path"]
    return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
