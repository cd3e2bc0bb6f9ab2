"""boxcut's error hierarchy, rooted at `BoxcutError`, and `RetryLater`, a control-flow signal."""

from __future__ import annotations


class BoxcutError(Exception):
    """Root of every error boxcut raises on purpose."""


class BoxError(BoxcutError):
    """Something went wrong talking to Box."""


class BoxTransportError(BoxError):
    """No answer from Box: a timeout, a refused or dropped connection. Worth retrying."""


class UnsafeRequest(BoxError):
    """A request boxcut refuses to send: a value (an id from an alert) would change its path. Nothing was sent."""


class BoxAnswerMismatch(BoxError):
    """Box answered about another item than the one asked for (or named none); the answer is not used."""


class BoxAuthError(BoxError):
    """Box refused to issue an access token (wrong credentials or app config). Not worth retrying."""


class BoxAPIError(BoxError):
    """Box answered with an error status; carries what Box said so it can be recorded."""

    def __init__(
        self,
        *,
        endpoint: str,
        status: int,
        code: str | None,
        message: str | None,
        request_id: str | None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{endpoint} answered {status} {code or ''}: {message or '(no message)'}"
                         f" [request_id={request_id}]")
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after


class BoxRetryableError(BoxAPIError):
    """A status Box may answer differently a moment later: 429, 500, 502, 503, 504."""


class BoxRateLimited(BoxRetryableError):
    """429: over Box's rate limit; `retry_after` says for how long, when Box said so."""


class BoxPermanentError(BoxAPIError):
    """A status that repeating the same request will not change: 400, 403, 404 and the like."""


class BoxUnauthorized(BoxAPIError):
    """401 again after one token refresh: the credentials lost their rights or the token is refused."""


class JobNotFound(BoxcutError):
    """No job record has this id."""


class InvalidTransition(BoxcutError):
    """A job state change that the job's current state does not allow (e.g. cancel after the first call)."""


class RetryLater(Exception):
    """Come back in `delay` seconds: a wait too long to sleep inside a task becomes a Celery retry."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(f"retry in {delay:.1f} s: {reason}")
        self.delay = delay
        self.reason = reason
