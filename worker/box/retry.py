"""The tenacity policy for Box calls: what to retry, how long to wait, when to stop, when to come back later.

Read as a sentence: retry a retryable Box error, waiting Box's `retry-after` when it sent one and an
exponential back-off with full jitter otherwise, pausing every worker on a 429, stopping at the call cap and
then re-raising the last error; a wait longer than the in-task budget is not slept but raised as `RetryLater`.
"""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Callable
from datetime import UTC
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_random_exponential

from worker.box.rate_limit import RateLimiter
from worker.errors import (
    BoxAPIError,
    BoxRateLimited,
    BoxRetryableError,
    BoxTransportError,
    RateLimitedLater,
    RetryLater,
    TokenRefreshed,
)

log = logging.getLogger(__name__)

RETRYABLE_ERRORS: tuple[type[Exception], ...] = (BoxRetryableError, BoxTransportError)

# Full jitter (a random wait between 0 and the exponential ceiling) spreads retries of many workers best.
TERMINATE_BACKOFF = wait_random_exponential(multiplier=1, max=30)
# Lookups run while an alert waits for containment: retry them sooner.
LOOKUP_BACKOFF = wait_random_exponential(multiplier=0.5, max=8)

# A `retry-after` beyond a day is read as a day: a Celery countdown and the global pause stay bounded.
MAX_RETRY_AFTER_SECONDS = 86_400.0

# Box always sends `retry-after` with a 429; should it not, every worker still pauses this long.
PAUSE_WITHOUT_RETRY_AFTER_SECONDS = 1.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `retry-after` value (seconds or an HTTP date); None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _seconds_until_http_date(text: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    # parsedate_to_datetime gives a naive datetime for "-0000"; HTTP dates are always GMT.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER_SECONDS)


# The strategies and hooks below are named in lower case, as tenacity's own are, so the policy reads as a
# sentence where it is assembled.


class stop_when(stop_base):
    """Stop when `reached()` says so: e.g. when the calls made for a batch reach its cap."""

    def __init__(self, reached: Callable[[], bool]) -> None:
        self.reached = reached

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.reached()


class wait_retry_after_or(wait_base):
    """Wait what Box asked for in `retry-after`, none after a token refresh, and `backoff` otherwise."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        error = _error_of(retry_state)
        if isinstance(error, TokenRefreshed):
            return 0.0
        if isinstance(error, BoxAPIError) and error.retry_after is not None:
            return error.retry_after
        return float(self.backoff(retry_state))


class pause_every_worker_on_429:
    """After a 429, pause the shared rate limiter so every worker waits, not just this one."""

    def __init__(self, limiter: RateLimiter | None) -> None:
        self.limiter = limiter

    def __call__(self, retry_state: RetryCallState) -> None:
        error = _error_of(retry_state)
        if self.limiter is None or not isinstance(error, BoxRateLimited):
            return
        seconds = error.retry_after if error.retry_after is not None else PAUSE_WITHOUT_RETRY_AFTER_SECONDS
        self.limiter.pause(seconds)


class defer_waits_over:
    """Before sleeping, raise `RetryLater` instead when the wait is longer than the in-task budget; with
    `defer_429`, raise `RateLimitedLater` after any 429 (a terminate call hands its wait to the send queue)."""

    def __init__(self, budget_seconds: float, *, defer_429: bool = False) -> None:
        self.budget_seconds = budget_seconds
        self.defer_429 = defer_429

    def __call__(self, retry_state: RetryCallState) -> None:
        delay = retry_state.upcoming_sleep
        error = _error_of(retry_state)
        if self.defer_429 and isinstance(error, BoxRateLimited):
            raise RateLimitedLater(delay, f"Box answered 429 (rate limit): every call waits {delay:.1f} s")
        if delay > self.budget_seconds:
            raise RetryLater(delay, f"wait over the in-task budget after: {_error_of(retry_state)}")
        log.warning("retrying Box call in %.2f s after: %s", delay, _error_of(retry_state))


def box_retrying(
    *,
    stop: stop_base,
    budget_seconds: float,
    limiter: RateLimiter | None,
    sleep: Callable[[float], None],
    backoff: wait_base = TERMINATE_BACKOFF,
    defer_429: bool = False,
) -> Retrying:
    """The tenacity policy for one Box call: build a new one per call (it holds that call's state)."""
    return Retrying(
        retry=retry_if_exception_type(RETRYABLE_ERRORS),
        wait=wait_retry_after_or(backoff),
        stop=stop,
        after=pause_every_worker_on_429(limiter),
        before_sleep=defer_waits_over(budget_seconds, defer_429=defer_429),
        sleep=sleep,
        reraise=True,
    )


def _error_of(retry_state: RetryCallState) -> BaseException | None:
    outcome: Any = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    error: BaseException | None = outcome.exception()
    return error
