"""Shared Signals end to end: SETs signed with test RSA and EC keys, pushed over HTTP to a real `boxcut intake`,
run by real prefork workers against boxsim. A valid session-revoked SET ends the person's sessions; every SET
RFC 8935 refuses gets its 400 and makes no job, and nothing reaches Box for it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.harness import running_stack
from tests.ssf_tokens import (
    CREDENTIAL_CHANGE,
    Transmitter,
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


def push(url: str, token: str) -> requests.Response:
    return requests.post(f"{url}/v1/ssf/events", data=token.encode(), timeout=10,
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
