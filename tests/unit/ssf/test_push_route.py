"""POST /v1/ssf/events through the intake app (fakeredis): SETs signed with test RSA and EC keys, and every
refusal RFC 8935 names, each creating no job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.ssf_tokens import (
    ACCOUNT_DISABLED,
    ACCOUNT_PURGED,
    AUDIENCE,
    CREDENTIAL_CHANGE,
    CREDENTIAL_COMPROMISE,
    ISSUER,
    SESSION_REVOKED,
    VERIFICATION,
    SigningKey,
    Transmitter,
    ec_key,
    hmac_with_public_key,
    rsa_key,
    set_claims,
    sign,
    unsigned,
)
from tests.unit.intake_fixtures import IntakeUnderTest, make_intake
from worker.jobs.model import JobState, TargetStatus

RSA, EC, OTHER = rsa_key("rsa-1"), ec_key("ec-1"), rsa_key("rsa-1")  # OTHER: another key under RSA's kid


@pytest.fixture
def intake(tmp_path: Path) -> IntakeUnderTest:
    path = Transmitter([RSA, EC], extra={"iss_sub": "{sub}@example.com"}).write(
        tmp_path, Transmitter([ec_key("second")], issuer="https://second.example.test"))
    return make_intake({"BOXCUT_SSF_TRANSMITTERS": str(path)})


def push(intake: IntakeUnderTest, token: str, content_type: str = "application/secevent+jwt") -> Any:
    return intake.client.post("/v1/ssf/events", content=token.encode(), headers={"Content-Type": content_type})


def jobs(intake: IntakeUnderTest) -> list[Any]:
    summaries, _ = intake.store.list_jobs()
    return [intake.store.load(s.job_id) for s in summaries]


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
def test_a_session_revoked_set_for_an_email_makes_one_job_that_ends_that_persons_sessions(
        intake: IntakeUnderTest, key: SigningKey) -> None:
    claims = set_claims("jdoe@example.com")
    answer = push(intake, sign(claims, key))
    assert answer.status_code == 202 and answer.content == b""
    [job] = jobs(intake)
    assert intake.enqueued == [job.job_id] and job.state is JobState.QUEUED
    assert (job.source, job.source_event_id, job.requested_by) == ("ssf", claims["jti"], f"ssf:{ISSUER}")
    assert [t.input for t in job.targets] == [{"type": "user", "login": "jdoe@example.com"}]
    assert job.reason.startswith("Shared Signals CAEP session-revoked (initiating_entity policy) for email "
                                 "jdoe@example.com from https://idp.example.test"), job.reason


def _refused(intake: IntakeUnderTest, token: str, err: str, *, content_type: str = "application/secevent+jwt",
             already: int = 0) -> str:
    answer = push(intake, token, content_type)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"err", "description"} and body["err"] == err, body
    assert len(jobs(intake)) == already and len(intake.enqueued) == already
    return str(body["description"])


def test_a_replayed_jti_is_refused_and_makes_no_second_job(intake: IntakeUnderTest) -> None:
    token = sign(set_claims(), RSA)
    assert push(intake, token).status_code == 202
    [first] = jobs(intake)
    assert first.job_id in _refused(intake, token, "invalid_request", already=1)
    # The same jti re-signed (a transmitter's retry builds a new JWS) is the same delivery.
    again = set_claims(jti=first.source_event_id)
    _refused(intake, sign(again, EC), "invalid_request", already=1)


def test_the_same_jti_from_two_issuers_is_two_deliveries(tmp_path: Path) -> None:
    second = ec_key("second")
    path = Transmitter([RSA]).write(tmp_path, Transmitter([second], issuer="https://second.example.test"))
    intake = make_intake({"BOXCUT_SSF_TRANSMITTERS": str(path)})
    assert push(intake, sign(set_claims(jti="same"), RSA)).status_code == 202
    assert push(intake, sign(set_claims(jti="same", issuer="https://second.example.test"), second)).status_code == 202
    assert len(jobs(intake)) == 2


def test_a_wrong_audience_is_invalid_audience(intake: IntakeUnderTest) -> None:
    _refused(intake, sign(set_claims(audience="https://someone-else.example.test"), RSA), "invalid_audience")


def test_an_unknown_issuer_is_invalid_issuer(intake: IntakeUnderTest) -> None:
    assert "not a configured transmitter" in _refused(
        intake, sign(set_claims(issuer="https://evil.example.test"), RSA), "invalid_issuer")


def test_an_unknown_kid_is_invalid_key(intake: IntakeUnderTest) -> None:
    _refused(intake, sign(set_claims(), RSA, kid="rotated-away"), "invalid_key")


def test_another_issuers_key_is_not_this_issuers(intake: IntakeUnderTest) -> None:
    _refused(intake, sign(set_claims(), ec_key("second"), kid="second"), "invalid_key")


def test_alg_none_is_refused_as_unauthenticated(intake: IntakeUnderTest) -> None:
    _refused(intake, unsigned(set_claims()), "authentication_failed")


def test_hs256_keyed_with_the_public_key_is_refused(intake: IntakeUnderTest) -> None:
    assert "HS256" in _refused(intake, hmac_with_public_key(set_claims(), RSA), "invalid_key")


def test_a_signature_by_another_key_under_a_known_kid_fails(intake: IntakeUnderTest) -> None:
    _refused(intake, sign(set_claims(), OTHER), "authentication_failed")


def test_an_rsa_signature_under_the_ec_keys_kid_is_refused(intake: IntakeUnderTest) -> None:
    _refused(intake, sign(set_claims(), RSA, kid=EC.kid), "invalid_key")


@pytest.mark.parametrize("age", [901, 3600 * 24])
def test_an_old_iat_is_refused(intake: IntakeUnderTest, age: int) -> None:
    assert "s ago" in _refused(intake, sign(set_claims(iat=time.time() - age), RSA), "invalid_request")


def test_an_iat_from_the_future_is_refused(intake: IntakeUnderTest) -> None:
    assert "future" in _refused(intake, sign(set_claims(iat=time.time() + 600), RSA), "invalid_request")


def test_an_iat_inside_the_window_is_taken(intake: IntakeUnderTest) -> None:
    assert push(intake, sign(set_claims(iat=time.time() - 800), RSA)).status_code == 202


@pytest.mark.parametrize("body", ["", "not a token", "a.b.c", "{\"events\": {}}", "é.é.é"])
def test_a_body_that_is_not_a_jws_is_invalid_request(intake: IntakeUnderTest, body: str) -> None:
    _refused(intake, body, "invalid_request")


def test_a_set_without_typ_secevent_jwt_is_invalid_request(intake: IntakeUnderTest) -> None:
    assert "typ" in _refused(intake, sign(set_claims(), RSA, typ="JWT"), "invalid_request")


@pytest.mark.parametrize("missing", ["jti", "iat", "aud", "events"])
def test_a_set_missing_a_required_claim_is_invalid_request(intake: IntakeUnderTest, missing: str) -> None:
    claims = set_claims()
    del claims[missing]
    assert missing in _refused(intake, sign(claims, RSA), "invalid_request")


def test_a_json_body_is_refused_for_its_content_type(intake: IntakeUnderTest) -> None:
    assert "application/secevent+jwt" in _refused(intake, sign(set_claims(), RSA), "invalid_request",
                                                   content_type="application/json")


def test_without_transmitters_every_set_is_access_denied() -> None:
    intake = make_intake()
    _refused(intake, sign(set_claims(), RSA), "access_denied")


def _recorded(intake: IntakeUnderTest, token: str) -> Any:
    assert push(intake, token).status_code == 202
    [job] = jobs(intake)
    assert job.state is JobState.RECORDED and intake.enqueued == []
    assert all(t.status is TargetStatus.RECORDED for t in job.targets)
    return job


def test_an_event_type_that_does_not_act_is_answered_202_and_recorded(intake: IntakeUnderTest) -> None:
    job = _recorded(intake, sign(set_claims(event=CREDENTIAL_CHANGE, event_claims={"change_type": "update"}), RSA))
    assert "CAEP credential-change does not end sessions" in job.note


def test_the_ssf_verification_event_is_recorded_with_no_subject(intake: IntakeUnderTest) -> None:
    claims = set_claims(event=VERIFICATION, event_claims={"state": "abc"}, sub_id={"format": "opaque", "id": "s1"})
    job = _recorded(intake, sign(claims, RSA))
    assert job.targets == []


def test_risc_account_disabled_acts_and_says_why(intake: IntakeUnderTest) -> None:
    assert push(intake, sign(set_claims(event=ACCOUNT_DISABLED, event_claims={"reason": "hijacking"}),
                             EC)).status_code == 202
    [job] = jobs(intake)
    assert job.state is JobState.QUEUED and "RISC account-disabled (reason hijacking)" in job.reason


def test_an_iss_sub_subject_is_mapped_through_the_transmitters_template(intake: IntakeUnderTest) -> None:
    sub_id = {"format": "iss_sub", "iss": ISSUER, "sub": "jdoe"}
    assert push(intake, sign(set_claims(sub_id=sub_id), RSA)).status_code == 202
    [job] = jobs(intake)
    assert job.state is JobState.QUEUED and [t.input.get("login") for t in job.targets] == ["jdoe@example.com"]


def test_an_iss_sub_of_another_issuer_is_recorded_not_acted_on(intake: IntakeUnderTest) -> None:
    sub_id = {"format": "iss_sub", "iss": "https://other-directory.example.test", "sub": "jdoe"}
    job = _recorded(intake, sign(set_claims(sub_id=sub_id), RSA))
    assert "not mapped" in job.note and job.targets == []


def test_an_opaque_subject_of_an_acting_event_is_recorded_not_acted_on(intake: IntakeUnderTest) -> None:
    job = _recorded(intake, sign(set_claims(sub_id={"format": "opaque", "id": "00u1"}), RSA))
    assert "subject format 'opaque' does not name a Box user" in job.note


def test_a_complex_subject_is_its_user(intake: IntakeUnderTest) -> None:
    sub_id = {"format": "complex", "user": {"format": "email", "email": "jdoe@example.com"},
              "session": {"format": "opaque", "id": "sess-1"}}
    assert push(intake, sign(set_claims(sub_id=sub_id), RSA)).status_code == 202
    assert [t.input.get("login") for t in jobs(intake)[0].targets] == ["jdoe@example.com"]


def test_the_legacy_subject_member_names_the_person(intake: IntakeUnderTest) -> None:
    claims = set_claims(event_claims={"subject": {"subject_type": "email", "email": "jdoe@example.com"}})
    del claims["sub_id"]
    assert push(intake, sign(claims, RSA)).status_code == 202
    [job] = jobs(intake)
    assert job.state is JobState.QUEUED and [t.input.get("login") for t in job.targets] == ["jdoe@example.com"]


def test_the_push_route_asks_no_intake_token_but_the_alert_routes_still_do(intake: IntakeUnderTest) -> None:
    assert push(intake, sign(set_claims(), RSA)).status_code == 202
    assert intake.post("/v1/alerts", {"targets": [{"type": "user", "login": "x@example.com"}]},
                       token=None).status_code == 401


def test_the_audience_may_be_one_of_several(tmp_path: Path) -> None:
    transmitter = Transmitter([RSA])
    transmitter.audience = [AUDIENCE, "https://boxcut-2.example.test"]  # type: ignore[assignment]
    intake = make_intake({"BOXCUT_SSF_TRANSMITTERS": str(transmitter.write(tmp_path))})
    assert push(intake, sign(set_claims(audience="https://boxcut-2.example.test"), RSA)).status_code == 202


# -- what a genuine SET must not do: act on a guess, or fail as a 500 ------------------------------------------


@pytest.mark.parametrize("event", [CREDENTIAL_COMPROMISE, ACCOUNT_PURGED])
def test_the_other_risc_events_act(intake: IntakeUnderTest, event: str) -> None:
    assert push(intake, sign(set_claims(event=event, event_claims={}), RSA)).status_code == 202
    [job] = jobs(intake)
    assert job.state is JobState.QUEUED and intake.enqueued == [job.job_id]


def test_a_set_of_two_events_is_recorded_whatever_subjects_they_name(intake: IntakeUnderTest) -> None:
    claims = set_claims()
    del claims["sub_id"]
    claims["events"] = {VERIFICATION: {"subject": {"format": "email", "email": "innocent@example.com"}},
                        SESSION_REVOKED: {"subject": {"format": "email", "email": "jdoe@example.com"}}}
    job = _recorded(intake, sign(claims, RSA))
    assert "carries 2 events" in job.note


def test_a_sub_id_and_an_event_subject_that_disagree_are_recorded(intake: IntakeUnderTest) -> None:
    claims = set_claims("jdoe@example.com",
                        event_claims={"subject": {"format": "email", "email": "rroe@example.com"}})
    job = _recorded(intake, sign(claims, RSA))
    assert "differ" in job.note and job.targets == []


def test_a_sub_id_repeated_in_the_event_acts(intake: IntakeUnderTest) -> None:
    same = {"format": "email", "email": "jdoe@example.com"}
    assert push(intake, sign(set_claims(sub_id=same, event_claims={"subject": same}), RSA)).status_code == 202
    assert jobs(intake)[0].state is JobState.QUEUED


@pytest.mark.parametrize("email", ["@", "x@", "@example.com", "a b@example.com", "a@b@example.com",
                                   "jdoe@localhost", "jdoe@exa\u200bmple.com", "\u212adoe@example.com"])
def test_an_email_that_is_no_login_is_recorded(intake: IntakeUnderTest, email: str) -> None:
    assert _recorded(intake, sign(set_claims(email), RSA)).targets == []


@pytest.mark.parametrize(("mapping", "sub"), [("user_id", "007"), ("user_id", "1" * 25), ("user_id", "12a"),
                                              ("{sub}@example.com", "alice@evil.example"),
                                              ("{sub}@example.com", "a b"), ("login", "admin")])
def test_an_iss_sub_its_mapping_cannot_make_a_box_user_of_is_recorded(tmp_path: Path, mapping: str,
                                                                      sub: str) -> None:
    path = Transmitter([RSA], extra={"iss_sub": mapping}).write(tmp_path)
    intake = make_intake({"BOXCUT_SSF_TRANSMITTERS": str(path)})
    assert _recorded(intake, sign(set_claims(sub_id={"format": "iss_sub", "iss": ISSUER, "sub": sub}),
                                  RSA)).targets == []


def test_an_iss_sub_mapped_to_user_ids_names_the_box_user(tmp_path: Path) -> None:
    path = Transmitter([RSA], extra={"iss_sub": "user_id"}).write(tmp_path)
    intake = make_intake({"BOXCUT_SSF_TRANSMITTERS": str(path)})
    assert push(intake, sign(set_claims(sub_id={"format": "iss_sub", "iss": ISSUER, "sub": "17738362"}),
                             RSA)).status_code == 202
    assert [t.input for t in jobs(intake)[0].targets] == [{"type": "user", "id": "17738362"}]


@pytest.mark.parametrize("iat", [float("nan"), float("inf"), float("-inf"), 10**400, -(10**400)],
                         ids=["NaN", "inf", "-inf", "huge", "-huge"])
def test_an_iat_that_is_no_time_is_invalid_request(intake: IntakeUnderTest, iat: float) -> None:
    claims = set_claims()
    claims["iat"] = iat
    assert "iat" in _refused(intake, sign(claims, RSA), "invalid_request")


@pytest.mark.parametrize("jti", ["\ud800", "x" * 1001, " "], ids=["lone-surrogate", "too-long", "blank"])
def test_a_jti_that_cannot_key_a_delivery_is_invalid_request(intake: IntakeUnderTest, jti: str) -> None:
    claims = set_claims()
    claims["jti"] = jti
    assert "jti" in _refused(intake, sign(claims, RSA), "invalid_request")


def test_a_lone_surrogate_quoted_back_by_pyjwt_is_still_a_400(intake: IntakeUnderTest) -> None:
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "RS256", "typ": "secevent+jwt", "kid": RSA.kid, "crit": ["\ud800"], "\ud800": 1}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(set_claims()).encode())}.c2ln"
    assert _refused(intake, token, "invalid_request").encode("utf-8")


def test_typ_is_a_media_type_in_any_case(intake: IntakeUnderTest) -> None:
    assert push(intake, sign(set_claims(), RSA, typ="SecEvent+JWT")).status_code == 202


def test_a_target_the_job_model_refuses_makes_a_recorded_job() -> None:
    from worker.jobs.submit import JobRequest
    from worker.ssf.receiver import _job

    job = _job(JobRequest(targets=[{"type": "user", "id": "0123"}], source="ssf", source_event_id="j1"))
    assert job.state is JobState.RECORDED and job.targets == [] and "not usable" in (job.note or "")
