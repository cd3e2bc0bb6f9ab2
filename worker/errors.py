"""Every error boxcut raises on purpose, in one tree, and how an error is described in a record.

    BoxcutError
    ├── BoxError                      talking to Box went wrong
    │   ├── BoxTransportError         no answer: timeout, refused or dropped connection (retried)
    │   ├── BoxAuthError              Box refused to issue a token: wrong credentials or app config (not retried)
    │   ├── UnsafeRequest             boxcut refused to send: a value would change the request's path
    │   ├── BoxAnswerMismatch         Box answered about another item than the one asked for
    │   └── BoxAPIError               Box answered an error status; carries status, code, message, request id
    │       ├── BoxRetryableError     429, 500, 502, 503, 504: may differ a moment later
    │       │   ├── BoxRateLimited    429, with Box's retry-after
    │       │   └── TokenRefreshed    401 once: the token was dropped, the call is tried again with a new one
    │       ├── BoxPermanentError     400, 403, 404 ...: repeating will not change it
    │       └── BoxUnauthorized       401 again after a refresh
    ├── InvalidInput                  a request that cannot be run as given (the caller gets 4xx / exit 64-65)
    │   ├── InvalidRequest            a job request's field (named in `field`)
    │   ├── InvalidOffboardFile       an offboarding file, with every bad row
    │   ├── AdapterError              a sender's payload the intake cannot read (422)
    │   │   ├── NoIdentityFound       no identity at any field path tried
    │   │   └── PayloadError          a field of the wrong type or shape (named in `field`)
    │   ├── SetRefused                an SSF token the receiver will not take, with RFC 8935's `err` (400)
    │   │                             (worker/ssf/verifier.py)
    │   └── ReportRejected            a report file that does not verify (worker/jobs/evidence_signing.py;
    │                                 a ValueError too, as it always was)
    ├── AuthFailed                    an intake request without valid credentials (401, or 403)
    ├── NotEnqueued                   the broker refused a job; what asked for it was undone (503 / exit 1)
    ├── JobNotFound                   no job record has this id
    ├── InvalidTransition             a state change the job's state does not allow
    ├── GuardFailed                   a guarded write's condition no longer held; nothing was written
    │                                 (worker/transactions.py)
    ├── LeaseHeld                     another task run is working on this job
    └── KeysUnavailable               an SSF transmitter's signing keys could not be fetched, none cached
                                      (worker/ssf/keys.py)

    RetryLater                        not an error: come back in `delay` seconds (becomes a Celery retry)
    └── BatchRetryLater               ... for a terminate batch, saying how many calls this run made

The few defined beside the code that raises them (named above with their module) import their base from here:
this module imports nothing of boxcut's, so every layer may.

Outside this tree: `config.SettingsError` (a bad setting, below every layer) and the intake's `ApiError`, which
is an HTTP answer on its way out, not a fault.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# What a record may say of an unexpected error, at most; and credentials in URLs (`redis://:secret@host`) masked.
_DESCRIBED_CHARS = 300
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def describe_error(error: BaseException) -> str:
    """`Type: message` for a job record or a log line, without a URL's credentials, at most 300 characters."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", f"{type(error).__name__}: {error}")
    return text if len(text) <= _DESCRIBED_CHARS else text[: _DESCRIBED_CHARS - 3] + "..."


class BoxcutError(Exception):
    """Root of every error boxcut raises on purpose."""


# -- Box ------------------------------------------------------------------------------------------------------


class BoxError(BoxcutError):
    """Something went wrong talking to Box."""


class BoxTransportError(BoxError):
    """No answer from Box: a timeout, a refused or dropped connection. Worth retrying."""


class BoxAuthError(BoxError):
    """Box refused to issue an access token (wrong credentials or app config). Not worth retrying."""


class UnsafeRequest(BoxError):
    """A request boxcut refuses to send: a value (an id from an alert) would change its path. Nothing was sent."""


class BoxAnswerMismatch(BoxError):
    """Box answered about another item than the one asked for (or named none); the answer is not used."""


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


class TokenRefreshed(BoxRetryableError):
    """Box answered 401 once: the cached token was dropped; the call is tried again at once with a new one."""


class BoxPermanentError(BoxAPIError):
    """A status that repeating the same request will not change: 400, 403, 404 and the like."""


class BoxUnauthorized(BoxAPIError):
    """401 again after one token refresh: the credentials lost their rights or the token is refused."""


# -- what callers send ----------------------------------------------------------------------------------------


class InvalidInput(BoxcutError):
    """A request, file or payload that cannot be run as given; nothing was written."""


class InvalidRequest(InvalidInput):
    """A job request that cannot be run as given; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class RowProblem:
    """What is wrong with one line (CSV) or item (JSON) of an offboarding file; line 0 means the input as a whole."""

    line: int
    problem: str


class InvalidOffboardFile(InvalidInput):
    """An offboarding file refused whole; `problems` lists every problem found, in line order, and `unit` says
    whether they are numbered by `line` (CSV) or `item` (JSON). The message (one line a problem) is composed by
    `worker.jobs.offboarding_file`, which knows how to word them."""

    def __init__(self, problems: Sequence[RowProblem], *, unit: str, message: str) -> None:
        super().__init__(message)
        self.problems = list(problems)
        self.unit = unit


class AdapterError(InvalidInput):
    """A payload that cannot become an envelope; the intake answers 422 with this message."""


class NoIdentityFound(AdapterError):
    """No identity at any of the field paths tried; `tried` lists them in the order tried."""

    def __init__(self, tried: Sequence[str], note: str | None = None) -> None:
        self.tried = list(tried)
        message = "no identity found; tried " + ", ".join(self.tried)
        super().__init__(f"{message} ({note})" if note else message)


class PayloadError(AdapterError):
    """A field of the wrong type or shape; `field` names it as a path, e.g. `targets[0].login`."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}")


class AuthFailed(BoxcutError):
    """The request carries no valid credentials; `status` is 401, or 403 for a valid but insufficient one."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- jobs -----------------------------------------------------------------------------------------------------


class NotEnqueued(BoxcutError):
    """The broker refused the job; whatever asked for it was undone, and `why` is in the job's record."""

    def __init__(self, job_id: str, why: str) -> None:
        super().__init__(f"job {job_id} {why}")
        self.job_id = job_id
        self.why = why


class JobNotFound(BoxcutError):
    """No job record has this id."""


class InvalidTransition(BoxcutError):
    """A job state change that the job's current state does not allow (e.g. cancel after the first call)."""


class LeaseHeld(BoxcutError):
    """Another task run holds this job's lease; `ttl` says for how many more seconds at most."""

    def __init__(self, ttl: float) -> None:
        super().__init__(f"job lease held for {ttl:.1f} s more")
        self.ttl = ttl


# -- control flow ---------------------------------------------------------------------------------------------


class RetryLater(Exception):
    """Come back in `delay` seconds: a wait too long to sleep inside a task becomes a Celery retry."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(f"retry in {delay:.1f} s: {reason}")
        self.delay = delay
        self.reason = reason


class RateLimitedLater(RetryLater):
    """Box answered 429: come back when its pause ends (a terminate call is not retried inside the call then)."""


class BatchRetryLater(RetryLater):
    """`RetryLater` for a terminate batch: `attempts` calls were made in this run; `rate_limited` when Box
    answered 429 (it did nothing with the batch)."""

    def __init__(self, delay: float, reason: str = "", *, attempts: int = 0, rate_limited: bool = False) -> None:
        super().__init__(delay, reason)
        self.attempts = attempts
        self.rate_limited = rate_limited
