"""Evidence reports: built from what the store holds (a job approved by a person, its Box call, its audit trail),
signed, and refused when any byte of the file is changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.fake_box import FakeBox, make_ctx, new_job, users
from worker.box.answers import TERMINATE_ACCEPTED_MESSAGE, USERS_TERMINATE_ENDPOINT, BoxUser, CallResult
from worker.errors import JobNotFound
from worker.jobs import actions as job_actions
from worker.jobs import evidence_signing as signing
from worker.jobs.history import JobHistory
from worker.jobs.model import JobState
from worker.jobs.report import FORMAT, build_report
from worker.jobs.report_markdown import render_markdown
from worker.jobs.store import JobStore
from worker.run.runner import run_job

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def approved_job(store: JobStore) -> str:
    """A job that waited for approval (it names an admin), was approved by an operator, and whose one call Box
    accepted with a request id."""
    answer = CallResult(endpoint=USERS_TERMINATE_ENDPOINT, http_status=202, message=TERMINATE_ACCEPTED_MESSAGE,
                        error_code=None, request_id="box-req-42", attempts=2, started_at="t0", finished_at="t1")
    box = FakeBox(users=[BoxUser(id="1", login="boss@example.com", role="admin"),
                         BoxUser(id="2", login="jdoe@example.com", role="user")], answers=[answer])
    job_id = new_job(store, users("boss@example.com", "jdoe@example.com"))
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert store.state(job_id) is JobState.AWAITING_APPROVAL
    job_actions.approve(store=store, enqueue=lambda _job_id: None, job_id=job_id, actor="operator:alice")
    run_job(ctx=make_ctx(store, box), job_id=job_id)
    assert store.state(job_id) is JobState.SUCCEEDED
    return job_id


def test_a_report_holds_who_asked_the_approval_every_call_and_the_audit_trail(store: JobStore) -> None:
    job_id = approved_job(store)
    report = build_report(JobHistory(store, None), job_id, now=lambda: "2026-12-02T11:00:00.000Z")
    assert report["format"] == FORMAT and report["generated_at"] == "2026-12-02T11:00:00.000Z"
    assert report["job"]["job_id"] == job_id and report["job"]["state"] == "succeeded"
    assert report["request"]["requested_by"] == "pytest" and report["request"]["source"] == "test"
    assert report["request"]["targets_named"] == users("boss@example.com", "jdoe@example.com")
    policy = report["policy"]
    assert policy["approval"]["required"] is True and policy["approval"]["approved_by"] == "operator:alice"
    assert policy["approval"]["approved_at"] and policy["approval"]["reasons"]
    moves = [(d["from"], d["to"], d["actor"]) for d in policy["decisions"]]
    assert ("resolving", "awaiting_approval", "boxcut") in moves
    assert ("awaiting_approval", "resolving", "operator:alice") in moves
    assert moves[-1][1] == "succeeded" and policy["cancelled_by"] is None
    [call] = report["calls"]
    assert call["ids"] == ["1", "2"] and call["http_status"] == 202 and call["request_id"] == "box-req-42"
    assert call["message"] == TERMINATE_ACCEPTED_MESSAGE and call["attempts"] == 2 and call["requests_sent"] == 1
    assert call["started_at"] and call["finished_at"] and call["started_at"] <= call["finished_at"]
    assert call["targets"] == [0, 1] and call["other_jobs"] == 0
    assert [(t["box_id"], t["status"], t["call_ids"]) for t in report["targets"]] == [
        ("1", "accepted", [call["call_id"]]), ("2", "accepted", [call["call_id"]])]
    events = [e["event"] for e in report["audit"]]
    assert events[0] == "created" and "call" in events and events.count("state") == len(policy["decisions"])
    assert report["watch"] == {"watch_until": None, "active_after": False, "events_after_termination": 0}


def test_a_cancelled_job_names_who_cancelled_it(store: JobStore) -> None:
    job_id = new_job(store, users("jdoe@example.com"))
    job_actions.cancel(store=store, job_id=job_id, actor="operator:bob")
    policy = build_report(JobHistory(store, None), job_id)["policy"]
    assert policy["cancelled_by"] == "operator:bob" and policy["cancelled_at"]


def test_activity_after_termination_is_in_the_report(store: JobStore) -> None:
    job_id = approved_job(store)
    store.redis.hset(store.job_key(job_id), "watch_until", "2026-12-02T10:30:00.000Z")
    store.note_activity(job_id, 1, {"event_id": "e-1", "event_type": "LOGIN", "created_at": "2026-12-02T10:05:00Z"})
    report = build_report(JobHistory(store, None), job_id)
    assert report["watch"] == {"watch_until": "2026-12-02T10:30:00.000Z", "active_after": True,
                               "events_after_termination": 1}
    assert report["targets"][1]["activity_after"][0]["event_id"] == "e-1"
    assert report["targets"][0]["activity_after"] == []


def test_an_unknown_job_has_no_report(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        build_report(JobHistory(store, None), "j-0123456789abcdef")


def _signed_file(store: JobStore, key: Ed25519PrivateKey | None = KEY) -> bytes:
    return signing.render(signing.sign(build_report(JobHistory(store, None), approved_job(store)), key)).encode()


def test_a_signed_report_verifies_against_its_key_and_as_written(store: JobStore) -> None:
    data = _signed_file(store)
    signature = json.loads(data)["signature"]
    assert signature["alg"] == "Ed25519" and signature["key_id"] == signing.key_id(KEY.public_key())
    assert len(signature["key_id"]) == 16
    trusted = signing.verify(data, trusted=KEY.public_key())
    assert trusted.trusted and trusted.key_id == signature["key_id"] and trusted.job_id.startswith("j-")
    assert not signing.verify(data).trusted  # the embedded key: integrity only


def test_every_byte_of_a_report_changed_fails_verification(store: JobStore) -> None:
    data = _signed_file(store)
    passed = []
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 1
        try:
            signing.verify(bytes(changed))
        except signing.ReportRejected:
            continue
        passed.append(position)
    assert passed == [], [data[p - 10:p + 10] for p in passed]
    signing.verify(data)  # and the file itself still does


@pytest.mark.parametrize("edit", [
    lambda d: d.replace(b'"state": "succeeded"', b'"state": "failed"'),  # the content: the signature breaks
    lambda d: d.replace(b"\n", b"\r\n"),  # the same content in another form
    lambda d: d + b"\n",
    lambda d: json.dumps(json.loads(d), sort_keys=True, indent=4).encode() + b"\n",
])
def test_a_report_edited_in_any_way_fails(store: JobStore, edit: Any) -> None:
    data = _signed_file(store)
    with pytest.raises(signing.ReportRejected):
        signing.verify(edit(data))


def test_content_re_signed_by_another_key_fails_against_the_trusted_key(store: JobStore) -> None:
    document = json.loads(_signed_file(store))
    document["report"]["job"]["requested_by"] = "someone else"
    forged = signing.render(signing.sign(document["report"], OTHER_KEY)).encode()
    assert not signing.verify(forged).trusted  # consistent in itself...
    with pytest.raises(signing.ReportRejected, match="not by the trusted key"):
        signing.verify(forged, trusted=KEY.public_key())


def test_an_unsigned_report_does_not_verify(store: JobStore) -> None:
    data = _signed_file(store, key=None)
    assert json.loads(data)["signature"] is None
    with pytest.raises(signing.ReportRejected, match="unsigned"):
        signing.verify(data, trusted=KEY.public_key())


def test_a_signature_block_naming_another_key_id_fails(store: JobStore) -> None:
    document = json.loads(_signed_file(store))
    document["signature"]["key_id"] = "0" * 16
    with pytest.raises(signing.ReportRejected, match="key id"):
        signing.verify(signing.render(document).encode())


def test_the_trusted_key_loads_from_a_public_or_a_private_pem() -> None:
    public = signing.public_key_pem(KEY).encode()
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert signing.key_id(signing.load_trusted_key(public)) == signing.key_id(KEY.public_key())
    with pytest.raises(signing.ReportRejected, match="not a PEM"):
        signing.load_trusted_key(b"not a key")


def test_the_markdown_form_says_it_is_unsigned_and_shows_the_call(store: JobStore) -> None:
    text = render_markdown(build_report(JobHistory(store, None), approved_job(store)))
    assert text.startswith("# Evidence report: job j-") and "Unsigned" in text
    assert "box-req-42" in text and "operator:alice" in text and "## Audit trail" in text


def test_text_holding_a_lone_surrogate_is_written_and_signed_with_a_replacement_character() -> None:
    """Box's answers are JSON and may escape a lone surrogate (`\\ud800`: no character); stored as JSON and read
    back it is one again, and UTF-8 cannot hold it. The report holds U+FFFD there, and still verifies."""
    from worker.jobs.report import _writable

    report = _writable({"calls": [{"message": "Box said \ud800!", "ids": ["1"]}], "k\udfff": ("x",), "n": 2.5,
                        "emoji": "\U0001f600"})
    assert report == {"calls": [{"message": "Box said \ufffd!", "ids": ["1"]}], "k\ufffd": ["x"], "n": 2.5,
                      "emoji": "\U0001f600"}
    written = signing.render(signing.sign(report, KEY)).encode("utf-8")
    assert signing.verify(written, trusted=KEY.public_key()).trusted


def test_the_markdown_form_renders_a_senders_text_as_text_never_as_markup() -> None:
    from worker.jobs.report_markdown import _cell

    hostile = "see [here](https://evil.example) <img src=x onerror=alert(1)> | *now*\nnext line"
    cell = _cell(hostile)
    assert "\n" not in cell
    assert cell == ("see \\[here\\]\\(https://evil.example\\) \\<img src=x onerror=alert\\(1\\)\\> \\| \\*now\\* "
                    "next line")
