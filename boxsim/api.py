"""The simulated Box API endpoints under /2.0 and the table that routes requests to them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from boxsim.directory import User
from boxsim.errors import ApiError, invalid_parameter
from boxsim.events import STREAMING, EventError
from boxsim.http_types import Reply, SimRequest
from boxsim.paging import marker_page, offset_page
from boxsim.representations import group_json, membership_json, user_json
from boxsim.state import SimState
from boxsim.validation import QueryValues, check_terminate_body, parse_json_body, parse_query

API_PREFIX = "/2.0"
DEFAULT_LIMIT = 100
TERMINATION_ACCEPTED = "Request is successful, please check the admin events for the status of the job"

Handler = Callable[[SimState, SimRequest, Mapping[str, str]], Reply]


def list_users(state: SimState, request: SimRequest, _params: Mapping[str, str]) -> Reply:
    """GET /users: prefix search on login or name, offset or marker paging, optional fields."""
    query = parse_query("get_users", request.query)
    users = state.directory.find_users(query.text("filter_term"), query.text("user_type"))
    fields = query.items("fields")
    limit = query.integer("limit", DEFAULT_LIMIT)
    if query.boolean("usemarker"):
        return Reply(200, marker_page(users, query.text("marker"), limit, lambda u: user_json(u, fields)))
    return Reply(200, offset_page(users, query.integer("offset", 0), limit, lambda u: user_json(u, fields)))


def get_user(state: SimState, request: SimRequest, params: Mapping[str, str]) -> Reply:
    """GET /users/{user_id}."""
    query = parse_query("get_users_id", request.query)
    user = state.directory.user(params["user_id"])
    if user is None:
        raise ApiError(404, "Not Found", code="not_found")
    return Reply(200, user_json(user, query.items("fields")))


def get_current_user(state: SimState, request: SimRequest, _params: Mapping[str, str]) -> Reply:
    """GET /users/me: the service account every token acts as (from the directory when seeded there)."""
    query = parse_query("get_users_me", request.query)
    config = state.config
    user = state.directory.user(config.service_account_id) or User(
        id=config.service_account_id, login=config.service_account_login, name="boxsim service account")
    return Reply(200, user_json(user, query.items("fields")))


def list_groups(state: SimState, request: SimRequest, _params: Mapping[str, str]) -> Reply:
    """GET /groups: prefix search on name, offset paging."""
    query = parse_query("get_groups", request.query)
    groups = state.directory.find_groups(query.text("filter_term"))
    fields = query.items("fields")
    page = offset_page(groups, query.integer("offset", 0), _limit(query), lambda g: group_json(g, fields))
    return Reply(200, page)


def get_group(state: SimState, request: SimRequest, params: Mapping[str, str]) -> Reply:
    """GET /groups/{group_id}."""
    query = parse_query("get_groups_id", request.query)
    group = state.directory.group(params["group_id"])
    if group is None:
        raise ApiError(404, "Not Found", code="not_found")
    return Reply(200, group_json(group, query.items("fields")))


def list_memberships(state: SimState, request: SimRequest, params: Mapping[str, str]) -> Reply:
    """GET /groups/{group_id}/memberships: offset paging over the group's members."""
    query = parse_query("get_groups_id_memberships", request.query)
    if state.directory.group(params["group_id"]) is None:
        raise ApiError(404, "Not Found", code="not_found")
    memberships = state.directory.memberships(params["group_id"])
    return Reply(200, offset_page(memberships, query.integer("offset", 0), _limit(query), membership_json))


def _limit(query: QueryValues) -> int:
    """Return the page size asked for, or Box's default."""
    return query.integer("limit", DEFAULT_LIMIT)


