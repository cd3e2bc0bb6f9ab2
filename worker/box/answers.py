"""Plain records of what Box returns: users, groups, memberships and the outcome of one terminate call."""

from __future__ import annotations

from dataclasses import dataclass

# Box's exact answer text for a 202 from both terminate endpoints.
TERMINATE_ACCEPTED_MESSAGE = "Request is successful, please check the admin events for the status of the job"

USERS_TERMINATE_ENDPOINT = "/users/terminate_sessions"
GROUPS_TERMINATE_ENDPOINT = "/groups/terminate_sessions"


EVENTS_ENDPOINT = "/events"


@dataclass(frozen=True)
class EventPage:
    """One page of Box's enterprise event stream: its events as Box sent them, and where the next page starts."""

    entries: list[dict[str, object]]
    next_position: str


@dataclass(frozen=True)
class BoxUser:
    """A Box user as `GET /users` and `GET /users/{id}` describe it."""

    id: str
    login: str
    name: str = ""
    role: str | None = "user"  # None when Box did not say: the policy then treats the user as an admin
    status: str = "active"


@dataclass(frozen=True)
class BoxGroup:
    """A Box group, with its member count when known."""

    id: str
    name: str
    member_count: int | None = None


@dataclass(frozen=True)
class CallResult:
    """The final outcome of one terminate call after retries: what Box answered, or that it never did.

    `http_status` is None when no answer came (transport errors to the end). `exhausted` is True when the
    cap on calls per batch was reached while Box still answered a retryable status.
    """

    endpoint: str
    http_status: int | None
    message: str | None
    error_code: str | None
    request_id: str | None
    attempts: int
    started_at: str
    finished_at: str
    exhausted: bool = False

    @property
    def accepted(self) -> bool:
        """Box answered 202: it accepted the request and will terminate asynchronously."""
        return self.http_status == 202
