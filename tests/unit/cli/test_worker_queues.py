"""`boxcut worker --queues`: the work a worker takes, so notifications can have a worker of their own."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from config.celery_settings import NOTIFY_QUEUE, QUEUE, SEND_QUEUE
from worker.cli.commands import _queues, main


def test_the_names_map_to_celerys_queues_once_each_in_order() -> None:
    assert _queues("jobs,send,notify") == [QUEUE, SEND_QUEUE, NOTIFY_QUEUE]
    assert _queues(" Notify , notify ") == [NOTIFY_QUEUE]


@pytest.mark.parametrize("given", ["jobs,bogus", "", " , "])
def test_an_unknown_or_empty_list_is_a_usage_error_that_starts_nothing(given: str) -> None:
    run = CliRunner().invoke(main, ["worker", "--queues", given])
    assert run.exit_code == 64 and "choose from jobs, send, notify" in run.output
