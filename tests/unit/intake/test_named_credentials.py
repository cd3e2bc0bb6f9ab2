"""People by name: a named intake token, HMAC key or operator token puts its name in the job and the audit;
unnamed entries keep their position (`token#N`), and a name given twice stops the start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config import SettingsError, load_settings
from tests.unit.intake_fixtures import IntakeUnderTest, make_intake
from worker.jobs.model import JobState, TargetStatus

NAMED = {
    "BOXCUT_INTAKE_TOKENS": "soc-splunk:splunk-secret-1,unnamed-intake-2",
    "BOXCUT_INTAKE_HMAC_SECRETS": "siem.hmac@eu:hmac-secret-1",
    "BOXCUT_OPERATOR_TOKENS": "alice:alice-secret-1,bob@example.com:bob-secret-1,unnamed-operator-3",
}
ALERT = {"id": "a-1", "targets": [{"type": "user", "login": "jdoe@example.com"}]}


@pytest.fixture
def intake() -> IntakeUnderTest:
    return make_intake(NAMED)


def _operator_post(intake: IntakeUnderTest, path: str, token: str) -> Any:
    return intake.client.post(path, headers={"Authorization": f"Bearer {token}"})


def _actors(intake: IntakeUnderTest, job_id: str) -> list[str]:
    """Who moved the job, in order, as its audit entries say."""
    return [row["data"]["actor"] for row in intake.store.audit_entries(job_id=job_id) if "actor" in row["data"]]


def test_a_named_intake_token_or_hmac_key_names_the_sender_and_an_unnamed_one_keeps_its_place(
        intake: IntakeUnderTest) -> None:
    by_token = intake.post("/v1/alerts/splunk", {"sid": "s-1", "result": {"user": "jdoe@example.com"}},
                           token="splunk-secret-1")
    by_key = intake.post_signed("/v1/alerts", ALERT, secret="hmac-secret-1")
    unnamed = intake.post("/v1/alerts", ALERT | {"id": "a-2"}, token="unnamed-intake-2")
    assert {a.status_code for a in (by_token, by_key, unnamed)} == {202}, by_token.text + by_key.text
    assert intake.store.load(by_token.json()["job_id"]).requested_by == "splunk:soc-splunk"
    assert intake.store.load(by_key.json()["job_id"]).requested_by == "generic:siem.hmac@eu"
    assert intake.store.load(unnamed.json()["job_id"]).requested_by == "generic:token#2"


def test_a_named_operator_is_recorded_for_approve_retry_and_cancel(intake: IntakeUnderTest) -> None:
    job_id = intake.post("/v1/alerts", ALERT, token="splunk-secret-1").json()["job_id"]
    restarted = _operator_post(intake, f"/v1/jobs/{job_id}/retry", "bob-secret-1")  # queued, no worker: again
    assert restarted.status_code == 200 and restarted.json()["restarted"] is True
    intake.store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.QUEUED])
    approved = _operator_post(intake, f"/v1/jobs/{job_id}/approve", "alice-secret-1")
    assert approved.status_code == 200 and approved.json()["approval"]["approved_by"] == "operator:alice"
    assert _operator_post(intake, f"/v1/jobs/{job_id}/cancel", "bob-secret-1").status_code == 200
    assert _actors(intake, job_id)[-2:] == ["operator:alice", "operator:bob@example.com"]
    notes = " ".join(str(row["data"]) for row in intake.store.audit_entries(job_id=job_id))
    assert "operator:bob@example.com asked to retry" in notes


def test_a_named_operators_retry_of_a_failed_job_is_recorded(intake: IntakeUnderTest) -> None:
    job_id = intake.post("/v1/alerts", ALERT, token="splunk-secret-1").json()["job_id"]
    target = intake.store.load(job_id).targets[0]
    target.status = TargetStatus.FAILED
    intake.store.save_targets(job_id, {0: target}, event="test")
    intake.store.transition(job_id, to=JobState.FAILED, allowed_from=[JobState.QUEUED])
    retried = _operator_post(intake, f"/v1/jobs/{job_id}/retry", "alice-secret-1")
    assert retried.status_code == 200 and retried.json()["retried"] == 1, retried.text
    assert _actors(intake, job_id)[-1] == "operator:alice"


def test_a_named_operators_offboarding_and_its_approval_carry_the_name(intake: IntakeUnderTest) -> None:
    def offboard(token: str, login: str) -> Any:
        answer = intake.client.post("/v1/offboarding?approve=true", content=f"user_login\n{login}\n".encode(),
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
        return intake.store.load(answer.json()["job_id"])

    job = offboard("alice-secret-1", "ann@example.com")
    assert job.requested_by == "operator:alice"
    assert job.approval is not None and job.approval.approved_by == "operator:alice"
    assert offboard("unnamed-operator-3", "bo@example.com").requested_by == "operator:token#3"  # unnamed: its place


@pytest.mark.parametrize("entry", ["p/ss:word", ":leading-colon", "trailing-colon:", "has space:x"])
def test_a_secret_with_a_colon_that_names_nothing_stays_whole_and_unnamed(entry: str) -> None:
    settings = load_settings({"BOXCUT_OPERATOR_TOKENS": entry}, env_file=None)
    (credential,) = settings.operator_tokens
    assert credential.name is None and credential.secret.reveal() == entry


def test_only_the_first_colon_separates_the_name() -> None:
    (credential,) = load_settings({"BOXCUT_INTAKE_TOKENS": "legacy:abc:def"}, env_file=None).intake_tokens
    assert (credential.name, credential.secret.reveal()) == ("legacy", "abc:def")


def test_the_file_forms_take_names_alike_one_entry_a_line(tmp_path: Path) -> None:
    names = {}
    for variable, text in NAMED.items():
        (tmp_path / variable).write_text(text.replace(",", "\n") + "\n")
        names[f"{variable}_FILE"] = str(tmp_path / variable)
    intake = make_intake({**{v: "" for v in NAMED}, **names})
    job_id = intake.post("/v1/alerts", ALERT, token="splunk-secret-1").json()["job_id"]
    intake.store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.QUEUED])
    assert _operator_post(intake, f"/v1/jobs/{job_id}/approve", "alice-secret-1").status_code == 200
    assert intake.store.load(job_id).requested_by == "generic:soc-splunk"
    assert _actors(intake, job_id)[-1] == "operator:alice"


@pytest.mark.parametrize("variable", ["BOXCUT_INTAKE_TOKENS", "BOXCUT_INTAKE_HMAC_SECRETS", "BOXCUT_OPERATOR_TOKENS"])
def test_a_name_given_twice_stops_the_start_naming_the_variable(variable: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: .*'alice'.*more than one"):
        load_settings({variable: "alice:one-secret,alice:another-secret"}, env_file=None)
    (tmp_path / "list").write_text("alice:one-secret,alice:another-secret")
    with pytest.raises(SettingsError, match=rf"^{variable}_FILE: .*'alice'"):
        load_settings({f"{variable}_FILE": str(tmp_path / "list")}, env_file=None)


def test_names_are_shown_and_secrets_are_not() -> None:
    settings = load_settings(NAMED, env_file=None)
    shown = repr(settings)
    assert "alice" in shown and "soc-splunk" in shown
    assert not any(secret in shown for secret in ("alice-secret-1", "splunk-secret-1", "hmac-secret-1"))