def terminate_users(state: SimState, request: SimRequest, _params: Mapping[str, str]) -> Reply:
    """POST /users/terminate_sessions: all named users must exist, else the whole batch is a 400."""
    lists = check_terminate_body("post_users_terminate_sessions", parse_json_body(request))
    user_ids, logins = lists["user_ids"], lists["user_logins"]
    resolved = {login: state.directory.users_with_login(login) for login in logins}
    problems = []
    if any(state.directory.user(uid) is None for uid in user_ids):
        problems.append(invalid_parameter("user_ids", "One or more user ids were not found"))
    if any(not users for users in resolved.values()):
        problems.append(invalid_parameter("user_logins", "One or more user logins were not found"))
    if problems:
        # Like a batch API, Box does not say which entries were wrong; callers split the batch to find out.
        raise ApiError(400, "User not found", code="bad_request", errors=problems)
    login_user_ids = [u.id for users in resolved.values() for u in users]
    state.terminations.record_users([*user_ids, *login_user_ids], logins)
    return Reply(202, {"message": TERMINATION_ACCEPTED})


def terminate_groups(state: SimState, request: SimRequest, _params: Mapping[str, str]) -> Reply:
    """POST /groups/terminate_sessions: all named groups must exist, else the whole batch is a 400."""
    group_ids = check_terminate_body("post_groups_terminate_sessions", parse_json_body(request))["group_ids"]
    if any(state.directory.group(gid) is None for gid in group_ids):
        problem = invalid_parameter("group_ids", "One or more group ids were not found")
        raise ApiError(400, "Group not found", code="bad_request", errors=[problem])
    state.terminations.record_groups(group_ids)
    return Reply(202, {"message": TERMINATION_ACCEPTED})


ENTERPRISE_STREAMS = ("admin_logs", STREAMING)
EVENTS_DEFAULT_LIMIT = 100


def list_events(state: SimState, request: SimRequest, _params: Mapping[str, str]) -> Reply:
    """GET /events for the enterprise streams: stream positions, `limit`, `event_type`, and `created_after` /
    `created_before` for `admin_logs` only (as Box documents); repeats and empty pages as the log holds them."""
    query = parse_query("get_events", request.query)
    stream_type = query.text("stream_type") or "all"
    if stream_type not in ENTERPRISE_STREAMS:
        raise ApiError(400, "Bad Request", code="bad_request", errors=[invalid_parameter(
            "stream_type", f"boxsim serves the enterprise streams only ({', '.join(ENTERPRISE_STREAMS)})")])
    try:
        page = state.events.page(query.text("stream_position"), limit=query.integer("limit", EVENTS_DEFAULT_LIMIT),
                                 stream_type=stream_type, event_types=query.items("event_type"),
                                 created_after=query.text("created_after"),
                                 created_before=query.text("created_before"))
    except EventError as bad:
        raise ApiError(400, "Bad Request", code="bad_request",
                       errors=[invalid_parameter("stream_position", str(bad))]) from None
    body = {"chunk_size": len(page.entries), "next_stream_position": page.next_position, "entries": page.entries}
    return Reply(200, body)


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path pattern (relative to /2.0) and handler."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, pattern: str, handler: Handler) -> Route:
    """Build a route whose pattern must match the whole path."""
    return Route(method, re.compile(pattern + r"\Z"), handler)


ROUTES: tuple[Route, ...] = (
    _route("POST", r"/users/terminate_sessions", terminate_users),
    _route("POST", r"/groups/terminate_sessions", terminate_groups),
    _route("GET", r"/users", list_users),
    _route("GET", r"/users/me", get_current_user),
    _route("GET", r"/users/(?P<user_id>[^/]+)", get_user),
    _route("GET", r"/groups", list_groups),
    _route("GET", r"/groups/(?P<group_id>[^/]+)", get_group),
    _route("GET", r"/groups/(?P<group_id>[^/]+)/memberships", list_memberships),
    _route("GET", r"/events", list_events),
)


def dispatch(state: SimState, request: SimRequest) -> Reply:
    """Route an authenticated /2.0 request to its endpoint; 405 for a known path, else 404."""
    relative = request.path[len(API_PREFIX) :]
    path_known = False
    for route in ROUTES:
        match = route.pattern.match(relative)
        if match is None:
            continue
        if route.method == request.method:
            return route.handler(state, request, match.groupdict())
        path_known = True
    if path_known:
        raise ApiError(405, "Method Not Allowed", code="method_not_allowed")
    raise ApiError(404, "Not Found", code="not_found")
