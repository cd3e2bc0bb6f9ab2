"""`boxcut intake --insecure-dev` checks no credentials, so it answers only requests addressed to this machine and
sent by no web page elsewhere: a page the operator visits cannot reach it by DNS rebinding (its own name made to
resolve to 127.0.0.1), post alerts or approve jobs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.intake_fixtures import IntakeUnderTest, make_intake, sample
from worker.jobs.model import JobState

# The attacker's page, at a name of its own that its DNS now answers with 127.0.0.1.
REBOUND_HOST = "rebind.attacker.example:8000"
EVIL_ORIGIN = "http://rebind.attacker.example:8000"


@pytest.fixture
def intake() -> IntakeUnderTest:
    return make_intake(insecure_dev=True)


def _headers(host: str, origin: str | None) -> dict[str, str]:
    return {"Host": host, **({"Origin": origin} if origin is not None else {})}


def _post_alert(intake: IntakeUnderTest, host: str, origin: str | None = None) -> Any:
    return intake.post("/v1/alerts", sample("generic.json"), token=None, headers=_headers(host, origin))


def _approve(intake: IntakeUnderTest, job_id: str, host: str, origin: str | None = None) -> Any:
    return intake.client.post(f"/v1/jobs/{job_id}/approve", headers=_headers(host, origin))


def _waiting_job(intake: IntakeUnderTest) -> str:
    job_id: str = _post_alert(intake, "127.0.0.1:8000").json()["job_id"]
    intake.store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.QUEUED])
    return job_id


def test_a_rebound_page_can_post_no_alert(intake: IntakeUnderTest) -> None:
    answer = _post_alert(intake, REBOUND_HOST, EVIL_ORIGIN)
    assert answer.status_code == 421
    assert answer.json()["error"]["code"] == "misdirected_request"
    assert "localhost" in answer.json()["error"]["message"]
    assert intake.enqueued == []
    # The same without an Origin (a request that is not a browser's fetch), and on every route.
    assert _post_alert(intake, REBOUND_HOST).status_code == 421
    assert intake.client.get("/v1/jobs", headers=_headers(REBOUND_HOST, None)).status_code == 421
    assert intake.enqueued == []


def test_a_rebound_page_can_approve_no_job(intake: IntakeUnderTest) -> None:
    job_id = _waiting_job(intake)
    assert _approve(intake, job_id, REBOUND_HOST, EVIL_ORIGIN).status_code == 421
    assert intake.store.load(job_id).state is JobState.AWAITING_APPROVAL


def test_a_page_elsewhere_can_neither_post_nor_approve_through_a_loopback_host(intake: IntakeUnderTest) -> None:
    job_id = _waiting_job(intake)
    enqueued = list(intake.enqueued)
    for origin in ("https://evil.example", "http://localhost.evil.example:8000", "null"):
        posted = _post_alert(intake, "127.0.0.1:8000", origin)
        assert posted.status_code == 403, origin
        assert posted.json()["error"]["code"] == "forbidden_origin"
        approved = _approve(intake, job_id, "localhost:8000", origin)
        assert approved.status_code == 403 and approved.json()["error"]["code"] == "forbidden_origin"
    assert intake.store.load(job_id).state is JobState.AWAITING_APPROVAL and intake.enqueued == enqueued


@pytest.mark.parametrize(("host", "origin"), [
    ("localhost:8000", None), ("127.0.0.1", None), ("[::1]:8000", "http://[::1]:8000"),
    ("LOCALHOST:8000", "http://localhost:3000"), ("127.0.0.1:8000", "https://127.0.0.1"),
])
def test_this_machine_is_answered(intake: IntakeUnderTest, host: str, origin: str | None) -> None:
    assert _post_alert(intake, host, origin).status_code == 202
    job_id = _waiting_job(intake)
    assert _approve(intake, job_id, host, origin).status_code == 200


def test_an_intake_with_credentials_answers_the_host_its_proxy_gives() -> None:
    intake = make_intake()  # behind a reverse proxy the Host is the public name; credentials guard it
    answer = intake.post("/v1/alerts", sample("generic.json"), headers=_headers("boxcut.example.com", None))
    assert answer.status_code == 202
