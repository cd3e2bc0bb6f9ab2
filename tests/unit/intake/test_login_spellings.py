"""A login spelled with a character that lower-cases to ASCII (U+212A KELVIN SIGN for `K`) would resolve to the
Box user whose login is its ASCII spelling: at every entrance it is refused with a clear answer, and makes no
job; in a batch, only its own event is skipped."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.intake_fixtures import IntakeUnderTest, make_intake, sample
from worker.errors import AdapterError
from worker.event_stream.shield import ShieldAlert

KELVIN_KIM = "\u212aim@example.com"  # compares as kim@example.com under the old rule


@pytest.fixture
def intake() -> IntakeUnderTest:
    return make_intake()


def _jobs(intake: IntakeUnderTest) -> list[Any]:
    return intake.store.list_jobs()[0]


def test_a_generic_alert_naming_a_kelvin_sign_login_is_refused_422_and_makes_no_job(intake: IntakeUnderTest) -> None:
    answer = intake.post("/v1/alerts", {"targets": [{"type": "user", "login": KELVIN_KIM}], "reason": "phish"})
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]["message"]
    assert "targets[0].login" in message and "U+212A KELVIN SIGN" in message and "another login" in message
    assert _jobs(intake) == [] and intake.enqueued == []


def test_a_splunk_alert_naming_one_is_refused_too(intake: IntakeUnderTest) -> None:
    payload = sample("splunk.json")
    payload["result"]["user"] = KELVIN_KIM
    answer = intake.post("/v1/alerts/splunk", payload)
    assert answer.status_code == 422 and "KELVIN SIGN" in answer.text, answer.text
    assert _jobs(intake) == []


def test_in_an_okta_batch_only_the_event_naming_one_is_skipped(intake: IntakeUnderTest) -> None:
    payload = sample("okta-event-hook.json")
    spoofed = copy.deepcopy(payload["data"]["events"][0]) | {"uuid": "e-2"}
    spoofed["target"] = [{"id": "00u2", "type": "User", "alternateId": KELVIN_KIM}]
    payload["data"]["events"].append(spoofed)
    answer = intake.post("/v1/alerts/okta", payload)
    assert answer.status_code == 202, answer.text
    [job] = [intake.store.load(s.job_id) for s in _jobs(intake)]
    assert [t.input["login"] for t in job.targets] == ["jdoe@example.com"]


def test_a_box_shield_event_naming_one_by_email_is_not_a_job() -> None:
    event = {"event_id": "ev-1", "event_type": "SHIELD_ALERT", "additional_details": {"shield_alert": {
        "rule_category": "Suspicious Locations", "priority": "high", "user": {"email": KELVIN_KIM}}}}
    with pytest.raises(AdapterError, match="KELVIN SIGN"):
        ShieldAlert.of(event)


def test_the_cli_and_offboarding_entrances_refuse_it() -> None:
    from worker.errors import InvalidInput
    from worker.jobs.offboarding_file import parse_csv
    from worker.jobs.submit import JobRequest, build_job

    with pytest.raises(InvalidInput, match="KELVIN SIGN"):
        build_job(JobRequest(targets=[{"type": "user", "login": KELVIN_KIM}], source="cli"))
    with pytest.raises(InvalidInput, match="KELVIN SIGN"):
        parse_csv(f"user_login\n{KELVIN_KIM}\n".encode())
