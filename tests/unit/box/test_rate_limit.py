"""The shared rate limiter: slots, waits, RetryLater without a slot, and the pause that stops every worker."""

from __future__ import annotations

import fakeredis
import pytest

from tests.unit.fakes import START, FakeClock
from worker.box.rate_limit import RateLimiter
from worker.errors import RetryLater


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def limiter(redis_client: fakeredis.FakeRedis, clock: FakeClock, per_minute: int = 60,
            burst: int | None = 1) -> RateLimiter:
    return RateLimiter(redis_client, key_prefix="t:", per_minute=per_minute, burst=burst, clock=clock.time,
                       sleep=clock.sleep)


def test_first_call_goes_at_once_the_next_waits_its_turn(redis_client: fakeredis.FakeRedis,
                                                          clock: FakeClock) -> None:
    one = limiter(redis_client, clock)
    assert one.acquire(max_wait=5) == 0.0
    assert one.acquire(max_wait=5) == pytest.approx(1.0, abs=0.002)
    assert sum(clock.sleeps) == pytest.approx(1.0, abs=0.002)


def test_rate_over_many_calls(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    ten_a_second = limiter(redis_client, clock, per_minute=600)
    for _ in range(11):
        ten_a_second.acquire(max_wait=5)
    assert clock.now - START == pytest.approx(1.0, abs=0.01)


def test_burst_allows_that_many_at_once(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    bursty = limiter(redis_client, clock, per_minute=60, burst=5)
    for _ in range(5):
        assert bursty.acquire(max_wait=0) == 0.0
    with pytest.raises(RetryLater):
        bursty.acquire(max_wait=0)


def test_default_burst_is_a_tenth_of_the_minute(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    assert limiter(redis_client, clock, per_minute=900, burst=None).burst == 90


def test_the_limit_is_shared_by_every_process(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one, other = limiter(redis_client, clock), limiter(redis_client, clock)
    one.acquire(max_wait=5)
    with pytest.raises(RetryLater) as caught:
        other.acquire(max_wait=0.5)
    assert caught.value.delay == pytest.approx(1.0, abs=0.002)


def test_retry_later_takes_no_slot(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one = limiter(redis_client, clock)
    one.acquire(max_wait=5)
    with pytest.raises(RetryLater):
        one.acquire(max_wait=0.5)
    assert clock.sleeps == []
    clock.now += 1.0
    # Had the refused call taken a slot, this one would have to wait another second.
    assert one.acquire(max_wait=0) == 0.0


def test_pause_stops_every_worker_then_lifts(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one, other = limiter(redis_client, clock), limiter(redis_client, clock)
    one.pause(5)
    assert other.acquire(max_wait=30) == pytest.approx(5.0)
    assert clock.sleeps == [pytest.approx(5.0)]


def test_pause_over_max_wait_raises_retry_later(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one = limiter(redis_client, clock)
    one.pause(120)
    with pytest.raises(RetryLater) as caught:
        one.acquire(max_wait=30)
    assert caught.value.delay == pytest.approx(120.0)
    assert clock.sleeps == []
    assert redis_client.get("t:box:ratelimit") is None  # no slot was taken


def test_pause_keeps_the_later_deadline(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one = limiter(redis_client, clock)
    one.pause(10)
    one.pause(3)
    assert one.pause_remaining() == pytest.approx(10.0)
    one.pause(20)
    assert one.pause_remaining() == pytest.approx(20.0)


def test_a_pause_set_while_waiting_is_honoured(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one = limiter(redis_client, clock)
    one.acquire(max_wait=5)

    def sleep_while_another_worker_gets_429(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            one.pause(3)

    waiting = RateLimiter(redis_client, key_prefix="t:", per_minute=60, burst=1, clock=clock.time,
                          sleep=sleep_while_another_worker_gets_429)
    assert waiting.acquire(max_wait=10) == pytest.approx(4.0, abs=0.002)


def test_keys_live_under_the_prefix_and_expire(redis_client: fakeredis.FakeRedis, clock: FakeClock) -> None:
    one = limiter(redis_client, clock)
    one.acquire(max_wait=5)
    one.pause(2)
    assert sorted(redis_client.keys("*")) == [b"t:box:pause_until", b"t:box:ratelimit", b"t:box:tight_until"]
    assert 0 < redis_client.pttl("t:box:ratelimit") <= 3000
    assert 0 < redis_client.pttl("t:box:pause_until") <= 3000
    # calls stay scarce for a minute after the pause: they gather into full batches meanwhile
    assert 61_000 < redis_client.pttl("t:box:tight_until") <= 63_000


def test_per_minute_must_be_positive(redis_client: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError, match="per_minute"):
        RateLimiter(redis_client, key_prefix="t:", per_minute=0)


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 1e308])
def test_pause_is_bounded_to_a_day(redis_client: fakeredis.FakeRedis, clock: FakeClock, seconds: float) -> None:
    one = limiter(redis_client, clock)
    one.pause(seconds)
    assert one.pause_remaining() == pytest.approx(86_400.0)
