"""The retry policy: retry-after parsing, waits, the global pause on 429, the cap, and RetryLater."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import fakeredis
import pytest
from tenacity.stop import stop_after_attempt
from tenacity.wait import wait_fixed

from tests.unit.fakes import START, FakeClock
from worker.box.rate_limit import RateLimiter
from worker.box.retry import box_retrying, parse_retry_after
from worker.errors import (
    BoxPermanentError,
    BoxRateLimited,
    BoxRetryableError,
    BoxTransportError,
    RetryLater,
    TokenRefreshed,
)


def api_error(cls: type[BoxRetryableError] | type[BoxPermanentError], status: int,
              retry_after: float | None = None) -> Exception:
    return cls(endpoint="/users/terminate_sessions", status=status, code="x", message="m", request_id="r",
               retry_after=retry_after)


def failing(*outcomes: Exception | str) -> tuple[Callable[[], str], list[int]]:
    """A function that raises or returns the outcomes in turn, and the list counting its calls."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return call, calls


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(fakeredis.FakeRedis(), key_prefix="t:", per_minute=60_000, clock=clock.time,
                       sleep=clock.sleep)


# -- parse_retry_after ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0", 0.0), ("1.5", 1.5), (" 30 ", 30.0), ("-4", 0.0), ("soon", None), ("", None), (None, None),
     ("nan", None), ("inf", 86_400.0), ("1e308", 86_400.0)],
)
def test_parse_retry_after_seconds_and_garbage(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, START) == expected


def test_parse_retry_after_http_date() -> None:
    when = format_datetime(datetime.fromtimestamp(START + 120, UTC), usegmt=True)
    assert parse_retry_after(when, START) == pytest.approx(120.0)


def test_parse_retry_after_past_http_date_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", START) == 0.0


# -- the policy -----------------------------------------------------------------------------------------------

def test_retries_retryable_errors_until_success(clock: FakeClock, limiter: RateLimiter) -> None:
    call, calls = failing(api_error(BoxRetryableError, 503), BoxTransportError("reset"), "ok")
    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    assert policy(call) == "ok"
    assert len(calls) == 3
    assert len(clock.sleeps) == 2 and all(0 <= s <= 30 for s in clock.sleeps)


def test_permanent_error_is_not_retried(clock: FakeClock, limiter: RateLimiter) -> None:
    call, calls = failing(api_error(BoxPermanentError, 403), "ok")
    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    with pytest.raises(BoxPermanentError):
        policy(call)
    assert len(calls) == 1 and clock.sleeps == []


def test_429_waits_retry_after_and_pauses_every_worker(clock: FakeClock, limiter: RateLimiter) -> None:
    call, _ = failing(api_error(BoxRateLimited, 429, retry_after=2.0), "ok")
    paused: list[float] = []

    def sleep(seconds: float) -> None:
        paused.append(limiter.pause_remaining())  # what every other worker sees while this one sleeps
        clock.sleep(seconds)

    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=30, limiter=limiter, sleep=sleep)
    assert policy(call) == "ok"
    assert clock.sleeps == [2.0]
    assert paused == [pytest.approx(2.0)]


def test_wait_over_budget_raises_retry_later_without_sleeping(clock: FakeClock, limiter: RateLimiter) -> None:
    call, calls = failing(api_error(BoxRateLimited, 429, retry_after=120.0), "ok")
    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    with pytest.raises(RetryLater) as caught:
        policy(call)
    assert caught.value.delay == pytest.approx(120.0)
    assert clock.sleeps == [] and len(calls) == 1
    assert limiter.pause_remaining() == pytest.approx(120.0)


def test_backoff_over_budget_raises_retry_later(clock: FakeClock, limiter: RateLimiter) -> None:
    call, _ = failing(api_error(BoxRetryableError, 503), "ok")
    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=1, limiter=limiter, sleep=clock.sleep,
                          backoff=wait_fixed(5))
    with pytest.raises(RetryLater) as caught:
        policy(call)
    assert caught.value.delay == 5


def test_stops_at_the_cap_and_reraises_the_last_error(clock: FakeClock, limiter: RateLimiter) -> None:
    errors = [api_error(BoxRetryableError, 503) for _ in range(3)]
    call, calls = failing(*errors)
    policy = box_retrying(stop=stop_after_attempt(3), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    with pytest.raises(BoxRetryableError) as caught:
        policy(call)
    assert caught.value is errors[-1] and len(calls) == 3


def test_last_attempt_reraises_instead_of_retry_later(clock: FakeClock, limiter: RateLimiter) -> None:
    # At the cap there is nothing to come back for: the 429 itself is the answer, and every worker still pauses.
    call, _ = failing(api_error(BoxRateLimited, 429, retry_after=120.0))
    policy = box_retrying(stop=stop_after_attempt(1), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    with pytest.raises(BoxRateLimited):
        policy(call)
    assert limiter.pause_remaining() == pytest.approx(120.0)


def test_token_refresh_is_retried_at_once(clock: FakeClock, limiter: RateLimiter) -> None:
    refused = TokenRefreshed(endpoint="/users", status=401, code=None, message=None, request_id=None)
    call, _ = failing(refused, "ok")
    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    assert policy(call) == "ok"
    assert clock.sleeps == [0.0]


def test_retry_later_from_inside_the_call_propagates(clock: FakeClock, limiter: RateLimiter) -> None:
    call, calls = failing(RetryLater(45.0, "rate limit"), "ok")
    policy = box_retrying(stop=stop_after_attempt(6), budget_seconds=30, limiter=limiter, sleep=clock.sleep)
    with pytest.raises(RetryLater):
        policy(call)
    assert len(calls) == 1
