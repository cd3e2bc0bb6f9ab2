"""Signed deliveries remembered while their signature is valid, so a captured request cannot make a second job.

A signature covers `"<timestamp>.<raw body>"` and is accepted for `HMAC_TOLERANCE_SECONDS` either side of its
timestamp. Within that window anyone who captured the request could send it again, with any unsigned header
(a fresh `Idempotency-Key`, say) changed. So the first delivery of a signature is remembered in Redis, with the
answer it got, until the window closes; a later delivery of the same signature gets that answer back and runs
nothing, as a sender's honest retry should. A delivery that was refused (its accept raised) is forgotten at once,
so the sender's retry is not mistaken for a replay.

    P sig:{signature}   string  "pending:<token>" while the first delivery is being accepted (a short lease, so a
                                crashed intake frees it), then the answer; expires when the window closes
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis

from worker.errors import FirstDeliveryPending
from worker.intake.auth import SignedDelivery
from worker.locks import CompareAndDelete

PENDING = "pending:"
# How long a first delivery may take before a retry of it may take over (accepting one alert takes milliseconds).
PENDING_LEASE_SECONDS = 30.0
# How long a repeat waits for a first delivery still being accepted before it is told to come back.
WAIT_FOR_FIRST_SECONDS = 5.0
# Kept past the window, for intake processes whose clocks differ.
MARGIN_SECONDS = 60

# KEYS[1] the mark; ARGV[1] our pending value, ARGV[2] the answer, ARGV[3] its ttl in ms. Writes the answer unless
# another delivery has taken the mark over (our lease ran out and it claimed it).
_REMEMBER = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or current == false then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class SeenSignatures:
    """Runs the accepting of a signed delivery once per signature, and answers repeats with the first answer."""

    def __init__(self, client: redis.Redis, *, key_prefix: str, tolerance_seconds: int,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.redis = client
        self.prefix = key_prefix
        self.tolerance = tolerance_seconds
        self._clock = clock
        self._sleep = sleep
        self._remember = client.register_script(_REMEMBER)
        self._forget = CompareAndDelete(client)

    def once(self, delivery: SignedDelivery, accept: Callable[[], str]) -> tuple[str, bool]:
        """`(answer, seen_before)`: the answer `accept()` gave the first delivery of this signature, running it only
        for that first one. `accept` raising leaves the signature unseen and the error goes on; a repeat that
        arrives while the first is being accepted waits for it, then raises FirstDeliveryPending."""
        key = f"{self.prefix}sig:{delivery.signature}"
        mine = PENDING + secrets.token_hex(8)
        first = self._claim_or_first_answer(key, mine)
        if first is not None:
            return first, True
        try:
            answer = accept()
        except BaseException:
            self._forget(key, mine)
            raise
        self._remember(keys=[key], args=[mine, answer, self._window_ms(delivery)])
        return answer, False

    def _claim_or_first_answer(self, key: str, mine: str) -> str | None:
        """None when this delivery now holds the mark; else the first delivery's answer."""
        deadline = self._clock() + WAIT_FOR_FIRST_SECONDS
        while True:
            if self.redis.set(key, mine, nx=True, px=int(PENDING_LEASE_SECONDS * 1000)):
                return None
            raw = self.redis.get(key)
            current = raw.decode() if isinstance(raw, bytes) else raw
            if current is not None and not current.startswith(PENDING):
                return str(current)
            if current is not None and self._clock() >= deadline:
                raise FirstDeliveryPending(retry_after=int(WAIT_FOR_FIRST_SECONDS))
            if current is not None:
                self._sleep(0.05)

    def _window_ms(self, _delivery: SignedDelivery) -> int:
        """How long a signature is remembered: the longest it can still be accepted anywhere. A timestamp up to
        `tolerance` ahead of a clock is accepted for `2 * tolerance`; the margin covers intakes whose clocks differ
        (an intake's own reading of the timestamp would be off by exactly that difference)."""
        return (2 * self.tolerance + MARGIN_SECONDS) * 1000
