"""One delivery attempt at a time: signed as the intake checks senders, its answer classified (delivered, tried
again after a back-off or the receiver's Retry-After, failed for good), and each recorded in the job."""

from __future__ import annotations

import hmac
import io
import json
import logging

import fakeredis
import pytest
import requests

from config.notify_urls import NotifyURL
from config.secret import Secret
from tests.unit.notify.helpers import GENERIC, SLACK, move, new_job
from worker.jobs.model import JobState
from worker.jobs.store import JobStore
from worker.notify.delivery import Answer, Notifier, Outcome, backoff, classify, http_post
from worker.notify.notice import Notice
from worker.notify.records import DeliveryRecords
from worker.signing import signature

SECRET = "notify-secret"


class Receiver:
    """Answers from a script, keeping what it was sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.got: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.got.append((url, body, headers))
        return self.answers.pop(0)


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(), key_prefix="t:")


def ended(store: JobStore, url_index: int = 0) -> Notice:
    job_id = new_job(store)
    move(store, job_id, JobState.CANCELLED)
    return Notice(job_id=job_id, audit_id="1-0", event="finished", state="cancelled", url_index=url_index)


def notifier(store: JobStore, receiver: Receiver, **more: object) -> Notifier:
    settings: dict[str, object] = {"urls": (GENERIC, SLACK), "secret": Secret(SECRET), "public_url": None,
                                   "retry_seconds": 10.0, "max_attempts": 3, "clock": lambda: 1_700_000_000.0}
    settings.update(more)
    return Notifier(store=store, post=receiver, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.DELIVERED), (204, Outcome.DELIVERED), (500, Outcome.RETRY), (503, Outcome.RETRY),
    (408, Outcome.RETRY), (429, Outcome.RETRY), (None, Outcome.RETRY), (400, Outcome.FAILED),
    (401, Outcome.FAILED), (404, Outcome.FAILED), (410, Outcome.FAILED), (301, Outcome.FAILED),
])
def test_an_answer_is_delivered_retried_or_failed(status: int | None, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_the_back_off_doubles_from_its_base_up_to_its_cap_and_honours_a_longer_retry_after_capped() -> None:
    assert [backoff(n, base=10, cap=300) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff(2, base=10, cap=300, retry_after=45) == 45
    assert backoff(2, base=10, cap=300, retry_after=3) == 20  # sooner than its own back-off: not
    assert backoff(1, base=10, cap=300, retry_after=0) == 10  # `Retry-After: 0` on every 429 spends nothing
    assert backoff(1, base=10, cap=300, retry_after=86400) == 300


def test_a_delivery_is_signed_as_the_intake_checks_senders_and_recorded(store: JobStore) -> None:
    notice, receiver = ended(store), Receiver(Answer(200))
    assert notifier(store, receiver).attempt(notice).status == "delivered"
    ((url, body, headers),) = receiver.got
    assert url == GENERIC.url and headers["Content-Type"] == "application/json"
    assert headers["X-Boxcut-Timestamp"] == "1700000000"
    expected = "v1=" + hmac.new(SECRET.encode(), b"1700000000." + body, "sha256").hexdigest()
    assert headers["X-Boxcut-Signature"] == expected == signature(SECRET, "1700000000", body)
    assert json.loads(body)["type"] == "boxcut.job.finished"
    (record,) = store.load(notice.job_id).notifications
    assert (record["status"], record["attempts"], record["last_http_status"]) == ("delivered", 1, 200)
    assert record["delivered_at"] and record["url"] == "https://receiver.example.com/…"
    assert record["fingerprint"] == GENERIC.fingerprint and "s3cr3t" not in json.dumps(record)
    assert [e["data"]["status"] for e in store.audit_entries(job_id=notice.job_id) if e["event"] == "notified"] \
        == ["delivered"]


def test_a_slack_receiver_gets_slacks_body(store: JobStore) -> None:
    notice, receiver = ended(store, url_index=1), Receiver(Answer(200))
    notifier(store, receiver).attempt(notice)
    assert set(json.loads(receiver.got[0][1])) == {"text", "blocks"}


def test_failures_are_retried_with_back_off_and_the_record_counts_every_attempt(store: JobStore) -> None:
    notice = ended(store)
    receiver = Receiver(Answer(500), Answer(503, retry_after=120.0), Answer(200))
    sender = notifier(store, receiver)
    first, second, third = (sender.attempt(notice) for _ in range(3))
    assert (first.status, first.retry_in) == ("retrying", 10.0)
    assert (second.status, second.retry_in) == ("retrying", 120.0)
    assert (third.status, third.retry_in) == ("delivered", None)
    (record,) = store.load(notice.job_id).notifications
    assert (record["status"], record["attempts"], record["last_http_status"]) == ("delivered", 3, 200)


def test_a_retryable_failure_on_the_last_attempt_allowed_fails(store: JobStore) -> None:
    notice = ended(store)
    sender = notifier(store, Receiver(Answer(500), Answer(None, "could not connect to the receiver"),
                                      Answer(502)))
    outcomes = [sender.attempt(notice).status for _ in range(3)]
    assert outcomes == ["retrying", "retrying", "failed"]
    (record,) = store.load(notice.job_id).notifications
    assert record["attempts"] == 3 and "gave up after 3 attempts" in record["last_error"]


def test_a_4xx_fails_at_once_and_a_task_delivered_again_sends_nothing_more(store: JobStore) -> None:
    notice, receiver = ended(store), Receiver(Answer(404))
    sender = notifier(store, receiver)
    assert sender.attempt(notice).status == "failed"
    assert sender.attempt(notice).status == "failed" and len(receiver.got) == 1
    (record,) = store.load(notice.job_id).notifications
    assert (record["status"], record["last_error"]) == ("failed", "HTTP 404")


def test_without_a_secret_a_slack_receiver_gets_no_signature_headers(store: JobStore) -> None:
    notice, receiver = ended(store, url_index=1), Receiver(Answer(200))
    notifier(store, receiver, secret=None).attempt(notice)
    assert "X-Boxcut-Signature" not in receiver.got[0][2]


def test_a_receiver_no_longer_listed_fails_without_a_request(store: JobStore) -> None:
    notice, receiver = ended(store), Receiver()
    DeliveryRecords(store).queued(notice, GENERIC)
    changed = (NotifyURL("https://other.example.com/hook"), SLACK)
    assert notifier(store, receiver, urls=changed).attempt(notice).status == "failed" and receiver.got == []
    assert "changed" in store.load(notice.job_id).notifications[0]["last_error"]


def test_the_http_post_names_no_url_in_its_errors() -> None:
    class Refusing(requests.Session):
        def post(self, url: str | bytes, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
            raise requests.ConnectionError(f"HTTPSConnectionPool: Max retries exceeded with url: {url!r}")

    answer = http_post(Refusing())("https://receiver.example.com/hooks/s3cr3t", b"{}", {})
    assert answer.status is None and answer.error == "could not connect to the receiver"


def test_urllib3s_lines_naming_the_path_are_dropped_while_a_notification_is_sent(
        caplog: pytest.LogCaptureFixture) -> None:

    class Logging(requests.Session):
        def post(self, url: str | bytes, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
            logging.getLogger("urllib3.connectionpool").debug('"POST %s HTTP/1.1" 200 0', url)
            answer = requests.Response()
            answer.status_code, answer.raw = 200, io.BytesIO(b"")
            return answer

    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        assert http_post(Logging())("https://hooks.example.com/s3cr3t", b"{}", {}).status == 200
        logging.getLogger("urllib3.connectionpool").debug("a Box request: /2.0/users")
    assert "s3cr3t" not in caplog.text and "a Box request" in caplog.text


def test_a_job_retention_removed_is_not_notified_and_leaves_no_key_behind(store: JobStore) -> None:
    notice = ended(store)
    store.remove(notice.job_id)
    receiver = Receiver()
    assert notifier(store, receiver).attempt(notice).status == "failed"
    assert receiver.got == []
    assert not store.redis.exists(store.notify_key(notice.job_id), store.job_audit_key(notice.job_id))
    DeliveryRecords(store).queued(notice, GENERIC)  # the scanner's write too
    assert not store.redis.exists(store.notify_key(notice.job_id))


@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("-5", 0.0), ("nan", None),
                                                 ("inf", None), ("Wed, 21 Oct 2026 07:28:00 GMT", None)])
def test_retry_after_is_read_in_seconds_and_nothing_else(header: str, seconds: float | None) -> None:
    from worker.notify.delivery import _retry_after

    assert _retry_after(header) == seconds


def test_a_delivery_its_task_cannot_go_on_with_is_failed_saying_why_not_left_queued(store: JobStore) -> None:
    notice = ended(store)
    DeliveryRecords(store).queued(notice, GENERIC)
    sender = notifier(store, Receiver())
    sender.give_up(notice, "stopped by an unexpected KeyError")
    (record,) = store.load(notice.job_id).notifications
    assert (record["status"], record["last_error"]) == ("failed", "stopped by an unexpected KeyError")
    sender.give_up(notice, "again")  # a final record stays as it is
    assert store.load(notice.job_id).notifications[0]["last_error"] == "stopped by an unexpected KeyError"


def test_an_attempt_cut_off_by_the_tasks_soft_time_limit_is_one_without_an_answer() -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from tasks.notify import _within_the_time_limit

    def hangs(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        raise SoftTimeLimitExceeded()

    answer = _within_the_time_limit(hangs)("https://x.example/", b"{}", {})
    assert answer.status is None and "did not answer within" in (answer.error or "")
    assert classify(answer.status) is Outcome.RETRY


def test_an_attempt_is_counted_before_it_is_sent_so_a_worker_killed_mid_post_still_spends_it(
        store: JobStore) -> None:
    notice = ended(store)
    DeliveryRecords(store).queued(notice, GENERIC)
    seen: list[int] = []

    def dies_mid_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        seen.append(store.load(notice.job_id).notifications[0]["attempts"])
        raise SystemExit("the worker process is killed")

    with pytest.raises(SystemExit):
        notifier(store, dies_mid_post).attempt(notice)  # type: ignore[arg-type]
    assert seen == [1] and store.load(notice.job_id).notifications[0]["attempts"] == 1
    again = notifier(store, Receiver(Answer(200))).attempt(notice)  # the task, delivered again
    assert again.status == "delivered" and store.load(notice.job_id).notifications[0]["attempts"] == 2


def test_a_task_delivered_again_after_its_last_attempt_died_mid_post_sends_nothing_more(store: JobStore) -> None:
    """The attempt is counted before the POST: when the worker dies during the last one allowed, the task delivered
    again gives up instead of posting once more (no receiver gets more than BOXCUT_NOTIFY_ATTEMPTS)."""
    notice = ended(store)
    sender = notifier(store, Receiver(Answer(500), Answer(500)))
    assert [sender.attempt(notice).status for _ in range(2)] == ["retrying", "retrying"]

    def dies_mid_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        raise SystemExit("the worker process is killed")

    with pytest.raises(SystemExit):
        notifier(store, dies_mid_post).attempt(notice)  # type: ignore[arg-type]
    receiver = Receiver(Answer(200))
    again = notifier(store, receiver).attempt(notice)  # the task, delivered again
    (record,) = store.load(notice.job_id).notifications
    assert again.status == "failed" and receiver.got == []
    assert record["attempts"] == 3 and "gave up after 3 attempts" in record["last_error"]
