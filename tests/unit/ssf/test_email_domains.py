"""A transmitter speaks for its own directory: a SET naming a person outside its e-mail domains (`email_domains`,
by default the domain its `iss_sub` template writes) is answered 202 and recorded, never acted on, whichever
subject format names them. A stolen transmitter key cannot reach `ceo@other-company.com`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config import SettingsError, load_settings
from tests.ssf_tokens import ISSUER, Transmitter, rsa_key, set_claims, sign
from tests.unit.intake_fixtures import IntakeUnderTest, make_intake
from worker.jobs.model import JobState, TargetStatus

KEY = rsa_key("rsa-1")
OUTSIDE = "ceo@other-company.com"


def _intake(tmp_path: Path, **extra: Any) -> IntakeUnderTest:
    path = Transmitter([KEY], extra=extra).write(tmp_path)
    return make_intake({"BOXCUT_SSF_TRANSMITTERS": str(path)})


def _push(intake: IntakeUnderTest, claims: dict[str, Any]) -> Any:
    answer = intake.client.post("/v1/ssf/events", content=sign(claims, KEY).encode(),
                                headers={"Content-Type": "application/secevent+jwt"})
    assert answer.status_code == 202, answer.text
    [summary] = intake.store.list_jobs()[0]
    return intake.store.load(summary.job_id)


def _recorded(intake: IntakeUnderTest, claims: dict[str, Any]) -> Any:
    job = _push(intake, claims)
    assert job.state is JobState.RECORDED and intake.enqueued == [] and job.targets == [], job
    return job


def _legacy(sub_id: dict[str, Any]) -> dict[str, Any]:
    claims = set_claims(event_claims={"subject": sub_id})
    del claims["sub_id"]
    return claims


# Made when a test runs, not when the module is imported: a SET is refused once older than 15 minutes, and a
# whole suite takes longer than that.
SUBJECTS: dict[str, Callable[[], dict[str, Any]]] = {
    "email": lambda: set_claims(OUTSIDE),
    "complex": lambda: set_claims(sub_id={"format": "complex", "user": {"format": "email", "email": OUTSIDE}}),
    "legacy subject": lambda: _legacy({"subject_type": "email", "email": OUTSIDE}),
}


@pytest.mark.parametrize("claims", SUBJECTS.values(), ids=SUBJECTS.keys())
def test_a_template_transmitter_naming_another_domain_is_recorded_not_acted_on(
        tmp_path: Path, claims: Callable[[], dict[str, Any]]) -> None:
    job = _recorded(_intake(tmp_path, iss_sub="{sub}@example.com"), claims())
    assert "'other-company.com' is not an e-mail domain this transmitter may name (example.com" in job.note
    assert OUTSIDE in job.reason  # the record says whom the SET named


def test_its_own_domain_acts_in_any_case_but_a_subdomain_is_another_domain(tmp_path: Path) -> None:
    intake = _intake(tmp_path, iss_sub="{sub}@Example.com")
    job = _push(intake, set_claims("jdoe@EXAMPLE.com"))
    assert job.state is JobState.QUEUED and [t.status for t in job.targets] == [TargetStatus.PENDING]
    intake = _intake(tmp_path, iss_sub="{sub}@example.com")
    _recorded(intake, set_claims("jdoe@mail.example.com"))


def test_an_iss_sub_login_outside_the_listed_domains_is_recorded(tmp_path: Path) -> None:
    intake = _intake(tmp_path, iss_sub="login", email_domains=["example.com", "example.org"])
    _recorded(intake, set_claims(sub_id={"format": "iss_sub", "iss": ISSUER, "sub": OUTSIDE}))


def test_listed_domains_replace_the_templates_and_star_allows_any(tmp_path: Path) -> None:
    listed = _intake(tmp_path, iss_sub="{sub}@example.com", email_domains=["other-company.com"])
    assert _push(listed, set_claims(OUTSIDE)).state is JobState.QUEUED
    anyone = _intake(tmp_path, iss_sub="{sub}@example.com", email_domains="*")  # the file is read at once
    assert _push(anyone, set_claims(OUTSIDE)).state is JobState.QUEUED


def test_without_a_template_or_a_list_any_domain_is_named(tmp_path: Path) -> None:
    assert _push(_intake(tmp_path), set_claims(OUTSIDE)).state is JobState.QUEUED


def test_a_box_user_id_is_acted_on_only_while_no_domains_are_listed(tmp_path: Path) -> None:
    user = set_claims(sub_id={"format": "iss_sub", "iss": ISSUER, "sub": "17738362"})
    assert _push(_intake(tmp_path, iss_sub="user_id"), user).state is JobState.QUEUED
    job = _recorded(_intake(tmp_path, iss_sub="user_id", email_domains=["example.com"]), user)
    assert "a Box user id shows no e-mail domain" in job.note


@pytest.mark.parametrize("domains", [[], ["@example.com"], ["localhost"], ["example..com"], [""], [7], "x y.com"])
def test_a_domain_that_is_no_domain_is_refused_at_start(tmp_path: Path, domains: Any) -> None:
    entry = Transmitter([KEY], extra={"email_domains": domains}).entry()
    path = tmp_path / "transmitters.json"
    path.write_text(json.dumps({"transmitters": [entry]}))
    with pytest.raises(SettingsError, match="email_domains"):
        load_settings({"BOXCUT_SSF_TRANSMITTERS": str(path)}, env_file=None)
