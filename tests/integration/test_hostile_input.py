"""What an adversarial review found, pinned where a user meets it: the real intake over HTTP, a real worker, boxsim.

1. Two people whose logins casefold alike (`straße@`, `strasse@`) are two targets, and both end accepted.
2. An id that is not a Box id is refused at every entrance (422 naming the field), and a record that holds one
   anyway sends nothing: boxsim's request log shows no request for it.
3. A captured signed request sent again within the signature's window makes no second job, whatever its
   `Idempotency-Key`, for every source; a bearer-token sender keeps its `Idempotency-Key` as before.
4. A body in UTF-16 or UTF-32 is refused with 400; only UTF-8 is JSON here.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tasks.app import build_celery_app, enqueuer
from tests.integration.harness import REPO, Stack, running_stack
from worker.intake.auth import signature
from worker.jobs.model import Job, JobState, Target, TargetStatus, utc_now
from worker.jobs.store import JobStore

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "siem"
SECRET, TOKEN, OPERATOR = "hostile-hmac-secret", "hostile-intake-token", "hostile-operator-token"
SHARP_S, DOUBLE_S = "straße@example.com", "strasse@example.com"
HOSTILE_IDS = ["..", ".", "me", "abc", "1" * 5000, "12/../../me", "-1"]

# Every source, with the path it posts to and its sample.
SOURCES = [
    ("/v1/alerts", "generic.json"),
    ("/v1/alerts/splunk", "splunk.json"),
    ("/v1/alerts/sentinel", "sentinel-incident.json"),
    ("/v1/alerts/elastic", "elastic.json"),
    ("/v1/alerts/datadog", "datadog.json"),
    ("/v1/alerts/panther", "panther.json"),
    ("/v1/alerts/sumologic", "sumologic.json"),
    ("/v1/alerts/okta", "okta-event-hook.json"),
    ("/v1/alerts/box-shield", "box-shield-alert.json"),
]


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_INTAKE_TOKENS": TOKEN, "BOXCUT_OPERATOR_TOKENS": OPERATOR}
    with running_stack(redis_url, tmp_path_factory.mktemp("hostile"), extra_env=env) as running:
        running.sim.directory.create_user(SHARP_S, name="Jürgen Straße")
        running.sim.directory.create_user(DOUBLE_S, name="Jurgen Strasse")
        yield running


@pytest.fixture(scope="module")
def intake(stack: Stack) -> str:
    return stack.start_intake()


def signed_headers(body: bytes, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    return {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
            "X-Boxcut-Signature": signature(SECRET, stamp, body)}


def post_signed(url: str, payload: object) -> requests.Response:
    body = json.dumps(payload).encode()
    return requests.post(url, data=body, headers=signed_headers(body), timeout=10)


def operator(url: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {OPERATOR}", **kwargs.pop("headers", {})}
    return requests.request(method, url + path, headers=headers, timeout=30, **kwargs)


def job_count(stack: Stack) -> int:
    return len(stack.store().list_jobs(limit=10_000)[0])


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def both_users(stack: Stack) -> set[str]:
    return {u.id for u in stack.sim.directory.users() if u.login in (SHARP_S, DOUBLE_S)}


# -- 1. one comparison rule for identities -------------------------------------------------------------------


def test_strasse_and_strasse_named_in_one_alert_are_two_people_and_both_are_cut_off(stack: Stack,
                                                                                     intake: str) -> None:
    payload = {"id": f"evt-{uuid.uuid4().hex}", "reason": "two people, one letter apart",
               "targets": [{"type": "user", "login": SHARP_S}, {"type": "user", "login": DOUBLE_S}]}
    answer = post_signed(f"{intake}/v1/alerts", payload)
    assert answer.status_code == 202, answer.text
    job = stack.wait(answer.json()["job_id"])
    assert job.state is JobState.SUCCEEDED, job.to_dict()
    assert sorted(t.login or "" for t in job.targets) == sorted([SHARP_S, DOUBLE_S])
    assert all(t.status is TargetStatus.ACCEPTED for t in job.targets)
    assert both_users(stack) <= set(stack.sim.terminated_user_ids())


def test_a_vendor_alert_naming_both_keeps_both(stack: Stack, intake: str) -> None:
    payload = {"Name": "Box brute force", "ResultsJson": [{"user": SHARP_S}, {"user": DOUBLE_S}]}
    answer = post_signed(f"{intake}/v1/alerts/sumologic", payload)
    assert answer.status_code == 202, answer.text
    job = stack.wait(answer.json()["job_id"])
    assert [t.status for t in job.targets] == [TargetStatus.ACCEPTED, TargetStatus.ACCEPTED], job.to_dict()


def test_an_offboarding_file_naming_both_keeps_both(stack: Stack, tmp_path: Path) -> None:
    leavers = tmp_path / "leavers.csv"
    leavers.write_text(f"user_login\n{SHARP_S}\n{DOUBLE_S}\nSTRASSE@example.com\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "worker.cli", "offboard", str(leavers), "--wait"],
                         env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 targets from 3 rows (1 repeats merged)" in run.stdout + run.stderr
    job = stack.store().load(run.stdout.splitlines()[0].split()[0])
    assert sorted(t.login or "" for t in job.targets) == sorted([SHARP_S, DOUBLE_S])
    assert all(t.status is TargetStatus.ACCEPTED for t in job.targets), job.to_dict()


# -- 2. ids are Box ids at every entrance, and the client sends nothing else ---------------------------------


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("kind", ["user", "group"])
def test_a_hostile_id_in_the_generic_envelope_is_422_naming_the_field(stack: Stack, intake: str, kind: str,
                                                                      hostile: str) -> None:
    stack.sim.clear_requests()
    payload = {"targets": [{"type": "user", "login": "jdoe@example.com"}, {"type": kind, "id": hostile}]}
    answer = post_signed(f"{intake}/v1/alerts", payload)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith("targets[1].id ")
    assert "not a Box id" in answer.json()["error"]["message"]
    assert stack.sim.requests() == []


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_hostile_id_in_a_box_shield_alert_or_an_offboarding_list_is_422(stack: Stack, intake: str,
                                                                          hostile: str) -> None:
    stack.sim.clear_requests()
    alert = sample("box-shield-alert.json")
    alert["additional_details"]["shield_alert"]["user"] = {"id": hostile}
    shield = post_signed(f"{intake}/v1/alerts/box-shield", alert)
    assert shield.status_code == 422, shield.text
    assert "additional_details.shield_alert.user.id" in shield.json()["error"]["message"]
    listed = operator(intake, "POST", "/v1/offboarding", json=[{"user_id": hostile}, {"group_id": hostile}])
    assert listed.status_code == 422, listed.text
    assert "item 1: user_id" in listed.json()["error"]["message"]
    assert "item 2: group_id" in listed.json()["error"]["message"]
    assert stack.sim.requests() == []


def test_a_record_holding_hostile_ids_sends_no_request_for_them(stack: Stack) -> None:
    """A record written before ids were checked (or by hand) still cannot point boxcut elsewhere: the client
    refuses to send, and the targets fail with the reason."""
    settings, store = stack.settings(), stack.store()
    targets = [Target.from_input({"type": kind, "id": hostile}) for kind in ("user", "group")
               for hostile in HOSTILE_IDS]
    now = utc_now()
    job = Job(job_id=JobStore.new_job_id(), state=JobState.QUEUED, source="test", reason="legacy record",
              requested_by="pytest", dry_run=False, created_at=now, updated_at=now, targets=targets)
    stack.sim.clear_requests()
    store.create(job)
    enqueuer(build_celery_app(settings))(job.job_id)
    done = stack.wait(job.job_id)
    assert done.state is JobState.FAILED, done.to_dict()
    assert all(t.status is TargetStatus.FAILED and "not a Box id" in (t.detail or "") for t in done.targets)
    sent = [(r["method"], r["path"]) for r in stack.sim.requests()]
    # At most the token and the service account (asked once per worker process); nothing for a hostile id:
    # no `GET /2.0/` (from `..`), no `GET /2.0/users/` (from `.`), no `/users/me` resolved as a target.
    assert {path for _, path in sent} <= {"/oauth2/token", "/2.0/users/me"}, sent
    assert sent.count(("GET", "/2.0/users/me")) <= 1, sent
    assert done.calls == []


# -- 3. a captured signed request cannot be replayed inside its window ----------------------------------------


@pytest.mark.parametrize(("path", "name"), SOURCES, ids=[name for _, name in SOURCES])
def test_a_replayed_signed_request_with_a_fresh_idempotency_key_makes_no_new_job(stack: Stack, intake: str,
                                                                                path: str, name: str) -> None:
    payload = sample(name)
    if name == "generic.json":
        payload = copy.deepcopy(payload) | {"id": f"evt-{uuid.uuid4().hex}"}
    body = json.dumps(payload).encode()
    headers = signed_headers(body)
    first = requests.post(intake + path, data=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                          timeout=10)
    assert first.status_code == 202, first.text
    jobs = job_count(stack)
    for replay in ({"Idempotency-Key": uuid.uuid4().hex}, {"Idempotency-Key": uuid.uuid4().hex}, {}):
        again = requests.post(intake + path, data=body, headers={**headers, **replay}, timeout=10)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert [j["job_id"] for j in again.json()["jobs"]] == [j["job_id"] for j in first.json()["jobs"]]
    assert job_count(stack) == jobs


def test_a_sumologic_alert_sent_twice_byte_for_byte_is_one_job(stack: Stack, intake: str) -> None:
    body = (SAMPLES / "sumologic.json").read_bytes()
    headers = signed_headers(body)
    first = requests.post(f"{intake}/v1/alerts/sumologic", data=body, headers=headers, timeout=10)
    again = requests.post(f"{intake}/v1/alerts/sumologic", data=body, headers=headers, timeout=10)
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["duplicate"] is True


def test_the_same_alert_signed_anew_is_a_new_delivery(stack: Stack, intake: str) -> None:
    """Only the signature is remembered, never the body: a sender re-signing (a new timestamp) is not a replay."""
    body = (SAMPLES / "sumologic.json").read_bytes()
    earlier = int(time.time()) - 100  # seconds no other test signs this body at
    first = requests.post(f"{intake}/v1/alerts/sumologic", data=body, headers=signed_headers(body, str(earlier)),
                          timeout=10)
    later = requests.post(f"{intake}/v1/alerts/sumologic", data=body,
                          headers=signed_headers(body, str(earlier + 1)), timeout=10)
    assert (first.status_code, later.status_code) == (202, 202)
    assert first.json()["job_id"] != later.json()["job_id"]


def test_a_bearer_token_sender_keeps_its_idempotency_key(stack: Stack, intake: str) -> None:
    body = (SAMPLES / "sumologic.json").read_bytes()
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    key = uuid.uuid4().hex
    first = requests.post(f"{intake}/v1/alerts/sumologic", data=body, headers={**auth, "Idempotency-Key": key},
                          timeout=10)
    again = requests.post(f"{intake}/v1/alerts/sumologic", data=body, headers={**auth, "Idempotency-Key": key},
                          timeout=10)
    other = requests.post(f"{intake}/v1/alerts/sumologic", data=body,
                          headers={**auth, "Idempotency-Key": uuid.uuid4().hex}, timeout=10)
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["job_id"] == first.json()["job_id"] != other.json()["job_id"]


# -- 4. JSON is UTF-8 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_a_body_in_utf16_or_utf32_is_400_and_creates_nothing(stack: Stack, intake: str, encoding: str) -> None:
    text = json.dumps({"id": f"evt-{uuid.uuid4().hex}", "targets": [{"type": "user", "login": "jdoe@example.com"}]})
    body = text.encode(encoding)
    jobs = job_count(stack)
    answer = requests.post(f"{intake}/v1/alerts", data=body, headers=signed_headers(body), timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "malformed_json" and "UTF-8" in answer.json()["error"]["message"]
    listed = operator(intake, "POST", "/v1/offboarding", data='[{"user_id": "17738362"}]'.encode(encoding),
                      headers={"Content-Type": "application/json"})
    assert listed.status_code == 400 and listed.json()["error"]["code"] == "malformed_json", listed.text
    assert job_count(stack) == jobs


def test_utf8_with_or_without_a_byte_order_mark_is_accepted(stack: Stack, intake: str) -> None:
    for prefix in (b"", b"\xef\xbb\xbf"):
        text = json.dumps({"id": f"evt-{uuid.uuid4().hex}", "targets": [{"type": "user", "login": SHARP_S}]},
                          ensure_ascii=False)
        body = prefix + text.encode("utf-8")
        answer = requests.post(f"{intake}/v1/alerts", data=body, headers=signed_headers(body), timeout=10)
        assert answer.status_code == 202, answer.text
