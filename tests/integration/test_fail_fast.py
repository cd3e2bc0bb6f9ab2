"""Issue 25, failing fast and naming the real cause, where a user meets it: the real intake over HTTP, real
`boxcut worker` processes, boxsim.

1. A sender whose body is over the limit reads its 413, never a broken pipe (its retry logic would take that for
   a transient fault), whether it declares the length or sends it chunked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.integration.harness import Stack, running_stack

pytestmark = pytest.mark.integration

TOKEN = "fail-fast-intake-token"
# Over the intake's 1 MiB limit by far: the sender is still writing when the limit is met.
BIG_BODY = b'{"id": "big", "reason": "' + b"x" * (2_600_000) + b'", "targets": []}'


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("failfast"), worker=False,
                       extra_env={"BOXCUT_INTAKE_TOKENS": TOKEN}) as running:
        yield running


@pytest.fixture(scope="module")
def intake(stack: Stack) -> str:
    return stack.start_intake()


@pytest.mark.parametrize("sent", ["with Content-Length", "chunked"])
def test_a_sender_of_a_body_over_the_limit_reads_its_413_every_time(intake: str, sent: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for attempt in range(10):
        body = BIG_BODY if sent == "with Content-Length" else iter(
            BIG_BODY[i:i + 65536] for i in range(0, len(BIG_BODY), 65536))
        try:
            answer = requests.post(f"{intake}/v1/alerts", data=body, headers=headers, timeout=30)
        except requests.ConnectionError as broken:
            pytest.fail(f"attempt {attempt + 1}: the sender met {broken!r} instead of its 413")
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"
