"""The HTTP intake in process: every sender's sample, auth, de-duplication, limits, operator API."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tests.unit.intake_fixtures import (
    INTAKE_TOKEN,
    OPERATOR_TOKEN,
    ROTATED_HMAC_SECRET,
    ROTATED_TOKEN,
    IntakeUnderTest,
    make_intake,
    sample,
)
from worker.jobs.model import JobState


@pytest.fixture
def intake() -> IntakeUnderTest:
    return make_intake()


def login(value: str) -> dict[str, str]:
    return {"type": "user", "login": value}


SAMPLE_CASES = [
    ("/v1/alerts", "generic.json",
     [login("jdoe@example.com"), {"type": "user", "id": "17738362"}, {"type": "group", "name": "Contractors"}]),
    ("/v1/alerts/splunk", "splunk.json", [login("jdoe@example.com")]),
    ("/v1/alerts/sentinel", "sentinel-incident.json", [login("jdoe@example.com")]),
    ("/v1/alerts/sentinel", "sentinel-alert.json", [login("jdoe@example.com")]),
    ("/v1/alerts/elastic", "elastic.json", [login("jdoe@example.com"), login("rroe@example.com")]),
    ("/v1/alerts/datadog", "datadog.json", [login("jdoe@example.com")]),
    ("/v1/alerts/panther", "panther.json", [login("jdoe@example.com")]),
    ("/v1/alerts/sumologic", "sumologic.json", [login("jdoe@example.com"), login("rroe@example.com")]),
    ("/v1/alerts/okta", "okta-event-hook.json", [login("jdoe@example.com")]),
    ("/v1/alerts/box-shield", "box-shield-alert.json", [{"type": "user", "id": "17738362"}]),
]


@pytest.mark.parametrize(("path", "name", "targets"), SAMPLE_CASES, ids=[c[1] for c in SAMPLE_CASES])
def test_every_sample_becomes_a_job_with_its_targets(intake: IntakeUnderTest, path: str, name: str,
                                                     targets: list[dict[str, str]]) -> None:
    answer = intake.post(path, sample(name))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["duplicate"] is False and body["status_url"] == f"/v1/jobs/{body['job_id']}"
    job = intake.store.load(body["job_id"])
    assert [t.input for t in job.targets] == targets
    assert job.state is JobState.QUEUED and intake.enqueued == [job.job_id]
    assert job.source == path.rsplit("/", 1)[-1].replace("alerts", "generic")
    assert job.requested_by.endswith(":token#1")


def test_sentinel_incident_with_two_accounts_has_two_targets(intake: IntakeUnderTest) -> None:
    payload = sample("sentinel-incident.json")
    entities = payload["object"]["properties"]["relatedEntities"]
    entities.append({"id": "x", "kind": "Account", "properties": {"accountName": "rroe", "upnSuffix": "example.com"}})
    job = intake.store.load(intake.post("/v1/alerts/sentinel", payload).json()["job_id"])
    assert [t.input for t in job.targets] == [login("jdoe@example.com"), login("rroe@example.com")]
    assert job.source_event_id == "8c0a51d6-2f0b-4f3e-8d63-2a7a3e4c9f10"


def test_okta_batch_keeps_only_the_chosen_event_types(intake: IntakeUnderTest) -> None:
    payload = sample("okta-event-hook.json")
    first = payload["data"]["events"][0]
    session = copy.deepcopy(first) | {"uuid": "e-2", "eventType": "user.session.start"}
    suspend = copy.deepcopy(first) | {"uuid": "e-3", "eventType": "user.lifecycle.suspend"}
    suspend["target"] = [{"id": "00u2", "type": "User", "alternateId": "rroe@example.com"}]
    payload["data"]["events"] += [session, suspend]
    body = intake.post("/v1/alerts/okta", payload).json()
    assert [j["source_event_id"] for j in body["jobs"]] == [first["uuid"], "e-3"]
    assert [intake.store.load(j["job_id"]).targets[0].input for j in body["jobs"]] == [
        login("jdoe@example.com"), login("rroe@example.com")]


def test_okta_batch_without_chosen_events_creates_nothing_and_says_ok(intake: IntakeUnderTest) -> None:
    payload = sample("okta-event-hook.json")
    payload["data"]["events"][0]["eventType"] = "user.session.start"
    answer = intake.post("/v1/alerts/okta", payload)
    assert answer.status_code == 200 and answer.json()["jobs"] == [] and intake.enqueued == []


def test_splunk_identity_under_a_path_set_in_settings() -> None:
    intake = make_intake({"BOXCUT_IDENTITY_PATHS_SPLUNK": "result.actor_upn"})
    payload = sample("splunk.json")
    payload["result"] = {"actor_upn": "rroe@example.com", "user": "jdoe@example.com"}
    job = intake.store.load(intake.post("/v1/alerts/splunk", payload).json()["job_id"])
    assert [t.input for t in job.targets] == [login("rroe@example.com")]


def test_okta_verification_challenge(intake: IntakeUnderTest) -> None:
    answer = intake.client.get("/v1/alerts/okta", headers={"X-Okta-Verification-Challenge": "abc123",
                                                           "Authorization": f"Bearer {INTAKE_TOKEN}"})
    assert answer.status_code == 200 and answer.json() == {"verification": "abc123"}
    assert intake.client.get("/v1/alerts/okta", headers={"X-Okta-Verification-Challenge": "x"}).status_code == 401


# -- authentication ------------------------------------------------------------------------------------------


def test_refused_credentials_get_401_and_create_nothing(intake: IntakeUnderTest) -> None:
    payload = sample("panther.json")
    answers = [
        intake.post("/v1/alerts/panther", payload, token=None),
        intake.post("/v1/alerts/panther", payload, token="wrong"),
        intake.post("/v1/alerts/panther", payload, token=OPERATOR_TOKEN),
        intake.post_signed("/v1/alerts/panther", payload, timestamp=time.time() - 301),
        intake.post_signed("/v1/alerts/panther", payload, secret="not-a-configured-secret"),
        intake.post_signed("/v1/alerts/panther", payload, tamper=True),
    ]
    assert [a.status_code for a in answers] == [401] * 6
    assert all(a.json()["error"]["code"] == "unauthorized" for a in answers)
    assert intake.enqueued == [] and intake.store.list_jobs()[0] == []


def test_rotated_credentials_both_work(intake: IntakeUnderTest) -> None:
    first = intake.post("/v1/alerts", sample("generic.json") | {"id": "a"}, token=ROTATED_TOKEN)
    second = intake.post_signed("/v1/alerts", sample("generic.json") | {"id": "b"}, secret=ROTATED_HMAC_SECRET)
    assert (first.status_code, second.status_code) == (202, 202)
    assert intake.store.load(second.json()["job_id"]).requested_by == "generic:hmac#2"


def test_intake_token_cannot_use_the_operator_api(intake: IntakeUnderTest) -> None:
    job_id = intake.post("/v1/alerts", sample("generic.json")).json()["job_id"]
    assert intake.operator_get(f"/v1/jobs/{job_id}", token=INTAKE_TOKEN).status_code == 403
    assert intake.client.get(f"/v1/jobs/{job_id}").status_code == 401
    assert intake.client.post(f"/v1/jobs/{job_id}/cancel",
                              headers={"Authorization": f"Bearer {INTAKE_TOKEN}"}).status_code == 403
    assert intake.store.load(job_id).state is JobState.QUEUED


def test_query_token_only_where_settings_allow_it() -> None:
    refused = make_intake()
    allowed = make_intake({"BOXCUT_QUERY_TOKEN_SOURCES": "splunk"})
    path = f"/v1/alerts/splunk?token={INTAKE_TOKEN}"
    assert refused.post(path, sample("splunk.json"), token=None).status_code == 401
    assert allowed.post(path, sample("splunk.json"), token=None).status_code == 202
    assert allowed.post(f"/v1/alerts/panther?token={INTAKE_TOKEN}", sample("panther.json"), token=None
                        ).status_code == 401


# -- de-duplication ------------------------------------------------------------------------------------------


def test_a_repeated_event_returns_the_first_job_and_creates_nothing(intake: IntakeUnderTest) -> None:
    first = intake.post("/v1/alerts/panther", sample("panther.json"))
    again = intake.post("/v1/alerts/panther", sample("panther.json") | {"title": "edited"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["duplicate"] is True
    assert intake.enqueued == [first.json()["job_id"]]


def test_idempotency_key_header_for_a_sender_without_event_ids(intake: IntakeUnderTest) -> None:
    headers = {"Idempotency-Key": "sumo-run-42"}
    first = intake.post("/v1/alerts/sumologic", sample("sumologic.json"), headers=headers)
    again = intake.post("/v1/alerts/sumologic", sample("sumologic.json"), headers=headers)
    other = intake.post("/v1/alerts/sumologic", sample("sumologic.json"))
    assert again.json()["job_id"] == first.json()["job_id"] and again.status_code == 200
    assert other.json()["job_id"] != first.json()["job_id"]  # no body hash: without a key, a new job
    assert len(intake.enqueued) == 2


# -- limits and errors ---------------------------------------------------------------------------------------


def test_limits_and_malformed_bodies_change_nothing() -> None:
    intake = make_intake({"BOXCUT_INTAKE_MAX_BODY_BYTES": "1024"})
    auth = {"Authorization": f"Bearer {INTAKE_TOKEN}"}
    big = intake.client.post("/v1/alerts", content=b"[" + b"1," * 2000 + b"1]",
                             headers={**auth, "Content-Type": "application/json"})
    text = intake.client.post("/v1/alerts", content=b"hello", headers={**auth, "Content-Type": "text/plain"})
    broken = intake.client.post("/v1/alerts", content=b'{"targets": [', headers={**auth,
                                                                              "Content-Type": "application/json"})
    assert (big.status_code, text.status_code, broken.status_code) == (413, 415, 400)
    assert broken.json()["error"]["code"] == "malformed_json"
    assert intake.enqueued == [] and intake.store.list_jobs()[0] == []


@pytest.mark.parametrize(("payload", "named"), [
    ({"targets": [{"type": "user"}]}, "targets[0]"),
    ({"targets": [{"type": "user", "login": {"a": 1}}]}, "targets[0].login"),
    ({"targets": "jdoe@example.com"}, "targets"),
    ({"targets": [{"type": "user", "login": "a@example.com"}], "dry_run": "yes"}, "dry_run"),
])
def test_a_bad_envelope_is_422_naming_the_field(intake: IntakeUnderTest, payload: object, named: str) -> None:
    answer = intake.post("/v1/alerts", payload)
    assert answer.status_code == 422 and named in answer.json()["error"]["message"]
    assert intake.enqueued == []


def test_no_identity_is_422_naming_the_paths_tried(intake: IntakeUnderTest) -> None:
    answer = intake.post("/v1/alerts/splunk", {"sid": "s1", "result": {"src_ip": "203.0.113.7"}})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "no_identity"
    assert "result.user" in answer.json()["error"]["message"]


def test_unknown_source_is_an_error_in_the_contract_shape(intake: IntakeUnderTest) -> None:
    answer = intake.post("/v1/alerts/nagios", {"a": 1})
    assert answer.status_code == 422 and "error" in answer.json()


# -- operator API and health ---------------------------------------------------------------------------------


def test_operator_reads_lists_and_cancels(intake: IntakeUnderTest) -> None:
    panther = intake.post("/v1/alerts/panther", sample("panther.json")).json()["job_id"]
    splunk = intake.post("/v1/alerts/splunk", sample("splunk.json")).json()["job_id"]
    record = intake.operator_get(f"/v1/jobs/{panther}").json()
    assert record["job_id"] == panther and record["source"] == "panther" and record["link"]
    listing = intake.operator_get("/v1/jobs?source=splunk").json()
    assert [j["job_id"] for j in listing["jobs"]] == [splunk] and listing["next_cursor"] is None
    page = intake.operator_get("/v1/jobs?state=queued&limit=1").json()
    assert len(page["jobs"]) == 1 and page["next_cursor"] == "1"
    cancel = intake.client.post(f"/v1/jobs/{panther}/cancel", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert cancel.status_code == 200 and cancel.json()["state"] == "cancelled"
    again = intake.client.post(f"/v1/jobs/{panther}/cancel", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert again.status_code == 200 and again.json()["state"] == "cancelled"  # asked twice: already done
    intake.store.transition(splunk, to=JobState.SUCCEEDED, allowed_from=[JobState.QUEUED])
    late = intake.client.post(f"/v1/jobs/{splunk}/cancel", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_cancellable"
    assert intake.operator_get("/v1/jobs/j-nope").status_code == 404


def test_health_readiness_and_metrics(intake: IntakeUnderTest) -> None:
    intake.post("/v1/alerts/panther", sample("panther.json"))
    intake.post("/v1/alerts/panther", sample("panther.json"))
    intake.post("/v1/alerts/panther", sample("panther.json"), token="wrong")
    assert intake.client.get("/healthz").json() == {"status": "ok"}
    assert intake.client.get("/readyz").status_code == 200
    text = intake.client.get("/metrics").text
    assert 'boxcut_jobs_created_total{source="panther"} 1.0' in text
    assert 'boxcut_intake_duplicates_total{source="panther"} 1.0' in text
    assert 'boxcut_intake_auth_failures_total{endpoint="alerts"} 1.0' in text
    assert 'boxcut_intake_requests_total{outcome="accepted",source="panther"} 1.0' in text


def test_a_resolved_sumologic_notification_ends_nobodys_sessions(intake: IntakeUnderTest) -> None:
    answer = intake.post("/v1/alerts/sumologic", sample("sumologic.json") | {"TriggerType": "ResolvedCritical"})
    assert answer.status_code == 200 and answer.json()["jobs"] == [] and intake.enqueued == []


def test_identity_paths_an_adapter_would_refuse_stop_the_start() -> None:
    from config import SettingsError, load_settings
    from worker.intake.build import check_identity_paths

    settings = load_settings({"BOXCUT_IDENTITY_PATHS_OKTA": "actor.alternateId"}, env_file=None)
    with pytest.raises(SettingsError, match=r"^BOXCUT_IDENTITY_PATHS_OKTA: "):
        check_identity_paths(settings)


# -- offboarding, approve and retry over the API --------------------------------------------------------------


def _operator_post(intake: IntakeUnderTest, path: str, body: bytes = b"", content_type: str = "text/csv",
                   token: str = OPERATOR_TOKEN, headers: dict[str, str] | None = None) -> Any:
    return intake.client.post(path, content=body, headers={"Authorization": f"Bearer {token}",
                                                           "Content-Type": content_type, **(headers or {})})


def test_offboarding_csv_becomes_one_job_and_a_repeat_with_the_same_key_returns_it(intake: IntakeUnderTest) -> None:
    body = b"\xef\xbb\xbfUser_Login,reason\r\nalice@example.com,contract ended\r\n\r\nbob@example.com,\r\n"
    first = _operator_post(intake, "/v1/offboarding?approve=true", body, headers={"Idempotency-Key": "q4"})
    again = _operator_post(intake, "/v1/offboarding?approve=true", body, headers={"Idempotency-Key": "q4"})
    assert (first.status_code, again.status_code) == (202, 200), first.text
    assert first.json()["targets"] == 2 and again.json()["job_id"] == first.json()["job_id"]
    job = intake.store.load(first.json()["job_id"])
    assert job.source == "offboarding" and [t.input.get("reason") for t in job.targets] == ["contract ended", None]
    assert job.approval is not None and job.approval.approved_by == "operator:token#1"
    assert intake.enqueued == [job.job_id]


def test_offboarding_json_list_and_refusals(intake: IntakeUnderTest) -> None:
    good = _operator_post(intake, "/v1/offboarding", json.dumps([{"user_id": 17738362}, {"group_name": "Eng"}]
                                                               ).encode(), content_type="application/json")
    assert good.status_code == 202 and good.json()["targets"] == 2
    bad = _operator_post(intake, "/v1/offboarding", b"user_id\n12\nabc\n,\n")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_file"
    assert "line 3:" in bad.json()["error"]["message"] and "line 4:" in bad.json()["error"]["message"]
    assert _operator_post(intake, "/v1/offboarding", b"user_id\n12\n", token=INTAKE_TOKEN).status_code == 403
    assert _operator_post(intake, "/v1/offboarding", b"x", content_type="text/plain").status_code == 415
    assert len(intake.enqueued) == 1


def test_approve_and_retry_over_the_api(intake: IntakeUnderTest) -> None:
    job_id = intake.post("/v1/alerts", sample("generic.json")).json()["job_id"]
    assert _operator_post(intake, f"/v1/jobs/{job_id}/approve").status_code == 409
    restarted = _operator_post(intake, f"/v1/jobs/{job_id}/retry")  # queued, and no worker runs it: enqueued again
    assert restarted.status_code == 200 and restarted.json()["restarted"] is True
    intake.enqueued.remove(job_id)
    intake.store.transition(job_id, to=JobState.AWAITING_APPROVAL, allowed_from=[JobState.QUEUED])
    assert _operator_post(intake, f"/v1/jobs/{job_id}/retry").status_code == 409  # waits for a person
    approved = _operator_post(intake, f"/v1/jobs/{job_id}/approve")
    assert approved.status_code == 200 and approved.json()["state"] == "resolving"
    assert approved.json()["approval"]["approved_by"] == "operator:token#1"
    assert intake.enqueued == [job_id, job_id]
    assert _operator_post(intake, f"/v1/jobs/{job_id}/approve", token=INTAKE_TOKEN).status_code == 403
    assert _operator_post(intake, "/v1/jobs/j-nope/retry").status_code == 404


def test_one_hostile_event_in_a_box_shield_batch_does_not_stop_the_others(intake: IntakeUnderTest) -> None:
    good = sample("box-shield-alert.json")
    hostile = copy.deepcopy(good) | {"event_id": "hostile-1"}
    hostile["additional_details"]["shield_alert"]["user"] = {"id": "12/../me"}
    answer = intake.post("/v1/alerts/box-shield", [hostile, good])
    assert answer.status_code == 202, answer.text
    assert [intake.store.load(j["job_id"]).targets[0].input for j in answer.json()["jobs"]] == [
        {"type": "user", "id": "17738362"}]
    alone = intake.post("/v1/alerts/box-shield", [hostile])
    assert alone.status_code == 422 and "not a Box id" in alone.json()["error"]["message"]


def test_an_alert_while_redis_cannot_store_it_gets_503_json_with_retry_after() -> None:
    intake = make_intake()
    assert intake.server is not None
    intake.server.connected = False  # Redis down (fakeredis raises redis.ConnectionError)
    answer = intake.post("/v1/alerts", {"id": "down-1", "targets": [{"type": "user", "login": "a@example.com"}]})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    error = answer.json()["error"]
    assert error["code"] == "unavailable" and "nothing was kept" in error["message"]
    intake.server.connected = True
    again = intake.post("/v1/alerts", {"id": "down-1", "targets": [{"type": "user", "login": "a@example.com"}]})
    assert again.status_code == 202  # the sender's retry makes the job: nothing half-kept blocks it
