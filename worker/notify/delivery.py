"""One attempt at delivering a notification: build its body, sign it, POST it, and record what came of it.

A receiver's answer decides: 2xx delivered; 408, 429, 5xx or no answer (refused, timed out) tried again, after
its Retry-After where it gives one (capped), else after a back-off that doubles; any other answer (a 3xx, a 4xx)
failed, for good: sending the same request again would get the same answer. After the last attempt allowed,
one that would be tried again is failed too. The attempt never names the receiver's URL beyond its host.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import requests

from config import defaults
from config.notify_urls import NotifyURL
from config.secret import Secret
from worker import metrics
from worker.errors import JobNotFound
from worker.jobs.brake import jobs_held
from worker.jobs.model import Job, utc_now
from worker.jobs.store import JobStore
from worker.notify.body import generic_body, slack_body
from worker.notify.notice import BRAKE_ENGAGED, Notice
from worker.notify.records import DELIVERED, FAILED, FINAL, RETRYING, Delivery, DeliveryRecords
from worker.signing import signature

log = logging.getLogger(__name__)

USER_AGENT = "boxcut-notify/1"
_RETRYABLE_4XX = frozenset({408, 429})
_ERROR_CHARS = 200


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


def classify(status: int | None) -> Outcome:
    """What a receiver's answer (None: no answer at all) means for its notification."""
    if status is None or status >= 500 or status in _RETRYABLE_4XX:
        return Outcome.RETRY
    return Outcome.DELIVERED if 200 <= status < 300 else Outcome.FAILED


