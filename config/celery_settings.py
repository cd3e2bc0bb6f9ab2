"""Celery settings that follow boxcut's reliability rules (docs/reliability.md)."""

from __future__ import annotations

from typing import Any

from config import defaults
from config.settings import Settings

QUEUE = "boxcut"
# Send tasks and the sweep have a queue of their own, so they never wait behind a backlog of jobs to resolve.
SEND_QUEUE = "boxcut.send"
# Notification deliveries have a queue of their own, so a backlog of jobs never holds up the notice that one
# waits for approval, and a worker of their own can take them (`boxcut worker --queues notify`; compose's
# `notifier`): then a receiver that is slow or down never takes a process a Box call could use. Their scanner
# is a periodic task like the others (SEND_QUEUE: a few Redis reads), so a backlog of deliveries never delays it.
NOTIFY_QUEUE = "boxcut.notify"

# How often a worker looks for tasks whose worker vanished (unacknowledged past the visibility timeout).
UNACKED_RESTORE_INTERVAL_SECONDS = 5


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for these settings.

    - Late ack, prefetch 1: a task leaves Redis only once it has finished, and a worker holds one at a time.
    - A worker process lost mid-task (killed, OOM) sends the task again as a retry (bounded by the task's
      max_retries); a whole worker lost leaves its task unacknowledged, and Redis hands it to another worker
      after the visibility timeout.
    - The visibility timeout is set in every place Celery reads it and exceeds any task run (hard time limit)
      and any retry countdown, so a slow task is never handed to a second worker while it still runs.
    - Soft shutdown lets a task in progress finish its Box call before a worker stops.
    """
    visibility = settings.visibility_timeout
    soft_limit, hard_limit = settings.task_time_limits
    if settings.broker_is_redis:
        broker: dict[str, Any] = {
            # kombu's Redis transport, mended to survive a Redis restart and a full Redis (tasks/broker.py), or
            # its Sentinel transport, mended alike, which asks the Sentinels for the primary at every connect.
            "broker_transport": "tasks.broker:SentinelTransport" if settings.sentinel else "tasks.broker:Transport",
            "broker_transport_options": {
                "visibility_timeout": visibility,
                "global_keyprefix": settings.key_prefix,
                "unacked_restore_interval": UNACKED_RESTORE_INTERVAL_SECONDS,
                "unacked_restore_throttle": 1,
                "socket_timeout": 30,
                "socket_connect_timeout": 5,
                **_sentinel_options(settings),
            },
        }
    else:
        # RabbitMQ: publisher confirms, so a job is answered 202 only once the broker holds its message. An
        # unacknowledged message goes back to the queue when its consumer's channel closes (no visibility
        # timeout); RabbitMQ's `consumer_timeout` (30 min by default) must exceed the longest task run and any
        # countdown, which boxcut keeps under it (max_countdown).
        broker = {"broker_transport_options": {"confirm_publish": True}}
    return {
        "broker_url": settings.broker_url,
        **broker,
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # A broker back after a restart or a failover is found within 2 s, not kombu's up to 30 s (tasks/consumer.py).
        "worker_consumer": "tasks.consumer:Consumer",
        "result_backend": None,
        "task_ignore_result": True,
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "task_default_queue": QUEUE,
        "task_routes": {**{name: {"queue": SEND_QUEUE} for name in _PERIODIC_AND_SENDING},
                        **{name: {"queue": NOTIFY_QUEUE} for name in _NOTIFYING}},
        # The sweep (tasks/sending.py), the directory refresh (tasks/directory.py), the expiry and the archive pass
        # (tasks/retention.py)
        # and the event-stream reader (tasks/event_stream.py); beat (`boxcut beat`, or inside `boxcut worker`) keeps no
        # schedule file.
        "beat_schedule": {
            "boxcut-sweep": _every(settings.sweep_seconds, "boxcut.sweep"),
            "boxcut-refresh-directory": _every(settings.directory_refresh_seconds, "boxcut.refresh_directory"),
            "boxcut-expire": _every(defaults.EXPIRE_EVERY_SECONDS, "boxcut.expire"),
            "boxcut-archive": _every(settings.archive_every_seconds, "boxcut.archive", queue=NOTIFY_QUEUE),
            **({"boxcut-read-events": _every(settings.events_poll_seconds, "boxcut.read_events")}
               if settings.reads_events else {}),
            # Only when receivers are named (BOXCUT_NOTIFY_URLS) and BOXCUT_NOTIFY_POLL_SECONDS is not 0.
            **({"boxcut-scan-notifications": _every(settings.notify_poll_seconds, "boxcut.scan_notifications")}
               if settings.notifies else {}),
        },
        "beat_scheduler": "celery.beat:Scheduler",
        "task_acks_late": True,
        "task_acks_on_failure_or_timeout": True,
        "task_reject_on_worker_lost": True,
        "task_retry_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": soft_limit,
        "task_time_limit": hard_limit,
        "worker_soft_shutdown_timeout": 30.0,
        "worker_enable_soft_shutdown_on_idle": True,
        # A task in progress when the broker connection drops is cancelled and delivered again. Letting it run on
        # (False) was tried, so that a sender holding Box's answer could record it: a rejected task then ran on
        # into its soft time limit and the worker stopped (`Unrecoverable error: UnicodeDecodeError` on the pool
        # pipe), drills showed. A cancelled sender's call is sent again once its claim runs out, and its record
        # counts both requests.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        # Task events (received, started, succeeded, failed, retried), so `celery -A tasks events`, Flower and
        # celery-exporter see the work; on Redis they go out by PUBLISH, stored nowhere.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "enable_utc": True,
    }


_PERIODIC_AND_SENDING = ("boxcut.send", "boxcut.sweep", "boxcut.refresh_directory", "boxcut.expire",
                         "boxcut.read_events", "boxcut.scan_notifications")
# The archive pass (database writes, never urgent) waits with the deliveries, so it never holds up a Box call.
_NOTIFYING = ("boxcut.notify", "boxcut.archive")


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    """kombu's Sentinel transport options: the service to ask for, and how to reach the Sentinels themselves."""
    sentinel = settings.sentinel
    if sentinel is None:
        return {}
    login = {"password": sentinel.sentinel_password.reveal()} if sentinel.sentinel_password else {}
    return {"master_name": sentinel.service, "sentinels": [list(node) for node in sentinel.sentinels],
            "sentinel_kwargs": {"socket_timeout": 2, "socket_connect_timeout": 2, **login}}


def _every(seconds: float, task: str, *, queue: str = SEND_QUEUE) -> dict[str, Any]:
    # A round that waited longer than its interval (no worker free) is dropped: the next one does its work.
    return {"task": task, "schedule": seconds, "options": {"queue": queue, "expires": seconds}}


def max_countdown(settings: Settings) -> int:
    """The longest Celery retry countdown: under the visibility timeout, or Redis would redeliver early."""
    return min(defaults.MAX_COUNTDOWN_SECONDS, settings.visibility_timeout // 2)
