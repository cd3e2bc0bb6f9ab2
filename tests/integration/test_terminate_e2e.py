"""End to end: jobs run by a real Celery worker (prefork) on a real Redis, against boxsim over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from boxsim import validate_request_body
from tests.integration.harness import Stack, running_stack
from worker.box.answers import TERMINATE_ACCEPTED_MESSAGE
from worker.jobs.model import JobState, TargetStatus

pytestmark = pytest.mark.integration

USERS = "/2.0/users/terminate_sessions"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_sim(stack: Stack) -> None:
    stack.sim.clear_faults()
    stack.sim.clear_requests()


def user(login: str) -> dict[str, str]:
    return {"type": "user", "login": login}


def sent_ids(stack: Stack, endpoint: str = "/users/terminate_sessions") -> list[list[str]]:
    key = "user_ids" if endpoint.startswith("/users") else "group_ids"
    return [r["body"][key] for r in stack.terminate_requests(endpoint)]


def test_a_seeded_login_ends_succeeded_with_boxs_message_verbatim(stack: Stack) -> None:
    job = stack.wait(stack.submit([user("jdoe@example.com")]))
    assert job.state is JobState.SUCCEEDED
    assert job.targets[0].user_id == "17738362" and job.targets[0].status is TargetStatus.ACCEPTED
    assert job.calls[0].message == TERMINATE_ACCEPTED_MESSAGE and job.calls[0].attempts == 1
    assert sent_ids(stack) == [["17738362"]]


def test_a_login_that_is_a_prefix_of_another_resolves_exactly(stack: Stack) -> None:
    job = stack.wait(stack.submit([user("ann@example.com")]))
    assert job.state is JobState.SUCCEEDED
    assert job.targets[0].login == "ann@example.com"
    assert sent_ids(stack) == [[job.targets[0].user_id]]


def test_a_group_name_that_is_a_prefix_of_another_resolves_exactly(stack: Stack) -> None:
    job = stack.wait(stack.submit([{"type": "group", "name": "Contractors"}]))
    assert job.state is JobState.SUCCEEDED and job.targets[0].group_name == "Contractors"
    assert sent_ids(stack, "/groups/terminate_sessions") == [[job.targets[0].group_id]]


def test_unknown_login_is_not_found_and_calls_nothing(stack: Stack) -> None:
    job = stack.wait(stack.submit([user("nobody@example.com")]))
    assert job.targets[0].status is TargetStatus.NOT_FOUND and job.state is JobState.REFUSED
    assert stack.terminate_requests() == []


def test_two_users_with_one_login_in_different_case_are_ambiguous(stack: Stack) -> None:
    job = stack.wait(stack.submit([user("casey@example.com")]))
    assert job.targets[0].status is TargetStatus.AMBIGUOUS
    assert stack.terminate_requests() == []


def test_429_with_retry_after_2_delays_the_next_call_2_seconds(stack: Stack) -> None:
    stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "status": 429,
                           "headers": {"retry-after": "2"}}])
    job = stack.wait(stack.submit([user("rroe@example.com")]))
    assert job.state is JobState.SUCCEEDED
    # Box did nothing with the call it answered 429: the call is answered (never sent again), and its target
    # rode the first call after the pause
    assert [(c.http_status, c.attempts) for c in job.calls] == [(429, 1), (202, 1)]
    assert job.targets[0].call_ids == [c.call_id for c in job.calls] and not job.waiting
    first, second = stack.terminate_requests()
    assert first["status"] == 429 and second["status"] == 202
    assert second["time"] - first["time"] >= 2.0


def test_503_twice_then_202_is_accepted_with_attempts_3(stack: Stack) -> None:
    stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 2, "status": 503}])
    job = stack.wait(stack.submit([user("jdoe@example.com")]))
    assert job.state is JobState.SUCCEEDED
    assert job.calls[0].attempts == 3 and job.calls[0].http_status == 202
    assert [r["status"] for r in stack.terminate_requests()] == [503, 503, 202]


def test_403_fails_with_boxs_code_and_request_id_after_one_call(stack: Stack) -> None:
    stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "status": 403}])
    job = stack.wait(stack.submit([user("jdoe@example.com")]))
    assert job.state is JobState.FAILED and job.targets[0].status is TargetStatus.FAILED
    call = job.calls[0]
    assert call.http_status == 403 and call.error_code == "access_denied_insufficient_permissions"
    assert call.request_id and call.attempts == 1
    assert len(stack.terminate_requests()) == 1


def test_an_expired_token_is_refreshed_once_then_accepted(stack: Stack) -> None:
    stack.wait(stack.submit([user("jdoe@example.com")]))  # a token is cached now
    stack.sim.expire_tokens()
    stack.sim.clear_requests()
    job = stack.wait(stack.submit([user("rroe@example.com")]))
    assert job.state is JobState.SUCCEEDED
    assert len(stack.sim.requests(path="/oauth2/token")) == 1
    assert any(r["status"] == 401 for r in stack.sim.requests())


def test_dry_run_sends_no_terminate_call(stack: Stack) -> None:
    job = stack.wait(stack.submit([user("jdoe@example.com"), {"type": "group", "name": "Contractors"}],
                                  dry_run=True))
    assert job.state is JobState.DRY_RUN
    assert {t.status for t in job.targets} == {TargetStatus.WOULD_TERMINATE}
    assert stack.terminate_requests() == [] and stack.terminate_requests("/groups/terminate_sessions") == []


def test_every_body_boxcut_sends_passes_boxs_openapi_schema(stack: Stack) -> None:
    stack.wait(stack.submit([user("jdoe@example.com"), user("rroe@example.com"),
                             {"type": "group", "name": "Contractors EU"}]))
    sent = [("post_users_terminate_sessions", r["body"]) for r in stack.terminate_requests()]
    sent += [("post_groups_terminate_sessions", r["body"])
             for r in stack.terminate_requests("/groups/terminate_sessions")]
    assert len(sent) == 2
    for operation, body in sent:
        assert validate_request_body(operation, body) == []


def test_a_long_429_pause_is_waited_out_by_a_sender_scheduled_for_its_end_not_by_a_sleeping_task(stack: Stack) -> None:
    stack.sim.add_faults([{"method": "POST", "path": USERS, "times": 1, "status": 429,
                           "headers": {"retry-after": "8"}}])
    job = stack.wait(stack.submit([user("jdoe@example.com")]), timeout=90)
    assert job.state is JobState.SUCCEEDED
    assert [(c.http_status, c.attempts) for c in job.calls] == [(429, 1), (202, 1)]
    first, second = stack.terminate_requests()
    assert 8.0 <= second["time"] - first["time"] < 12.0
    assert "Retry in" not in stack.worker_logs()  # no task waited for it in a Celery retry either