def backoff(attempts: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt, after `attempts` made: `base` doubled per attempt after the first, or the
    receiver's Retry-After when that is longer; never more than `cap`."""
    own = float(base * 2 ** max(0, attempts - 1))
    # A receiver may ask for longer than boxcut's own back-off, never for less: `Retry-After: 0` on every 429
    # would spend every attempt in a moment.
    wait = max(own, retry_after) if retry_after is not None else own
    return max(0.0, min(wait, cap))


@dataclass(frozen=True)
class Answer:
    """What the receiver said: its HTTP status, or (status None) why none came."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Attempted:
    """The result of one attempt: the delivery's status now, and when to try again (None: not again)."""

    status: str
    retry_in: float | None = None


Post = Callable[[str, bytes, dict[str, str]], Answer]


@dataclass
class Notifier:
    """Delivers notifications to the receivers of BOXCUT_NOTIFY_URLS, one attempt per call."""

    store: JobStore
    urls: tuple[NotifyURL, ...]
    secret: Secret | None
    public_url: str | None
    post: Post
    retry_seconds: float = defaults.NOTIFY_RETRY_SECONDS
    max_attempts: int = defaults.NOTIFY_ATTEMPTS
    max_backoff: float = defaults.NOTIFY_MAX_BACKOFF_SECONDS
    clock: Callable[[], float] = field(default=time.time)
    # Approve and Cancel buttons on Slack notices about a job that waits: on where BOXCUT_SLACK_APPROVERS names
    # someone, so a button is shown only where the intake takes its click.
    slack_buttons: bool = False

    def __post_init__(self) -> None:
        self.records = DeliveryRecords(self.store)

    def attempt(self, notice: Notice) -> Attempted:
        """One attempt at the notice (none when its delivery is already final: a task delivered again)."""
        url = self.urls[notice.url_index] if notice.url_index < len(self.urls) else None
        record = self.records.get(notice)
        if record is None:
            if url is None:
                return Attempted(FAILED)  # nothing recorded, nowhere to send: a list shortened since
            record = Delivery.new(notice, url)
        if record.status in FINAL:
            return Attempted(record.status)
        if url is None or url.fingerprint != record.fingerprint:
            return self._finish(notice, record, None, Outcome.FAILED,
                                "BOXCUT_NOTIFY_URLS changed since it was queued: that receiver is no longer listed")
        try:
            job = self.store.load(notice.job_id)
        except JobNotFound:  # retention removed it meanwhile: nothing to send, and nothing to write to
            log.info("job %s is gone: its notification %s is dropped", notice.job_id, notice.event)
            return Attempted(FAILED)
        if record.attempts >= self.max_attempts:  # the last attempt's worker stopped before its answer was kept
            return self._finish(notice, record, None, Outcome.FAILED,
                                f"gave up after {record.attempts} attempts (the last one's answer was never recorded: "
                                "its worker stopped mid-request)")
        body = self._body(job, notice, url)
        # Counted before it is sent, as Box calls are: a worker killed mid-POST (the task delivered again) still
        # spends the attempt, so no receiver gets more than BOXCUT_NOTIFY_ATTEMPTS.
        record = replace(record, attempts=record.attempts + 1, last_at=utc_now())
        self.records.put(notice, record, next_in=defaults.NOTIFY_TASK_SOFT_SECONDS + 10)
        answer = self.post(url.url, body, self._headers(body))
        outcome = classify(answer.status)
        error = answer.error or (None if outcome is Outcome.DELIVERED else f"HTTP {answer.status}")
        if outcome is Outcome.RETRY and record.attempts >= self.max_attempts:
            outcome, error = Outcome.FAILED, f"{error}; gave up after {record.attempts} attempts"
        if outcome is Outcome.RETRY:
            wait = backoff(record.attempts, base=self.retry_seconds, cap=self.max_backoff,
                           retry_after=answer.retry_after)
            self._record(notice, replace(record, status=RETRYING), answer.status, error, outcome, next_in=wait)
            log.info("job %s: notification %s to %s not delivered (%s); attempt %d of %d in %.1f s", notice.job_id,
                     notice.event, url.describe(), error, record.attempts + 1, self.max_attempts, wait)
            return Attempted(RETRYING, retry_in=wait)
        return self._finish(notice, record, answer.status, outcome, error)

    def give_up(self, notice: Notice, why: str) -> None:
        """End a delivery its task cannot go on with (an unexpected error, Celery's retries spent): `failed`,
        saying why, rather than `queued` or `retrying` for ever."""
        record = self.records.get(notice)
        if record is not None and record.status not in FINAL:
            self._finish(notice, record, None, Outcome.FAILED, why)

    def _body(self, job: Job, notice: Notice, url: NotifyURL) -> bytes:
        held = None
        if notice.event == BRAKE_ENGAGED and job.brake:
            held = jobs_held(self.store.redis, key_prefix=self.store.prefix, source=str(job.brake.get("source")))
        if url.slack:
            data = slack_body(job, notice, public_url=self.public_url, sent_at=utc_now(), jobs_held=held,
                              buttons=self.slack_buttons)
        else:
            data = generic_body(job, notice, public_url=self.public_url, sent_at=utc_now(), jobs_held=held)
        return json.dumps(data, separators=(",", ":")).encode()

    def _headers(self, body: bytes) -> dict[str, str]:
        """JSON, signed as the intake checks senders (worker/signing.py) when a secret is set."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.secret is not None:
            stamp = str(int(self.clock()))
            headers.update({"X-Boxcut-Timestamp": stamp,
                            "X-Boxcut-Signature": signature(self.secret.reveal(), stamp, body)})
        return headers

    def _finish(self, notice: Notice, record: Delivery, status: int | None, outcome: Outcome,
                error: str | None) -> Attempted:
        """Record a final outcome (delivered, failed), count it and note it in the job's audit."""
        final = DELIVERED if outcome is Outcome.DELIVERED else FAILED
        record = replace(record, status=final, delivered_at=utc_now() if final == DELIVERED else None)
        self._record(notice, record, status, error, outcome)
        self.store.note(notice.job_id, "notified", {"event": notice.event, "url": record.url,
                                                    "fingerprint": record.fingerprint, "status": final,
                                                    "attempts": record.attempts, "http_status": status})
        (log.info if final == DELIVERED else log.warning)(
            "job %s: notification %s to %s %s after %d attempts%s", notice.job_id, notice.event, record.url,
            final, record.attempts, f" ({error})" if error else "")
        return Attempted(final)

    def _record(self, notice: Notice, record: Delivery, status: int | None, error: str | None,
                outcome: Outcome, *, next_in: float = 0.0) -> None:
        self.records.put(notice, replace(record, last_http_status=status, last_at=utc_now(),
                                         last_error=error[:_ERROR_CHARS] if error else None), next_in=next_in)
        metrics.notification(notice.event, outcome.value if outcome is not Outcome.RETRY else "retrying")


class _QuietWhileNotifying(logging.Filter):
    """Drops urllib3's own lines (at DEBUG it logs each request's path: a Slack webhook's secret) while this
    thread sends a notification; its lines about Box's requests pass as before."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "notifying", False)

    @contextmanager
    def notifying(self) -> Iterator[None]:
        self.local.notifying = True
        try:
            yield
        finally:
            self.local.notifying = False


_QUIET = _QuietWhileNotifying()
logging.getLogger("urllib3.connectionpool").addFilter(_QUIET)


def http_post(session: requests.Session, *, timeout: tuple[float, float] = defaults.NOTIFY_TIMEOUT_SECONDS) -> Post:
    """A `Post` over `session`: no redirects followed (a 3xx is an answer, and a failed one), and an error that
    names the kind of failure, never the URL (requests puts the whole URL in its messages, urllib3 its path in
    its log lines, which are dropped meanwhile)."""

    def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            with _QUIET.notifying():
                # stream: the status and headers are the answer; a body is never waited for.
                answer = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                                      stream=True)
        except requests.Timeout:
            return Answer(None, "the receiver did not answer in time")
        except requests.ConnectionError:
            return Answer(None, "could not connect to the receiver")
        except requests.RequestException as failed:
            return Answer(None, f"the request failed ({type(failed).__name__})")
        with answer:
            return Answer(answer.status_code, retry_after=_retry_after(answer.headers.get("Retry-After")))

    return post


def _retry_after(value: str | None) -> float | None:
    """A Retry-After in seconds (its HTTP-date form is not worth trusting a receiver's clock for); None for
    anything else, NaN and infinities among it."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
