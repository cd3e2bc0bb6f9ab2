"""The console without a browser: sign-in (token and OpenID Connect, roles from claims), the session and CSRF,
the security headers, every page for a working, a hot and an archived job, and now.json."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config import SettingsError, load_settings
from tests.unit.console.helpers import (
    ENV,
    OPERATOR_TOKEN,
    ConsoleUnderTest,
    archiver,
    awaiting_job,
    finished_job,
    make_console,
)
from worker.cli import commands
from worker.console import auth
from worker.console.app import CONTENT_SECURITY_POLICY
from worker.jobs import evidence_signing
from worker.jobs.model import JobState

ALICE = {"sub": "u-1", "name": "Alice Approver", "email": "alice@example.com", "groups": ["boxcut-approvers"]}
VICTOR = {"sub": "u-2", "name": "Victor Viewer", "groups": ["boxcut-viewers"]}
MALLORY = {"sub": "u-3", "preferred_username": "mallory", "groups": ["marketing"]}


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleUnderTest]:
    made = make_console(tmp_path, monkeypatch=monkeypatch)
    yield made
    made.archive.close()


def audit_actors(console: ConsoleUnderTest, job_id: str) -> list[str]:
    return [e["data"].get("actor") for e in console.history.audit(job_id) if e["event"] == "state"]


# -- roles and names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "claim", "values"), [
    ({"groups": ["a", "b"]}, "groups", {"a", "b"}),
    ({"roles": "a b,c"}, "roles", {"a", "b", "c"}),
    ({"realm_access": {"roles": ["x"]}}, "realm_access.roles", {"x"}),
    ({"groups": [{"not": "a string"}, 7]}, "groups", {"7"}),
    ({}, "groups", set()),
    ({"groups": None}, "groups", set()),
])
def test_claim_values_read_lists_strings_and_dotted_claims(claims: dict[str, Any], claim: str,
                                                           values: set[str]) -> None:
    assert auth.claim_values(claims, claim) == values


def test_a_role_is_approver_first_then_viewer_else_none() -> None:
    kw = {"approvers": {"ops"}, "viewers": {"soc"}}
    assert auth.role_for({"soc", "ops"}, **kw) == "approver"
    assert auth.role_for({"soc", "other"}, **kw) == "viewer"
    assert auth.role_for({"other"}, **kw) is None
    assert auth.role_for(set(), **kw) is None


def test_a_name_is_name_then_preferred_username_then_email_then_sub() -> None:
    assert auth.display_name(ALICE) == "Alice Approver"
    assert auth.display_name({"preferred_username": "bob", "email": "b@x", "sub": "1"}) == "bob"
    assert auth.display_name({"email": "c@example.com", "sub": "1"}) == "c@example.com"
    assert auth.display_name({"sub": "abc"}) == "abc"
    assert auth.display_name({"name": "  evil\nname\x1b[31m "}) == "evil name [31m"


# -- security headers and sign-in ----------------------------------------------------------------------------


PAGES = ["/console/signin", "/console/now", "/console/jobs", "/console/approvals", "/console/nope",
         "/console/static/console.css", "/console/static/console.js", "/console", "/console/"]


@pytest.mark.parametrize("signed_in", [False, True])
def test_every_console_answer_carries_the_security_headers(console: ConsoleUnderTest, signed_in: bool) -> None:
    job_id = finished_job(console.store, "a@example.com")
    if signed_in:
        console.sign_in_with_token()
    for path in [*PAGES, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/report.json", "/console/now.json"]:
        answer = console.client.get(path, follow_redirects=False)
        assert answer.headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, path
        assert answer.headers["x-frame-options"] == "DENY", path
        assert answer.headers["referrer-policy"] == "same-origin", path
        assert answer.headers["cache-control"] == "no-store", path
        if answer.headers.get("content-type", "").startswith("text/html"):
            assert "<script>" not in answer.text and " style=" not in answer.text, path  # nothing inline
            assert not re.search(r"(?:src|href)=\"https?://", answer.text), path  # nothing from elsewhere


def test_pages_need_a_session_and_now_json_answers_401(console: ConsoleUnderTest) -> None:
    for path in ["/console/now", "/console/jobs", "/console/approvals", "/console/jobs/j-0123456789abcdef"]:
        answer = console.client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin?next="), path
    assert console.client.get("/console/now.json").status_code == 401
    assert console.client.get("/v1/jobs").status_code == 401  # the operator API is untouched by a console session


def test_token_sign_in_makes_an_approver_named_by_the_token(console: ConsoleUnderTest) -> None:
    refused = console.sign_in_with_token("not-a-token")
    assert refused.status_code == 401 and "not an operator token" in refused.text
    assert console.client.get("/console/now", follow_redirects=False).status_code == 303
    answer = console.sign_in_with_token()
    assert answer.status_code == 303 and answer.headers["location"] == "/console/now"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("boxcut_console=") and "path=/console" in cookie and "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower() and "secure" in cookie.lower() and "Max-Age=28800" in cookie
    page = console.client.get("/console/now")
    assert page.status_code == 200 and "alice" in page.text and "approver" in page.text


def test_token_sign_in_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = make_console(tmp_path, {"BOXCUT_CONSOLE_TOKEN_SIGNIN": "off"}, monkeypatch=monkeypatch)
    assert "Operator token" not in console.client.get("/console/signin").text
    answer = console.client.post("/console/signin/token", data={"csrf": "x", "token": OPERATOR_TOKEN})
    assert answer.status_code == 404
    assert console.client.get("/console/now", follow_redirects=False).status_code == 303


def test_the_sign_in_page_offers_what_is_configured(console: ConsoleUnderTest) -> None:
    page = console.client.get("/console/signin").text
    assert 'href="/console/auth/login"' in page and "Operator token" in page
    assert "<form" in page and 'action="/console/auth/login"' not in page  # the provider's sign-in is a link


def test_oidc_sign_in_maps_the_groups_claim_to_roles(console: ConsoleUnderTest) -> None:
    answer = console.sign_in_with_provider(ALICE)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/now"
    assert console.provider.redirect_uri == "https://boxcut.example.com/console/auth/callback"
    assert "Alice Approver" in console.client.get("/console/now").text
    console.post("/console/signout")
    console.sign_in_with_provider(VICTOR)
    page = console.client.get("/console/now").text
    assert "Victor Viewer" in page and "viewer" in page


def test_a_person_with_no_role_is_refused_with_a_page_saying_so(console: ConsoleUnderTest) -> None:
    answer = console.sign_in_with_provider(MALLORY)
    assert answer.status_code == 403
    assert "mallory" in answer.text and "no role in the boxcut console" in answer.text
    assert console.client.get("/console/now", follow_redirects=False).status_code == 303


def test_roles_missing_from_the_id_token_are_read_from_userinfo(console: ConsoleUnderTest) -> None:
    console.provider.userinfo_claims = {"groups": ["soc"]}
    console.sign_in_with_provider({"sub": "u-9", "email": "sam@example.com"})
    page = console.client.get("/console/now")
    assert page.status_code == 200 and "sam@example.com" in page.text and "viewer" in page.text


def test_a_callback_without_the_sign_in_state_is_refused(console: ConsoleUnderTest) -> None:
    console.provider.claims = dict(ALICE)
    answer = console.client.get("/console/auth/callback?state=s1&code=c1", follow_redirects=False)
    assert answer.status_code == 400 and "mismatching_state" in answer.text
    assert console.client.get("/console/now", follow_redirects=False).status_code == 303


def test_only_a_browsers_latest_sign_in_completes_and_the_cookie_stays_small(console: ConsoleUnderTest) -> None:
    sizes = [len(console.client.get("/console/auth/login", follow_redirects=False).headers["set-cookie"])
             for _ in range(20)]
    assert max(sizes) - min(sizes) < 10  # one pending sign-in at a time, not twenty
    console.provider.claims = dict(ALICE)
    stale = console.client.get("/console/auth/callback?state=s1&code=c1", follow_redirects=False)
    assert stale.status_code == 400 and "mismatching_state" in stale.text
    assert console.client.get("/console/auth/callback?state=s20&code=c1", follow_redirects=False).status_code == 303
    assert "Alice Approver" in console.client.get("/console/now").text


def test_the_public_url_names_the_redirect_uri_and_plain_http_on_loopback_drops_secure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = make_console(tmp_path, {"BOXCUT_PUBLIC_URL": "http://127.0.0.1:8000"}, monkeypatch=monkeypatch)
    answer = console.sign_in_with_provider(ALICE)
    assert console.provider.redirect_uri == "http://127.0.0.1:8000/console/auth/callback"
    assert "secure" not in answer.headers["set-cookie"].lower().replace("samesite", "")


def test_sign_in_returns_to_the_page_asked_for(console: ConsoleUnderTest) -> None:
    console.client.get("/console/signin?next=/console/approvals")
    assert console.sign_in_with_token().headers["location"] == "/console/approvals"
    console.post("/console/signout")
    console.client.get("/console/signin?next=https://evil.example.com/")
    assert console.sign_in_with_token().headers["location"] == "/console/now"


def test_a_session_expires_after_its_lifetime_however_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = make_console(tmp_path, {"BOXCUT_CONSOLE_SESSION_MINUTES": "10"}, direct=True, monkeypatch=monkeypatch)
    console.sign_in_with_token()
    for _ in range(5):  # each answer renews the cookie; the sign-in time inside it does not move
        console.now[0] += 110
        assert console.client.get("/console/jobs", follow_redirects=False).status_code == 200
    console.now[0] += 100
    assert console.client.get("/console/jobs", follow_redirects=False).status_code == 303
    assert console.client.get("/console/now.json").status_code == 401


def test_sign_out_needs_the_csrf_token_and_ends_the_session(console: ConsoleUnderTest) -> None:
    console.sign_in_with_token()
    assert console.post("/console/signout", {"back": "/console/now"}, csrf=None).status_code == 403
    assert console.client.get("/console/now", follow_redirects=False).status_code == 200
    assert console.post("/console/signout").status_code == 303
    assert console.client.get("/console/now", follow_redirects=False).status_code == 303


# -- actions: CSRF, roles, the audit -------------------------------------------------------------------------


@pytest.mark.parametrize("forgery", ["no token", "wrong token", "other origin", "json body"])
def test_a_forged_approval_is_403_and_changes_nothing(console: ConsoleUnderTest, forgery: str) -> None:
    job_id = awaiting_job(console.store, "a@example.com")
    console.sign_in_with_token()
    path = f"/console/jobs/{job_id}/approve"
    back = {"back": "/console/approvals"}  # a form with a body, as a forged one has
    if forgery == "no token":
        answer = console.post(path, back, csrf=None)
    elif forgery == "wrong token":
        answer = console.post(path, back, csrf="x" * 43)
    elif forgery == "other origin":
        answer = console.post(path, headers={"Origin": "https://evil.example.com"})
    else:
        csrf = console.csrf("/console/now")
        answer = console.client.post(path, json={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 403, answer.text
    assert "Nothing was changed" in answer.text
    assert console.store.state(job_id) is JobState.AWAITING_APPROVAL and console.enqueued == []


def test_an_approver_approves_and_the_audit_names_them(console: ConsoleUnderTest) -> None:
    job_id = awaiting_job(console.store, "a@example.com", "b@example.com")
    console.sign_in_with_provider(ALICE)
    approvals = console.client.get("/console/approvals").text
    assert job_id in approvals and f'action="/console/jobs/{job_id}/approve"' in approvals
    assert "exceed BOXCUT_APPROVAL_THRESHOLD" in approvals
    answer = console.post(f"/console/jobs/{job_id}/approve", {"back": "/console/approvals"},
                          headers={"Origin": "https://boxcut.example.com"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/approvals"
    assert console.store.state(job_id) is JobState.RESOLVING and console.enqueued == [job_id]
    # The name they go by, and who they are at the provider (their subject), which nobody chooses for themselves.
    assert "console:Alice Approver <oidc:u-1>" in audit_actors(console, job_id)
    assert console.store.load(job_id).approval.approved_by == "console:Alice Approver <oidc:u-1>"  # type: ignore[union-attr]
    after = console.client.get("/console/approvals").text
    assert f"Approved {job_id}" in after and f'data-job="{job_id}"' not in after
    page = console.client.get(f"/console/jobs/{job_id}").text
    assert "console:Alice Approver" in page


def test_a_viewer_sees_no_buttons_and_their_post_is_403(console: ConsoleUnderTest) -> None:
    job_id = awaiting_job(console.store, "a@example.com")
    console.sign_in_with_provider(VICTOR)
    for path in ["/console/approvals", f"/console/jobs/{job_id}"]:
        page = console.client.get(path)
        assert page.status_code == 200 and job_id in page.text
        assert "/approve" not in page.text and "/cancel" not in page.text and "/brake/release" not in page.text
    for action in ("approve", "cancel"):
        answer = console.post(f"/console/jobs/{job_id}/{action}")
        assert answer.status_code == 403 and "viewer" in answer.text
    assert console.store.state(job_id) is JobState.AWAITING_APPROVAL and console.enqueued == []


def test_an_action_without_a_session_changes_nothing(console: ConsoleUnderTest) -> None:
    job_id = awaiting_job(console.store, "a@example.com")
    answer = console.post(f"/console/jobs/{job_id}/approve", csrf=console.csrf())
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin")
    assert console.store.state(job_id) is JobState.AWAITING_APPROVAL


def test_cancel_and_the_operator_apis_refusals_come_back_as_messages(console: ConsoleUnderTest) -> None:
    job_id = awaiting_job(console.store, "a@example.com")
    done = finished_job(console.store, "b@example.com")
    console.sign_in_with_token()
    assert console.post(f"/console/jobs/{job_id}/cancel").status_code == 303
    assert console.store.state(job_id) is JobState.CANCELLED
    assert "console:alice <token:alice>" in audit_actors(console, job_id)
    assert f"Cancelled {job_id}" in console.client.get(f"/console/jobs/{job_id}").text
    console.post(f"/console/jobs/{done}/approve")
    assert "not_awaiting_approval" in console.client.get(f"/console/jobs/{done}").text
    console.post("/console/jobs/j-00000000000000ff/approve")
    assert "not_found" in console.client.get("/console/approvals").text


def test_an_approval_the_broker_refuses_is_undone_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = make_console(tmp_path, refuse_enqueue=True, monkeypatch=monkeypatch)
    job_id = awaiting_job(console.store, "a@example.com")
    console.sign_in_with_token()
    console.post(f"/console/jobs/{job_id}/approve")
    assert console.store.state(job_id) is JobState.AWAITING_APPROVAL
    assert "unavailable" in console.client.get(f"/console/jobs/{job_id}").text


def test_the_brake_is_released_from_the_approvals_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = make_console(tmp_path, monkeypatch=monkeypatch)
    brake = console.store.redis
    brake.set("t:brake:engaged:splunk:soc", "1", px=600_000)
    brake.zadd("t:brake:src:splunk:soc", {"u:1": time.time() * 1000})
    console.sign_in_with_token()
    page = console.client.get("/console/approvals").text
    assert "splunk:soc" in page and 'name="source" value="splunk:soc"' in page and "ENGAGED" in page
    assert console.post("/console/brake/release", {"source": "splunk:soc"}).status_code == 303
    after = console.client.get("/console/approvals").text
    assert "Released the brake for splunk:soc" in after and brake.exists("t:brake:released:splunk:soc")
    console.post("/console/brake/release", {"source": "nobody"})
    assert "invalid_source" in console.client.get("/console/approvals").text


# -- pages ----------------------------------------------------------------------------------------------------


def signing_env(tmp_path: Path) -> dict[str, str]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    return {"BOXCUT_REPORT_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}


@pytest.mark.parametrize("where", ["redis", "hot", "archive"])
def test_a_jobs_page_shows_it_wherever_it_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    where: str) -> None:
    console = make_console(tmp_path, signing_env(tmp_path), monkeypatch=monkeypatch)
    job_id = finished_job(console.store, "a@example.com", "b@example.com")
    if where != "redis":
        worker = archiver(console.store, console.archive)
        assert worker.settle(job_id) == "hot"
        if where == "archive":
            assert archiver(console.store, console.archive, hot_seconds=0).evict() == 1
    console.sign_in_with_token()
    page = console.client.get(f"/console/jobs/{job_id}")
    assert page.status_code == 200
    assert f'<strong id="stored">{where}</strong>' in page.text
    job = console.history.find(job_id).job
    call = job.calls[0]
    assert "a@example.com" in page.text and "b@example.com" in page.text and call.call_id in page.text
    assert call.message and call.message in page.text  # Box's answer, on the call and on each target it carried
    assert "✓ verifies against the configured key" in page.text
    assert "succeeded" in page.text and "Audit trail" in page.text
    report = console.client.get(f"/console/jobs/{job_id}/report.json")
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    key = evidence_signing.configured_key(console.settings)
    assert evidence_signing.verify(report.content, trusted=evidence_signing.public_half(key)).job_id == job_id
    listing = console.client.get("/console/jobs").text
    assert job_id in listing and f"<td>{where}</td>" in listing


def test_an_unsigned_report_is_said_to_be_unsigned(console: ConsoleUnderTest) -> None:
    job_id = finished_job(console.store, "a@example.com")
    console.sign_in_with_token()
    assert "unsigned: no BOXCUT_REPORT_SIGNING_KEY" in console.client.get(f"/console/jobs/{job_id}").text
    document = json.loads(console.client.get(f"/console/jobs/{job_id}/report.json").text)
    assert document["signature"] is None and document["report"]["job"]["job_id"] == job_id


def test_the_jobs_list_filters_and_pages(console: ConsoleUnderTest) -> None:
    done = [finished_job(console.store, f"u{i}@example.com") for i in range(3)]
    held = awaiting_job(console.store, "h@example.com")
    console.sign_in_with_token()
    waiting = console.client.get("/console/jobs?state=awaiting_approval").text
    assert held in waiting and not any(j in waiting for j in done)
    assert all(j in console.client.get("/console/jobs?source=test").text for j in [*done, held])
    assert console.client.get("/console/jobs?state=bogus").status_code == 400
    second = console.client.get("/console/jobs?cursor=2").text
    assert sum(j in second for j in [*done, held]) == 2


def test_a_missing_job_is_a_404_page(console: ConsoleUnderTest) -> None:
    console.sign_in_with_token()
    assert console.client.get("/console/jobs/j-00000000000000ff").status_code == 404
    assert console.client.get("/console/jobs/not-a-job").status_code == 404
    assert console.client.get("/console/jobs/j-00000000000000ff/report.json").status_code == 404


def test_the_job_page_flags_activity_after_and_shows_waiting(console: ConsoleUnderTest) -> None:
    job_id = finished_job(console.store, "a@example.com")
    console.store.note_activity(job_id, 0, {"event_id": "e1", "event_type": "LOGIN", "seconds_after": 3.0,
                                            "created_at": "2026-12-06T12:00:00Z", "ip_address": "203.0.113.9"})
    console.store.redis.hset(f"t:job:{job_id}", "waiting", json.dumps(
        {"reason": "Box answered 503", "since": "x", "next_attempt_at": "y", "call_id": "c-1"}))
    console.sign_in_with_token()
    page = console.client.get(f"/console/jobs/{job_id}").text
    assert "ACTIVE AFTER TERMINATION" in page and "LOGIN" in page and "203.0.113.9" in page
    assert "Box answered 503" in page


# -- now -----------------------------------------------------------------------------------------------------


def test_now_json_has_every_part_of_the_snapshot(console: ConsoleUnderTest) -> None:
    done = finished_job(console.store, "a@example.com", "b@example.com")
    awaiting_job(console.store, "c@example.com")
    redis = console.store.redis
    redis.set("t:box:pause_until", int(time.time() * 1000) + 30_000)
    redis.zadd("t:send:users:waiting", {"101": 1, "102": 2})
    redis.hset("t:workers:box", "host:1", json.dumps({"box_api": "https://api.box.com/2.0", "fingerprint": "f",
                                                      "seen_at": time.time()}))
    redis.hset("t:events:stream", mapping={"last_read_at": time.time() - 3})
    console.sign_in_with_token()
    now = console.client.get("/console/now.json").json()
    assert set(now) >= {"at", "endpoints", "in_flight", "waiting", "rate", "pause_seconds", "waiting_out", "brake",
                        "event_stream", "workers", "awaiting_approval", "chart", "tiles"}
    assert now["waiting"] == 2 and now["in_flight"] == 0
    assert 25 < now["pause_seconds"] <= 30
    assert now["awaiting_approval"] == 1
    assert [w["worker"] for w in now["workers"]] == ["host:1"]
    assert now["event_stream"]["reading"] and 2 < now["event_stream"]["age_seconds"] < 10
    assert set(now["rate"]) == {"per_minute", "burst", "burst_used", "calls_last_minute"}
    assert now["rate"]["calls_last_minute"] == 1  # the finished job's one call
    assert len(now["chart"]) == 60 and now["chart"][-1]["accepted"] == 2 and now["chart"][-1]["waiting"] == 2
    assert sum(m["accepted"] for m in now["chart"]) == 2, done
    tiles = {t["key"]: t for t in now["tiles"]}
    assert tiles["pause"]["alert"] and tiles["pause"]["value"].startswith("paused")
    assert tiles["approvals"]["alert"] and tiles["approvals"]["value"] == "1"
    page = console.client.get("/console/now").text
    assert "paused," in page and 'id="hour-chart"' in page and "host:1" in page


def test_the_waiting_sample_is_taken_once_a_minute(console: ConsoleUnderTest) -> None:
    console.sign_in_with_token()
    for _ in range(3):
        console.client.get("/console/now.json")
    assert console.store.redis.llen("t:console:waiting") == 1


def test_jobs_waiting_out_box_are_counted_with_their_reason(console: ConsoleUnderTest) -> None:
    job_id = awaiting_job(console.store, "a@example.com")
    redis = console.store.redis
    redis.zadd("t:jobs:state:terminating", {job_id: 1})
    redis.hset(f"t:job:{job_id}", "waiting", json.dumps({"reason": "Box answered 429 (retry-after 5 s)"}))
    console.sign_in_with_token()
    out = console.client.get("/console/now.json").json()["waiting_out"]
    assert out == {"jobs": 1, "reasons": [{"reason": "Box answered 429 (retry-after 5 s)", "jobs": 1}],
                   "more": False}


# -- settings -------------------------------------------------------------------------------------------------


def test_console_settings_have_defaults_and_are_checked() -> None:
    settings = load_settings({"BOXCUT_OPERATOR_TOKENS": "t"}, env_file=None)
    assert not settings.console and settings.console_session_minutes == 480
    assert settings.oidc_roles_claim == "groups" and settings.console_token_signin
    assert load_settings(ENV, env_file=None).console_approvers == {"boxcut-approvers"}
    with pytest.raises(SettingsError, match="BOXCUT_CONSOLE: nobody could sign in"):
        load_settings({"BOXCUT_CONSOLE": "on"}, env_file=None)
    with pytest.raises(SettingsError, match="BOXCUT_OIDC_CLIENT_SECRET: missing"):
        load_settings({"BOXCUT_OIDC_ISSUER": "https://idp", "BOXCUT_OIDC_CLIENT_ID": "x"}, env_file=None)
    with pytest.raises(SettingsError, match="BOXCUT_CONSOLE_APPROVERS: missing"):
        load_settings({k: v for k, v in ENV.items() if "APPROVERS" not in k and "VIEWERS" not in k}, env_file=None)
    with pytest.raises(SettingsError, match="BOXCUT_CONSOLE_SESSION_SECRET: too short"):
        load_settings({**ENV, "BOXCUT_CONSOLE_SESSION_SECRET": "short"}, env_file=None)
    with pytest.raises(SettingsError, match="BOXCUT_CONSOLE_SESSION_MINUTES"):
        load_settings({**ENV, "BOXCUT_CONSOLE_SESSION_MINUTES": "0"}, env_file=None)


def test_the_intake_refuses_several_processes_without_a_session_secret() -> None:
    env = {k: v for k, v in ENV.items() if k != "BOXCUT_CONSOLE_SESSION_SECRET"}
    result = CliRunner().invoke(commands.main, ["intake", "--workers", "2"], env=env)
    assert result.exit_code == 64, result.output
    assert "BOXCUT_CONSOLE_SESSION_SECRET" in result.output


def test_every_console_setting_is_in_the_env_example_and_the_reference_page() -> None:
    repo = Path(__file__).resolve().parents[3]
    example, readme = (repo / ".env.example").read_text(), (repo / "docs" / "configuration.md").read_text()
    for name in ["BOXCUT_CONSOLE", "BOXCUT_CONSOLE_SESSION_SECRET", "BOXCUT_CONSOLE_SESSION_MINUTES",
                 "BOXCUT_OIDC_ISSUER", "BOXCUT_OIDC_CLIENT_ID", "BOXCUT_OIDC_CLIENT_SECRET", "BOXCUT_OIDC_ROLES_CLAIM",
                 "BOXCUT_OIDC_SCOPES", "BOXCUT_CONSOLE_APPROVERS", "BOXCUT_CONSOLE_VIEWERS",
                 "BOXCUT_CONSOLE_TOKEN_SIGNIN"]:
        assert re.search(rf"^#? ?{name}(_FILE)?=", example, re.M), name
        assert f"`{name}`" in readme, name


# -- sessions end everywhere -----------------------------------------------------------------------------------


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(console: ConsoleUnderTest) -> None:
    console.sign_in_with_token()
    copied = dict(console.client.cookies)
    assert console.client.get("/console/now", follow_redirects=False).status_code == 200
    assert console.post("/console/signout").status_code == 303
    console.client.cookies.clear()
    console.client.cookies.update(copied)  # the cookie as it was before signing out, replayed
    answer = console.client.get("/console/now", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin")
    assert console.client.get("/console/now.json").status_code == 401


def test_a_session_whose_key_is_gone_from_redis_is_no_session(console: ConsoleUnderTest) -> None:
    job_id = awaiting_job(console.store, "a@example.com")
    console.sign_in_with_provider(ALICE)
    csrf = console.csrf("/console/approvals")
    for key in console.store.redis.scan_iter(match="t:console:session:*"):
        console.store.redis.delete(key)  # revoked (or expired) on the server
    answer = console.post(f"/console/jobs/{job_id}/approve", csrf=csrf)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin")
    assert console.store.state(job_id) is JobState.AWAITING_APPROVAL


def test_a_token_session_holds_only_while_its_token_is_configured_and_token_sign_in_is_on() -> None:
    key = "k" * 40
    proof = auth.token_fingerprint(OPERATOR_TOKEN, key)
    assert OPERATOR_TOKEN not in proof
    configured = load_settings({**ENV}, env_file=None)
    assert auth.token_still_valid(proof, configured, key)
    rotated = load_settings({**ENV, "BOXCUT_OPERATOR_TOKENS": "alice:a-new-token-for-alice"}, env_file=None)
    assert not auth.token_still_valid(proof, rotated, key)
    turned_off = load_settings({**ENV, "BOXCUT_CONSOLE_TOKEN_SIGNIN": "off"}, env_file=None)
    assert not auth.token_still_valid(proof, turned_off, key)
    assert not auth.token_still_valid(auth.token_fingerprint(OPERATOR_TOKEN, "another key" * 4), configured, key)


def test_an_oidc_issuer_over_plain_http_is_refused_but_on_loopback() -> None:
    with pytest.raises(SettingsError, match="BOXCUT_OIDC_ISSUER"):
        load_settings({**ENV, "BOXCUT_OIDC_ISSUER": "http://idp.example.com"}, env_file=None)
    assert load_settings({**ENV, "BOXCUT_OIDC_ISSUER": "http://127.0.0.1:9000"}, env_file=None).oidc_issuer


@pytest.mark.parametrize(("sent", "own", "ok"), [
    ("http://localhost:8000", "http://127.0.0.1:8000", True),  # the dev stack, opened under another loopback name
    ("http://[::1]:8000", "http://localhost:8000", True),
    ("http://127.0.0.1:8001", "http://127.0.0.1:8000", False),  # another port: another origin
    ("https://localhost:8000", "http://127.0.0.1:8000", False),
    ("http://localhost.evil.example.com:8000", "http://127.0.0.1:8000", False),
    ("http://127.0.0.1:8000", "https://boxcut.example.com", False),
    ("null", "http://127.0.0.1:8000", False),
])
def test_a_console_on_loopback_is_its_own_origin_under_any_loopback_name(sent: str, own: str, ok: bool) -> None:
    from starlette.requests import Request

    from worker.console.session import origin_ok

    request = Request({"type": "http", "headers": [(b"origin", sent.encode())]})
    assert origin_ok(request, own) is ok
