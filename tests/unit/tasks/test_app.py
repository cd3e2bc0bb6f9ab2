"""The reliability settings of the configured Celery app (docs/reliability.md), read from the app itself."""

from __future__ import annotations

from config import load_settings
from config.celery_settings import QUEUE, max_countdown
from tasks.app import build_celery_app
from tasks.jobs import RUN_JOB


def test_the_app_acknowledges_late_one_task_at_a_time_and_retries_on_worker_loss() -> None:
    settings = load_settings({"BOXCUT_VISIBILITY_TIMEOUT": "900"}, env_file=None)
    app = build_celery_app(settings)
    conf = app.conf
    assert conf.task_acks_late is True and conf.worker_prefetch_multiplier == 1
    assert conf.task_reject_on_worker_lost is True and conf.task_retry_on_worker_lost is True
    assert conf.task_default_queue == QUEUE and conf.broker_connection_retry_on_startup is True
    assert conf.worker_enable_soft_shutdown_on_idle is True and conf.worker_soft_shutdown_timeout > 0
    task = app.tasks[RUN_JOB]
    assert task.acks_late is True and task.max_retries >= 10


def test_the_visibility_timeout_is_set_everywhere_and_outlasts_any_run_and_countdown() -> None:
    settings = load_settings({"BOXCUT_VISIBILITY_TIMEOUT": "900"}, env_file=None)
    conf = build_celery_app(settings).conf
    assert conf.broker_transport_options["visibility_timeout"] == 900
    assert conf.result_backend_transport_options["visibility_timeout"] == 900
    assert conf.task_time_limit < 900 and conf.task_soft_time_limit < conf.task_time_limit
    assert max_countdown(settings) < 900
    assert conf.broker_transport_options["global_keyprefix"] == settings.key_prefix
