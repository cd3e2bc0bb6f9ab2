"""Celery's per-round INFO lines about the periodic tasks are DEBUG; a job task's stay INFO."""

from __future__ import annotations

import logging

import pytest

from tasks.periodic_logs import CELERY_LOGGERS, quiet_periodic_tasks


@pytest.fixture
def caught(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    quiet_periodic_tasks()
    return caplog


LINES = [
    ("celery.beat", "Scheduler: Sending due task %s (%s)", ("boxcut-sweep", "boxcut.sweep")),
    ("celery.worker.strategy", "Task %(name)s[%(id)s] received", {"name": "boxcut.archive", "id": "1"}),
    ("celery.app.trace", "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
     {"name": "boxcut.read_events", "id": "2", "runtime": 0.1, "return_value": "'0 pages'"}),
]


def log(name: str, message: str, args: object) -> None:
    if isinstance(args, dict):
        logging.getLogger(name).info(message, args)
    else:
        logging.getLogger(name).info(message, *args)  # type: ignore[misc]


@pytest.mark.parametrize(("name", "message", "args"), LINES)
def test_a_periodic_tasks_line_is_not_said_at_info(caught: pytest.LogCaptureFixture, name: str, message: str,
                                                   args: object) -> None:
    with caught.at_level(logging.INFO):
        log(name, message, args)
    assert caught.records == []


@pytest.mark.parametrize(("name", "message", "args"), LINES)
def test_a_periodic_tasks_line_is_said_at_debug_where_debug_is_on(caught: pytest.LogCaptureFixture, name: str,
                                                                  message: str, args: object) -> None:
    with caught.at_level(logging.DEBUG):
        log(name, message, args)
    assert [r.levelname for r in caught.records] == ["DEBUG"]


def test_a_job_tasks_lines_stay_info(caught: pytest.LogCaptureFixture) -> None:
    with caught.at_level(logging.INFO):
        logging.getLogger("celery.worker.strategy").info("Task %(name)s[%(id)s] received",
                                                         {"name": "boxcut.run_job", "id": "3"})
        logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "x", "boxcut.send")
    assert [r.levelname for r in caught.records] == ["INFO", "INFO"]
    assert all(logging.getLogger(n).filters for n in CELERY_LOGGERS)
