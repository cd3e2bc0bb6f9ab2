"""The intake's ASGI middleware: plain ASGI (`__call__(scope, receive, send)`), not Starlette's
BaseHTTPMiddleware, which runs every request through a task group and memory streams of its own."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def _path(scope: Scope) -> str:
    """The path as Starlette's `request.url.path` spells it (the characters a URL could not hold escaped)."""
    path: str = scope["path"]
    return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
