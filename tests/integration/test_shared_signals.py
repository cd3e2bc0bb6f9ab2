"""Shared Signals end to end: SETs signed with test RSA and EC keys, pushed over HTTP to a real `boxcut intake`,
run by real prefork workers against boxsim. A valid session-revoked SET ends the person's sessions; every SET
RFC 8935 refuses gets its 400 and makes no job, and nothing reaches Box for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.harness import running_stack
from tests.ssf_tokens import (
    CREDENTIAL_CHANGE,
    Transmitter,
    TricklingJwks,
    ec_key,
    hmac_with_public_key,
    rsa_key,
    set_claims,
    sign,
    unsigned,
)
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration

RSA, EC = rsa_key("rsa-1"), ec_key("ec-1")


def push(url: str, token: str, timeout: float = 10) -> requests.Response:
    return requests.post(f"{url}/v1/ssf/events", data=token.encode(), timeout=timeout,
                         headers={"Content-Type": "application/secevent+jwt"})


def test_sets_in_over_http_one_ends_sessions_and_every_refusal_makes_no_job(redis_url: str, tmp_path: Path) -> None:
    transmitters = Transmitter([RSA, EC]).write(tmp_path)
    with running_stack(redis_url, tmp_path, extra_env={"BOXCUT_SSF_TRANSMITTERS": str(transmitters)}) as stack:
        stack.start_worker(concurrency=2)
        url = stack.start_intake()

        good = set_claims("jdoe@example.com")
        answer = push(url, sign(good, RSA))
        assert (answer.status_code, answer.content) == (202, b""), answer.text
        [summary] = stack.store().list_jobs(source="ssf")[0]
        job = stack.wait(summary.job_id)
        assert job.state is JobState.SUCCEEDED and job.source_event_id == good["jti"]
        assert [t.status for t in job.targets] == [TargetStatus.ACCEPTED]
        assert len(stack.terminate_requests()) == 1

        refusals: list[tuple[str, str]] = [
            (sign(good, EC), "invalid_request"),  # the same jti again, even re-signed
            (sign(set_claims(audience="https://elsewhere.example.test"), RSA), "invalid_audience"),
            (sign(set_claims(issuer="https://unknown.example.test"), RSA), "invalid_issuer"),
            (sign(set_claims(), RSA, kid="unknown-kid"), "invalid_key"),
            (unsigned(set_claims()), "authentication_failed"),
            (hmac_with_public_key(set_claims(), RSA), "invalid_key"),
            (sign(set_claims(iat=time.time() - 3600), EC), "invalid_request"),
            ("this is not a JWS", "invalid_request"),
        ]
        for token, err in refusals:
            refused = push(url, token)
            assert refused.status_code == 400 and refused.json()["err"] == err, (err, refused.text)

        recorded = push(url, sign(set_claims(event=CREDENTIAL_CHANGE, event_claims={"change_type": "update"}), EC))
        assert recorded.status_code == 202
        jobs: list[Any] = [stack.store().load(s.job_id) for s in stack.store().list_jobs(source="ssf")[0]]
        assert sorted(j.state.value for j in jobs) == ["recorded", "succeeded"]  # no acting job from any refusal
        time.sleep(1)  # a worker that took a refused SET's job would have called by now
        assert len(stack.terminate_requests()) == 1


def test_a_transmitter_cannot_reach_outside_its_directory_nor_by_a_second_spelling(redis_url: str,
                                                                                   tmp_path: Path) -> None:
    """Holes an adversarial review found, met where an attacker holding the transmitter's key meets them: a SET
    naming another company's CEO, or `kim@` spelled with U+212A KELVIN SIGN, is recorded and calls nothing."""
    transmitters = Transmitter([RSA], extra={"iss_sub": "{sub}@example.com"}).write(tmp_path)
    with running_stack(redis_url, tmp_path, extra_env={"BOXCUT_SSF_TRANSMITTERS": str(transmitters)}) as stack:
        stack.start_worker(concurrency=2)
        url = stack.start_intake()
        sent = {email: set_claims(email) for email in ("ceo@other-company.com", "\u212aim@example.com",
                                                         "jdoe@example.com")}
        for claims in sent.values():
            assert push(url, sign(claims, RSA)).status_code == 202
        store = stack.store()
        jobs = {j.source_event_id: j for j in (store.load(s.job_id) for s in store.list_jobs(source="ssf")[0])}
        outside, second_spelling, own = (jobs[claims["jti"]] for claims in sent.values())
        assert outside.state is JobState.RECORDED and "'other-company.com' is not an e-mail domain" in outside.note
        assert second_spelling.state is JobState.RECORDED and "KELVIN SIGN" in second_spelling.note
        assert stack.wait(own.job_id).state is JobState.SUCCEEDED
        time.sleep(1)  # a worker that took a recorded job would have called by now
        assert len(stack.terminate_requests()) == 1


def test_a_trickling_jwks_endpoint_holds_no_set_past_the_deadline_and_parks_none(redis_url: str,
                                                                               tmp_path: Path) -> None:
    """The intake's fetch of a JWKS that trickles its headers ends by its 10 s deadline, and a SET arriving
    meanwhile is answered at once (`invalid_key`), while another transmitter's SETs go through."""
    from config import defaults

    with TricklingJwks(seconds=30) as slow:
        trickling = Transmitter([EC], issuer="https://slow.example.test",
                                extra={"jwks": None, "jwks_uri": slow.url})
        transmitters = Transmitter([RSA]).write(tmp_path, trickling)
        with running_stack(redis_url, tmp_path, extra_env={"BOXCUT_SSF_TRANSMITTERS": str(transmitters)}) as stack:
            url = stack.start_intake()
            first: dict[str, Any] = {}

            def fetching_set() -> None:
                started = time.monotonic()
                first["answer"] = push(url, sign(set_claims(issuer=trickling.issuer), EC), timeout=40)
                first["seconds"] = time.monotonic() - started

            thread = threading.Thread(target=fetching_set, daemon=True)
            thread.start()
            assert slow.connected.wait(10)
            started = time.monotonic()
            second = push(url, sign(set_claims(issuer=trickling.issuer), EC))
            assert time.monotonic() - started < 1, "a SET was parked behind another SET's fetch"
            assert second.status_code == 400 and second.json()["err"] == "invalid_key", second.text
            assert push(url, sign(set_claims(), RSA)).status_code == 202  # the other transmitter's
            thread.join(30)
            assert first["seconds"] < defaults.SSF_JWKS_DEADLINE_SECONDS + 2, first
            assert first["answer"].status_code == 400 and first["answer"].json()["err"] == "invalid_key"
