"""Unauthenticated /_boxsim endpoints that let tools in other processes inspect and steer a simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from boxsim.events import EventError
from boxsim.http_types import Reply, SimRequest
from boxsim.state import SimState

ADMIN_PREFIX = "/_boxsim"

AdminHandler = Callable[[SimState, SimRequest], Reply]


def _json_object(request: SimRequest) -> dict[str, Any]:
    """Decode an admin request body that must be a JSON object; ValueError otherwise."""
    try:
        body = json.loads(request.raw_body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def health(state: SimState, _request: SimRequest) -> Reply:
    """GET /_boxsim/health: the simulator is up, and where its endpoints are."""
    return Reply(200, {"status": "ok", "simulated": True, "base_url": state.base_url, "oauth_url": state.token_url})


def list_requests(state: SimState, request: SimRequest) -> Reply:
    """GET /_boxsim/requests[?path=...&method=...]: the request log, oldest first."""
    return Reply(200, state.log.entries(path=request.first("path"), method=request.first("method")))


def clear_requests(state: SimState, _request: SimRequest) -> Reply:
    """DELETE /_boxsim/requests: empty the request log."""
    state.log.clear()
    return Reply(200, {"cleared": True})


def list_faults(state: SimState, _request: SimRequest) -> Reply:
    """GET /_boxsim/faults: the rules still pending, with their remaining uses."""
    return Reply(200, {"faults": state.faults.pending()})


def add_faults(state: SimState, request: SimRequest) -> Reply:
    """POST /_boxsim/faults {"faults": [rule, ...]}: append rules to the queue."""
    rules = _json_object(request).get("faults")
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise ValueError('body must be {"faults": [rule, ...]}')
    return Reply(200, {"pending": state.faults.add(rules)})


def clear_faults(state: SimState, _request: SimRequest) -> Reply:
    """DELETE /_boxsim/faults: drop every pending rule."""
    return Reply(200, {"cleared": state.faults.clear()})


def expire_tokens(state: SimState, _request: SimRequest) -> Reply:
    """POST /_boxsim/tokens/expire: every issued token stops working now."""
    return Reply(200, {"expired": state.tokens.expire_all()})


def terminations(state: SimState, _request: SimRequest) -> Reply:
    """GET /_boxsim/terminations: accepted terminations counted per user id, login and group id."""
    recorded = state.terminations
    body = {"user_ids": recorded.user_ids(), "user_logins": recorded.user_logins(), "group_ids": recorded.group_ids()}
    return Reply(200, body)


def set_rate_limit(state: SimState, request: SimRequest) -> Reply:
    """POST /_boxsim/rate-limit {"per_minute": N}: change the per-token limit (0 = off)."""
    per_minute = _json_object(request).get("per_minute")
    if not isinstance(per_minute, int) or isinstance(per_minute, bool):
        raise ValueError('body must be {"per_minute": <integer>}')
    state.limiter.set_limit(per_minute)
    return Reply(200, {"per_minute": per_minute})


def add_events(state: SimState, request: SimRequest) -> Reply:
    """POST /_boxsim/events {"events": [event or shorthand, ...], "duplicate": false, "empty_page_before": false}:
    log enterprise events (boxsim.events.build_event); `duplicate` logs each twice, `empty_page_before` puts an
    empty page in the stream ahead of them."""
    body = _json_object(request)
    events = body.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError('body must be {"events": [event, ...]}')
    if body.get("empty_page_before"):
        state.events.add_empty_page()
    try:
        added = state.events.add(events, directory=state.directory, duplicate=bool(body.get("duplicate")))
    except EventError as bad:
        raise ValueError(str(bad)) from None
    return Reply(200, {"events": added})


def add_empty_page(state: SimState, _request: SimRequest) -> Reply:
    """POST /_boxsim/events/empty-page: the next read at this point of the stream gets an empty page."""
    state.events.add_empty_page()
    return Reply(200, {"empty_page": True})


def forget_events(state: SimState, _request: SimRequest) -> Reply:
    """POST /_boxsim/events/forget: drop every event so far, as Box drops events older than it keeps; a stream
    position from before is then refused."""
    return Reply(200, {"forgotten": state.events.forget()})


ADMIN_ROUTES: dict[tuple[str, str], AdminHandler] = {
    ("GET", "/health"): health,
    ("GET", "/requests"): list_requests,
    ("DELETE", "/requests"): clear_requests,
    ("GET", "/faults"): list_faults,
    ("POST", "/faults"): add_faults,
    ("DELETE", "/faults"): clear_faults,
    ("POST", "/tokens/expire"): expire_tokens,
    ("GET", "/terminations"): terminations,
    ("POST", "/rate-limit"): set_rate_limit,
    ("POST", "/events"): add_events,
    ("POST", "/events/empty-page"): add_empty_page,
    ("POST", "/events/forget"): forget_events,
}


def handle_admin(state: SimState, request: SimRequest) -> Reply:
    """Answer a /_boxsim request; 404 lists the admin endpoints, 400 explains a bad body."""
    handler = ADMIN_ROUTES.get((request.method, request.path[len(ADMIN_PREFIX) :].rstrip("/")))
    if handler is None:
        endpoints = [f"{method} {ADMIN_PREFIX}{path}" for method, path in ADMIN_ROUTES]
        return Reply(404, {"error": "unknown admin endpoint", "endpoints": endpoints})
    try:
        return handler(state, request)
    except ValueError as exc:
        return Reply(400, {"error": str(exc)})
