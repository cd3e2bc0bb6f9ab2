"""The brake across jobs end to end: Shared Signals SETs naming one user each, pushed over HTTP to a real
`boxcut intake`, run by two real prefork workers racing each other against boxsim. Past BOXCUT_BRAKE_USERS the
source's jobs wait for a person, another transmitter's go through, an operator's offboarding is never held, the
engagement is told once, and one release lets every held job go."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from boxsim import SimConfig
from tests.integration.harness import running_stack, until
from tests.integration.test_notifications import Receiver, notify_env, receiving, scanning
from tests.ssf_tokens import Transmitter, ec_key, rsa_key, set_claims, sign
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration

LIMIT = 10
OPERATOR_TOKEN = "operator-token-for-the-brake-test"
FIRST = Transmitter([rsa_key("rsa-1")], issuer="https://idp.example.com")
SECOND = Transmitter([ec_key("ec-1")], issuer="https://other-idp.example.com")


def push(url: str, token: str) -> requests.Response:
    return requests.post(f"{url}/v1/ssf/events", data=token.encode(), timeout=10,
                         headers={"Content-Type": "application/secevent+jwt"})


def login(n: int) -> str:
    return f"user{n:05d}@example.com"


def test_thirty_sets_from_one_transmitter_stop_at_the_limit_and_one_release_lets_them_all_go(
        redis_url: str, tmp_path: Path) -> None:
    env = {"BOXCUT_SSF_TRANSMITTERS": str(FIRST.write(tmp_path, SECOND)), "BOXCUT_BRAKE_USERS": str(LIMIT),
           "BOXCUT_BRAKE_TOTAL_USERS": "20", "BOXCUT_BRAKE_WINDOW_SECONDS": "600",
           "BOXCUT_OPERATOR_TOKENS": OPERATOR_TOKEN}
    with receiving(Receiver()) as receiver, running_stack(
            redis_url, tmp_path, sim_config=SimConfig(port=0, generate_users=200), worker=False,
            extra_env={**env, **notify_env(receiver.url), "BOXCUT_APPROVAL_THRESHOLD": "1000"}) as stack:
        stack.start_worker(concurrency=2)
        stack.start_worker(concurrency=2, beat=False)  # two workers, four processes, racing for the same calls
        url = stack.start_intake()
        scanning(stack)
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

        # 30 SETs from one transmitter within seconds, 5 from another meanwhile.
        for n in range(1, 31):
            assert push(url, sign(set_claims(login(n), issuer=FIRST.issuer), FIRST.keys[0])).status_code == 202
            if n % 6 == 0:
                other = set_claims(login(100 + n // 6), issuer=SECOND.issuer)
                assert push(url, sign(other, SECOND.keys[0])).status_code == 202
        store = stack.store()
        until(lambda: len(store.list_jobs(source="ssf", limit=100)[0]) == 35, "35 jobs")
        jobs = {s.job_id: stack.wait(s.job_id) for s in store.list_jobs(source="ssf", limit=100)[0]}
        first = [j for j in jobs.values() if j.requested_by == f"ssf:{FIRST.issuer}"]
        second = [j for j in jobs.values() if j.requested_by == f"ssf:{SECOND.issuer}"]

        terminated = {i for r in stack.terminate_requests() for i in r["body"]["user_ids"]}
        assert len(terminated) == LIMIT + len(second) == 15  # four processes raced; none slipped past the limit
        sent_first = [j for j in first if j.state is JobState.SUCCEEDED]
        held = [j for j in first if j.state is JobState.AWAITING_APPROVAL]
        assert (len(sent_first), len(held)) == (LIMIT, 30 - LIMIT)
        for job in held:
            assert job.approval is not None and "brake" in job.approval.reasons[0]
            assert FIRST.issuer in job.approval.reasons[0]
            assert job.targets[0].status is TargetStatus.PENDING
        assert {j.state for j in second} == {JobState.SUCCEEDED}  # another transmitter goes through meanwhile

        # An operator's 100-user offboarding is the operator's decision: counted, never held.
        rows = [{"user_login": login(n)} for n in range(50, 150)]
        answer = requests.post(f"{url}/v1/offboarding", json=rows, headers=operator, timeout=10)
        assert answer.status_code == 202, answer.text
        assert stack.wait(answer.json()["job_id"]).state is JobState.SUCCEEDED

        # The engagement is told once: one notification, none per held job.
        until(lambda: receiver.bodies("boxcut.job.brake_engaged"), "the brake's notification")
        time.sleep(1.5)  # three more passes of the scanner
        [engaged] = receiver.bodies("boxcut.job.brake_engaged")
        assert engaged["brake"]["source"] == f"ssf:{FIRST.issuer}" and engaged["brake"]["count"] == LIMIT
        assert engaged["brake"]["limit"] == LIMIT and engaged["brake"]["jobs_held"] >= 1
        assert all(r.signed for r in receiver.got)
        assert receiver.bodies("boxcut.job.awaiting_approval") == []

        status = requests.get(f"{url}/v1/brake", headers=operator, timeout=10).json()
        source = {s["source"]: s for s in status["sources"]}[f"ssf:{FIRST.issuer}"]
        assert source["engaged"] and sorted(source["held_jobs"]) == sorted(j.job_id for j in held)

        # One release lets every held job go, and names who released it.
        released = requests.post(f"{url}/v1/brake/release", json={"source": f"ssf:{FIRST.issuer}"},
                                 headers=operator, timeout=10)
        assert released.status_code == 200, released.text
        assert sorted(released.json()["approved"]) == sorted(j.job_id for j in held)
        for job in held:
            until(lambda job_id=job.job_id: stack.store().load(job_id).state.is_final, f"{job.job_id} to end")
        finished = [stack.store().load(j.job_id) for j in first]
        assert {j.state for j in finished} == {JobState.SUCCEEDED}
        assert all(t.status is TargetStatus.ACCEPTED for j in finished for t in j.targets)
        done = stack.store().load(held[0].job_id)
        assert done.approval is not None and (done.approval.approved_by or "").startswith("operator:")
        trail = json.dumps(stack.store().audit_entries(job_id=held[0].job_id))
        assert "released from the brake by operator:" in trail
