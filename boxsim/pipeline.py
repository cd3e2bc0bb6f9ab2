"""How one request is answered: admin or fault first, then token endpoint or authenticated API, then logged."""

from __future__ import annotations

import logging
import time
from typing import Any

from boxsim.admin import ADMIN_PREFIX, handle_admin
from boxsim.api import API_PREFIX, dispatch
from boxsim.errors import RATE_LIMIT_MESSAGE, ApiError, error_body
from boxsim.faults import FaultRule
from boxsim.http_types import Reply, SimRequest
from boxsim.oauth import handle_token_request
from boxsim.requestlog import flatten_query, loggable_body
from boxsim.state import SimState
from boxsim.tokens import token_id

logger = logging.getLogger("boxsim")

TOKEN_PATH = "/oauth2/token"
WWW_AUTHENTICATE = (
    'Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid."'
)


def process(state: SimState, request: SimRequest) -> Reply | None:
    """Answer a request; None means drop the connection without answering (a scripted fault)."""
    if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
        return handle_admin(state, request)  # tooling traffic: never faulted, never logged
    rule = state.faults.take(request.method, request.path)
    if rule is not None and rule.latency_ms:
        time.sleep(rule.latency_ms / 1000)
    if rule is not None and rule.drop:
        reply = None
    elif rule is not None and rule.status is not None:
        reply = fault_reply(rule, request)
    else:
        reply = answer(state, request)
    record(state, request, reply, faulted=rule is not None)
    return reply


def fault_reply(rule: FaultRule, request: SimRequest) -> Reply:
    """Build the answer a status fault scripts: its body, or what Box sends for that status."""
    headers = dict(rule.headers)
    body: Any = rule.body
    if body is None and rule.status == 401:
        headers.setdefault("www-authenticate", WWW_AUTHENTICATE)
    elif body is None and rule.status is not None and rule.status >= 400:
        body = error_body(rule.status, request_id=request.request_id)
    return Reply(rule.status or 500, body, headers)


def answer(state: SimState, request: SimRequest) -> Reply:
    """Serve a request normally, turning errors into Box error answers."""
    try:
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                raise ApiError(405, "Method Not Allowed", code="method_not_allowed")
            return handle_token_request(state, request)
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            return _authorized_api(state, request)
        raise ApiError(404, "Not Found", code="not_found")
    except ApiError as exc:
        return Reply(exc.status, exc.body(request.request_id), dict(exc.headers))
    except Exception:
        # A simulator bug must still answer, or the client would see a hang instead of an error.
        logger.exception("boxsim failed on %s %s", request.method, request.path)
        return Reply(500, error_body(500, request_id=request.request_id))


def bearer_token(request: SimRequest) -> str | None:
    """Return the bearer token from the Authorization header, if there is one."""
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _authorized_api(state: SimState, request: SimRequest) -> Reply:
    """Check the token and the rate limit, then hand the request to its endpoint."""
    token = bearer_token(request)
    if token is None or not state.tokens.is_valid(token):
        return Reply(401, None, {"www-authenticate": WWW_AUTHENTICATE})
    retry_after = state.limiter.admit(token_id(token))
    if retry_after is not None:
        raise ApiError(429, RATE_LIMIT_MESSAGE, code="rate_limit_exceeded", headers={"retry-after": str(retry_after)})
    return dispatch(state, request)


def record(state: SimState, request: SimRequest, reply: Reply | None, faulted: bool) -> None:
    """Add the request to the request log; secrets never reach it (token ids, redacted bodies)."""
    token = bearer_token(request)
    state.log.record(
        {
            "time": request.received_at,
            "method": request.method,
            "path": request.path,
            "query": flatten_query(request.query),
            "body": loggable_body(request),
            "status": reply.status if reply is not None else None,
            "token_id": token_id(token) if token else (reply.log_token_id if reply else None),
            "latency_ms": round((time.monotonic() - request.started) * 1000, 3),
            "request_id": request.request_id,
            "fault": faulted,
        }
    )
