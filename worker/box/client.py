"""The Box API client: session termination and the lookups that resolve targets, rate-limited and retried.

Every HTTP request goes through the shared rate limiter, carries a bearer token, has connect and read
timeouts, and goes to the base URL from settings only (redirects are not followed, so no answer can send the
token elsewhere).

Attempts: an attempt is one HTTP request sent to Box, whether Box answered it (any status, a 401 included) or
failed to answer it (timeout, connection error). A 401 is followed at once by one retry with a fresh token, and
that retry is an attempt too, so the cap on calls per batch bounds exactly the requests Box saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from tenacity import Retrying
from tenacity.stop import stop_after_attempt
from tenacity.wait import wait_base

from config.settings import Settings
from worker import metrics
from worker.box.answers import (
    EVENTS_ENDPOINT,
    GROUPS_TERMINATE_ENDPOINT,
    USERS_TERMINATE_ENDPOINT,
    BoxGroup,
    BoxUser,
    CallResult,
    EventPage,
)
from worker.box.auth import TokenSource
from worker.box.rate_limit import RateLimiter
from worker.box.retry import (
    LOOKUP_BACKOFF,
    PAUSE_WITHOUT_RETRY_AFTER_SECONDS,
    TERMINATE_BACKOFF,
    box_retrying,
    parse_retry_after,
    stop_when,
)
from worker.errors import (
    BatchRetryLater,
    BoxAnswerMismatch,
    BoxAPIError,
    BoxError,
    BoxPermanentError,
    BoxRateLimited,
    BoxRetryableError,
    BoxTransportError,
    BoxUnauthorized,
    RateLimitedLater,
    RetryLater,
    TokenRefreshed,
    UnsafeRequest,
)
from worker.identity import box_id_problem, login_key

log = logging.getLogger(__name__)

USER_FIELDS = "id,login,name,role,status"
PAGE_LIMIT = 1000
# A collection longer than this many pages is a Box fault (e.g. a marker that repeats), not data.
MAX_PAGES = 500
# The whole directory: up to a million users.
MAX_DIRECTORY_PAGES = 1000
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# requests raises these when Box did not answer (or the answer broke off): worth retrying.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass
class _Call:
    """One logical Box call and the HTTP requests sent for it in this run."""

    method: str
    path: str
    limit: int
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    sent: int = 0
    refreshed: bool = False
    before_send: Callable[[], object] | None = None  # runs before each request; if it raises, nothing is sent
    slot_taken: bool = False  # the first request's slot of the rate limit was taken with the call (send queue)


class BoxClient:
    """Box's session termination and lookup endpoints, behind the shared rate limit and the retry policy."""

    def __init__(
        self,
        *,
        session: requests.Session,
        settings: Settings,
        tokens: TokenSource,
        limiter: RateLimiter,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.settings = settings
        self.tokens = tokens
        self.limiter = limiter
        self._sleep = sleep
        self._clock = clock

    # -- session termination ------------------------------------------------------------------------------

    def terminate_users(self, user_ids: Sequence[str], *, prior_attempts: int = 0,
                        before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        """End the sessions of these users; `prior_attempts` are calls for this batch in earlier runs;
        `before_send` runs before each request (the sender writes the attempt down first); `slot_taken`: the
        first request's slot of the rate limit is already spent (the send queue took it with the call).

        A 429 is not waited out here: every worker pauses, and `BatchRetryLater(rate_limited=True)` hands the
        batch back to the send queue, whose next call after the pause carries it with what gathered meanwhile."""
        # The spec marks both arrays required, so an empty `user_logins` is sent too.
        body = {"user_ids": [str(i) for i in user_ids], "user_logins": []}
        return self._terminate(_Call("POST", USERS_TERMINATE_ENDPOINT, limit=0, body=body, before_send=before_send,
                                     slot_taken=slot_taken), prior_attempts)

    def terminate_groups(self, group_ids: Sequence[str], *, prior_attempts: int = 0,
                         before_send: Callable[[], object] | None = None, slot_taken: bool = False) -> CallResult:
        """End the sessions of these groups' members; the arguments and the 429 as for `terminate_users`."""
        body = {"group_ids": [str(i) for i in group_ids]}
        return self._terminate(_Call("POST", GROUPS_TERMINATE_ENDPOINT, limit=0, body=body, before_send=before_send,
                                     slot_taken=slot_taken), prior_attempts)

    def _terminate(self, call: _Call, prior_attempts: int) -> CallResult:
        started = self._now_iso()
        endpoint = call.path
        call.limit = self.settings.max_calls_per_batch - prior_attempts
        if call.limit <= 0:
            return self._result(call, started, prior_attempts, exhausted=True, message="call cap already reached")
        try:
            response = self._retrying(call, TERMINATE_BACKOFF, defer_429=True)(self._attempt, call)
        except RetryLater as wait:
            raise BatchRetryLater(wait.delay, wait.reason, attempts=call.sent,
                                  rate_limited=isinstance(wait, RateLimitedLater)) from wait
        except BoxPermanentError as error:
            return self._result(call, started, prior_attempts, error=error)
        except BoxRateLimited as error:  # a 429 on the round's last request: handed back like any other 429
            delay = error.retry_after if error.retry_after is not None else PAUSE_WITHOUT_RETRY_AFTER_SECONDS
            raise BatchRetryLater(delay, f"Box answered 429 (rate limit): every call waits {delay:.1f} s",
                                  attempts=call.sent, rate_limited=True) from error
        except (BoxRetryableError, BoxTransportError) as error:
            return self._result(call, started, prior_attempts, error=error, exhausted=True)
        answer = _json_or_none(response)
        message = answer.get("message") if isinstance(answer, dict) else None
        return CallResult(
            endpoint=endpoint, http_status=response.status_code, message=message, error_code=None,
            request_id=response.headers.get("box-request-id"), attempts=prior_attempts + call.sent,
            started_at=started, finished_at=self._now_iso(),
        )

    def _result(
        self, call: _Call, started: str, prior_attempts: int, *, error: BoxError | None = None,
        exhausted: bool = False, message: str | None = None,
    ) -> CallResult:
        """The CallResult for a call that did not end in a 2xx: what Box last said, or that it said nothing."""
        api_error = error if isinstance(error, BoxAPIError) else None
        return CallResult(
            endpoint=call.path,
            http_status=api_error.status if api_error else None,
            message=api_error.message if api_error else (str(error) if error else message),
            error_code=api_error.code if api_error else None,
            request_id=api_error.request_id if api_error else None,
            attempts=prior_attempts + call.sent,
            started_at=started,
            finished_at=self._now_iso(),
            exhausted=exhausted,
        )

    # -- lookups ------------------------------------------------------------------------------------------

    def find_users_by_login(self, login: str) -> list[BoxUser]:
        """Users whose login is exactly `login`, ignoring case: none, one, or several (ambiguous)."""
        wanted = login_key(login)
        if not wanted:
            return []  # an empty filter_term would list every user in the enterprise
        params = {"filter_term": login.strip(), "user_type": "all", "limit": PAGE_LIMIT, "fields": USER_FIELDS}
        found: dict[str, BoxUser] = {}
        for page in self._pages("/users", params):
            for entry in _entries(page):
                # login_key, never casefold(): casefold makes "straße" equal "strasse", two people.
                if login_key(str(entry.get("login", ""))) == wanted:
                    user = _user(entry)
                    found[user.id] = user
        return list(found.values())

    def get_user(self, user_id: str) -> BoxUser | None:
        """The user with this id, or None when Box has none (404). UnsafeRequest, before anything is sent, when
        `user_id` is not a Box id; BoxAnswerMismatch when Box answers about another user (or names none)."""
        path = _path("users", _box_id(user_id))
        try:
            entry = self._get(path, {"fields": USER_FIELDS})
        except BoxPermanentError as error:
            if error.status == 404:
                return None
            raise
        return _user(_answer_for(path, user_id, entry))

    def find_groups_by_name(self, name: str) -> list[BoxGroup]:
        """Groups named exactly `name`, ignoring case: none, one, or several (ambiguous)."""
        wanted = login_key(name)
        if not wanted:
            return []  # an empty filter_term would list every group
        found: dict[str, BoxGroup] = {}
        for page in self._pages("/groups", {"filter_term": name.strip(), "limit": PAGE_LIMIT}):
            for entry in _entries(page):
                if login_key(str(entry.get("name", ""))) == wanted:
                    found[str(entry["id"])] = BoxGroup(id=str(entry["id"]), name=str(entry["name"]))
        return list(found.values())

    def current_user(self) -> BoxUser:
        """The user the access token acts as: for CCG and JWT apps, the app's service account."""
        return _user(self._get("/users/me", {"fields": USER_FIELDS}))

    def all_users(self) -> Iterator[BoxUser]:
        """Every user of the enterprise, 1,000 a page with markers (offsets stop at 10,000)."""
        params = {"usemarker": "true", "limit": PAGE_LIMIT, "user_type": "all", "fields": USER_FIELDS}
        for page in self._pages("/users", params, max_pages=MAX_DIRECTORY_PAGES):
            for entry in _entries(page):
                yield _user(entry)

    def count_users(self) -> int:
        """How many users the enterprise has (Box's `total_count`), in one call."""
        page = self._get("/users", {"limit": 1, "user_type": "all", "fields": "id"})
        return int(page.get("total_count", 0))

    def get_group(self, group_id: str) -> BoxGroup | None:
        """The group with this id, or None when Box has none (404); UnsafeRequest and BoxAnswerMismatch as for
        `get_user`."""
        path = _path("groups", _box_id(group_id))
        try:
            entry = self._get(path, None)
        except BoxPermanentError as error:
            if error.status == 404:
                return None
            raise
        entry = _answer_for(path, group_id, entry)
        return BoxGroup(id=str(entry["id"]), name=str(entry.get("name", "")))

    def group_members(self, group_id: str) -> tuple[int, list[BoxUser]]:
        """Box's `total_count` of the group's memberships, and every member (login and name; role unknown)."""
        total: int | None = None
        members: dict[str, BoxUser] = {}
        path = _path("groups", _box_id(group_id), "memberships")
        for page in self._pages(path, {"limit": PAGE_LIMIT}):
            total = int(page.get("total_count", 0)) if total is None else total
            for entry in _entries(page):
                user = entry.get("user")
                if isinstance(user, dict) and user.get("id") is not None:
                    members[str(user["id"])] = BoxUser(
                        id=str(user["id"]), login=str(user.get("login", "")), name=str(user.get("name", ""))
                    )
        return (total or 0), list(members.values())

    # -- the enterprise event stream ----------------------------------------------------------------------

    def admin_events(self, stream_position: str, *, limit: int) -> EventPage:
        """One page of the enterprise event stream (`admin_logs_streaming`) from `stream_position` (`now` for
        none and the latest position), under the shared rate limit and the retry policy like every call."""
        params = {"stream_type": "admin_logs_streaming", "stream_position": stream_position, "limit": limit}
        page = self._get(EVENTS_ENDPOINT, params)
        following = page.get("next_stream_position")
        return EventPage(entries=_entries(page), next_position=str(following) if following else stream_position)

    def _pages(self, path: str, params: dict[str, Any], *, max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
        """Every page of a Box collection: offset paging, or markers when Box answers with them."""
        for _ in range(max_pages):
            page = self._get(path, params)
            yield page
            following = _next_page_params(page, params)
            if following is None:
                return
            params = following
        raise BoxError(f"GET {path}: more than {max_pages} pages; stopped reading")

    def _get(self, path: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """A lookup's JSON object, retried by the policy; permanent failures raise the error classes."""
        call = _Call("GET", path, limit=self.settings.max_calls_per_batch, params=params)
        return self._retrying(call, LOOKUP_BACKOFF)(lambda: _json_object(call, self._attempt(call)))

    # -- one request --------------------------------------------------------------------------------------

    def _retrying(self, call: _Call, backoff: wait_base, *, defer_429: bool = False) -> Retrying:
        # A failed token fetch uses a tenacity attempt but sends nothing to Box, hence the second bound.
        stop = stop_when(lambda: call.sent >= call.limit) | stop_after_attempt(2 * max(call.limit, 1))
        return box_retrying(
            stop=stop, budget_seconds=self.settings.retry_budget_seconds, limiter=self.limiter,
            sleep=self._sleep, backoff=backoff, defer_429=defer_429,
        )

    def _attempt(self, call: _Call) -> requests.Response:
        """Send the call once; return a 2xx answer or raise the error class its status maps to."""
        token = self.tokens.get()
        response = self._send(call, token)
        status = response.status_code
        if status == 401:
            # Drop the refused token (only if still cached) so the next attempt gets a fresh one; twice is final.
            self.tokens.invalidate(token)
            error_class: type[BoxAPIError] = BoxUnauthorized if call.refreshed else TokenRefreshed
            call.refreshed = True
            raise self._error(call, response, error_class)
        if 200 <= status < 300:
            return response
        raise self._error(call, response, _error_class(status))

    def _send(self, call: _Call, token: str) -> requests.Response:
        if call.slot_taken:
            call.slot_taken = False  # the first request's slot only
        else:
            self.limiter.acquire(max_wait=self.settings.retry_budget_seconds)
        if call.before_send is not None:
            call.before_send()
        call.sent += 1
        if call.sent > 1:
            metrics.box_retry(call.path)
        try:
            response = self.session.request(
                call.method,
                self.settings.box_api_base_url + call.path,
                params=call.params,
                json=call.body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=(self.settings.http_connect_timeout, self.settings.http_read_timeout),
                allow_redirects=False,
            )
        except TRANSPORT_ERRORS as exc:
            metrics.box_call(call.path, None)
            log.warning("%s %s: no answer from Box (%s), attempt %d", call.method, call.path,
                        type(exc).__name__, call.sent)
            raise BoxTransportError(f"{call.method} {call.path}: no answer from Box ({type(exc).__name__})") from exc
        metrics.box_call(call.path, response.status_code)
        log.debug("%s %s answered %d, attempt %d", call.method, call.path, response.status_code, call.sent)
        return response

    def _error(self, call: _Call, response: requests.Response, error_class: type[BoxAPIError]) -> BoxAPIError:
        """The error for Box's answer, carrying its status, code, message and request id."""
        body = _json_or_none(response)
        fields = body if isinstance(body, dict) else {}
        message = fields.get("message") or (response.text.strip()[:200] if body is None else None) or None
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
        error = error_class(
            endpoint=call.path,
            status=response.status_code,
            code=_text_or_none(fields.get("code")),
            message=_text_or_none(message),
            request_id=_text_or_none(fields.get("request_id")) or response.headers.get("box-request-id"),
            retry_after=retry_after if response.status_code == 429 else None,
        )
        log.warning("%s %s: %s", call.method, call.path, error)
        return error

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_class(status: int) -> type[BoxAPIError]:
    if status == 429:
        return BoxRateLimited
    if status in RETRYABLE_STATUSES:
        return BoxRetryableError
    return BoxPermanentError


def _next_page_params(page: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The query for the page after `page`, or None when it was the last."""
    marker = page.get("next_marker")
    if marker:
        return {**params, "marker": marker}
    entries = _entries(page)
    if not entries or page.get("total_count") is None:
        return None
    offset = int(page.get("offset", params.get("offset", 0))) + len(entries)
    return {**params, "offset": offset} if offset < int(page["total_count"]) else None


def _entries(page: dict[str, Any]) -> list[dict[str, Any]]:
    entries = page.get("entries")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _user(entry: dict[str, Any]) -> BoxUser:
    return BoxUser(
        id=str(entry["id"]),
        login=str(entry.get("login") or ""),
        name=str(entry.get("name") or ""),
        role=str(entry["role"]) if entry.get("role") else None,
        status=str(entry.get("status") or "active"),
    )


# Path segments that URL normalisation (requests, proxies, Box's front end) collapses: `users/..` is `/`.
_DOT_SEGMENTS = frozenset({"", ".", ".."})


def _path(*segments: str) -> str:
    """A Box API path built from segments, each percent-encoded whole (`/`, `?`, `#`, `%` included), so no value
    can change the path, the query or the host; a segment that would still move the path raises UnsafeRequest."""
    for segment in segments:
        if segment in _DOT_SEGMENTS:
            raise UnsafeRequest(f"path segment {segment!r} would change the request's path; nothing was sent")
    return "".join("/" + quote(segment, safe="") for segment in segments)


def _box_id(value: str) -> str:
    """`value` when it is a Box id (digits); else UnsafeRequest, so `me`, `..` or `abc` never reach a path."""
    problem = box_id_problem(value)
    if problem is not None:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise UnsafeRequest(f"id {shown!r} {problem}; nothing was sent")
    return value


def _answer_for(path: str, asked: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Box's answer for the item `asked` for, or BoxAnswerMismatch when it names no id or another one: boxcut
    acts only on the identity it asked about."""
    answered = entry.get("id")
    if answered is None or str(answered) != asked:
        raise BoxAnswerMismatch(f"GET {path}: Box answered for id {answered!r}, not {asked!r}; not used")
    return entry


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_object(call: _Call, response: requests.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; an unreadable one is treated like no answer (and retried)."""
    body = _json_or_none(response)
    if not isinstance(body, dict):
        raise BoxTransportError(f"{call.method} {call.path}: answer {response.status_code} is not a JSON object")
    return body


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
