"""Signed notifications with real workers, their beat and boxsim over HTTP: local receivers get a correctly
signed notification when a job waits for approval and when it ends (Slack's body for a Slack receiver), and a
receiver that answers 500 twice gets each on the third try, which the job records."""

from __future__ import annotations

import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tasks.app import build_celery_app, enqueuer
from tests.integration.harness import Stack, running_stack, until
from worker.jobs.actions import approve
from worker.jobs.model import Job, JobState

pytestmark = pytest.mark.integration

SECRET = "notify-hmac-secret"


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    signed: bool
    skew: float
    at: float


@dataclass
class Receiver:
    """A local HTTP receiver that checks every request's signature, answering from `script` (per notification
    id: the first answers in order, then 200)."""

    script: tuple[int, ...] = ()
    got: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self, notification_id: str) -> int:
        seen = sum(1 for r in self.got if r.body.get("id", r.body.get("text")) == notification_id) - 1
        return self.script[seen] if seen < len(self.script) else 200

    def bodies(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.body for r in self.got if kind is None or r.body.get("type") == kind]


@contextmanager
def receiving(receiver: Receiver, path: str = "/hooks/T0/B0/s3cr3t") -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            stamp, sent = self.headers.get("X-Boxcut-Timestamp", ""), self.headers.get("X-Boxcut-Signature", "")
            expected = "v1=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, "sha256").hexdigest()
            body = json.loads(raw)
            receiver.got.append(Received(self.path, body, hmac.compare_digest(expected, sent),
                                         abs(time.time() - int(stamp or 0)), time.time()))
            status = receiver.answer(body.get("id", body.get("text")))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def notify_env(*urls: str) -> dict[str, str]:
    return {"BOXCUT_NOTIFY_URLS": ",".join(urls), "BOXCUT_NOTIFY_HMAC_SECRET": SECRET,
            "BOXCUT_NOTIFY_RETRY_SECONDS": "0.5", "BOXCUT_APPROVAL_THRESHOLD": "0",  # every job waits
            "BOXCUT_PUBLIC_URL": "https://boxcut.example.com"}


def scanning(stack: Stack) -> None:
    """Wait until the scanner has taken its place at the audit stream's end (earlier entries send nothing)."""
    until(lambda: stack.store().redis.exists(f"{stack.key_prefix}notify:cursor"), "the scanner's first pass")


def waiting_then_approved(stack: Stack) -> tuple[str, Job]:
    job_id = stack.submit([{"type": "user", "login": "rroe@example.com"}], reason="phished")
    assert stack.wait(job_id).state is JobState.AWAITING_APPROVAL
    return job_id, stack.wait(job_id)


def approve_and_finish(stack: Stack, job_id: str) -> Job:
    approve(store=stack.store(), enqueue=enqueuer(build_celery_app(stack.settings())), job_id=job_id, actor="pytest")
    until(lambda: stack.store().load(job_id).state.is_final, f"job {job_id} to end")
    return stack.store().load(job_id)


def delivered(stack: Stack, job_id: str, count: int) -> list[dict[str, Any]]:
    until(lambda: sum(n["status"] == "delivered" for n in stack.store().load(job_id).notifications) >= count,
          f"{count} notifications of {job_id} delivered", timeout=30)
    return stack.store().load(job_id).notifications


def test_a_job_that_waits_for_approval_and_then_ends_is_notified_signed_each_time(redis_url: str,
                                                                                   tmp_path: Path) -> None:
    with receiving(Receiver()) as generic, receiving(Receiver(), "/slack/hook") as slack, \
            running_stack(redis_url, tmp_path, extra_env=notify_env(generic.url, f"slack:{slack.url}"),
                          worker=False) as stack:
        stack.start_worker()
        scanning(stack)
        job_id, _ = waiting_then_approved(stack)
        until(lambda: len(generic.bodies("boxcut.job.awaiting_approval")) == 1, "the awaiting_approval notice")
        (waiting,) = generic.bodies()
        assert waiting["job_id"] == job_id and waiting["state"] == "awaiting_approval"
        assert waiting["source"] == "test" and waiting["reason"] == "phished" and waiting["requested_by"] == "pytest"
        assert waiting["counts"] == {"pending": 1}
        assert "exceed BOXCUT_APPROVAL_THRESHOLD" in waiting["approval_reasons"][0]
        assert waiting["links"]["job"] == f"https://boxcut.example.com/v1/jobs/{job_id}"

        job = approve_and_finish(stack, job_id)
        assert job.state is JobState.SUCCEEDED
        until(lambda: len(generic.bodies("boxcut.job.finished")) == 1, "the finished notice")
        finished = generic.bodies("boxcut.job.finished")[0]
        assert finished["state"] == "succeeded" and finished["counts"] == {"accepted": 1}
        assert "approval_reasons" not in finished and finished["id"] != waiting["id"]

        records = delivered(stack, job_id, 4)
        until(lambda: len(slack.got) == 2, "both Slack notices")
        assert all(r.signed and r.skew < 10 for r in generic.got + slack.got), generic.got + slack.got
        assert all(set(r.body) == {"text", "blocks"} and job_id in r.body["text"] for r in slack.got)
        assert all(r.path == "/hooks/T0/B0/s3cr3t" for r in generic.got)
        time.sleep(1.5)  # more passes of the scanner: nothing is sent twice
        assert len(generic.got) == 2 and len(slack.got) == 2
        assert sorted((n["event"], n["slack"], n["status"], n["attempts"]) for n in records) == [
            ("awaiting_approval", False, "delivered", 1), ("awaiting_approval", True, "delivered", 1),
            ("finished", False, "delivered", 1), ("finished", True, "delivered", 1)]
        assert "s3cr3t" not in json.dumps(stack.store().load(job_id).to_dict())
        assert "s3cr3t" not in stack.worker_logs()


def test_a_receiver_answering_500_twice_gets_it_on_the_third_try_and_the_job_records_three_attempts(
        redis_url: str, tmp_path: Path) -> None:
    with receiving(Receiver(script=(500, 500))) as flaky, \
            running_stack(redis_url, tmp_path, extra_env=notify_env(flaky.url), worker=False) as stack:
        stack.start_worker()
        scanning(stack)
        job_id, _ = waiting_then_approved(stack)
        (record,) = delivered(stack, job_id, 1)
        assert (record["event"], record["status"], record["attempts"], record["last_http_status"]) == (
            "awaiting_approval", "delivered", 3, 200)
        assert record["url"].startswith("http://127.0.0.1:") and record["url"].endswith("/…")
        tries = flaky.got
        assert len(tries) == 3 and all(t.signed for t in tries)
        assert {t.body["id"] for t in tries} == {f"{job_id}/{record['audit_id']}"}
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
        assert gaps[0] >= 0.45 and gaps[1] >= 0.95, gaps  # 0.5 s, then doubled
        audit = [e["data"] for e in stack.store().audit_entries(job_id=job_id) if e["event"] == "notified"]
        assert [(a["status"], a["attempts"]) for a in audit] == [("delivered", 3)]
