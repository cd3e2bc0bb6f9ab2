"""What a worker counts, for Prometheus (`boxcut worker --metrics-port`; docs/metrics-and-logs.md).

The metrics live in no registry of this process: under prefork each pool process counts in files of
prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `boxcut worker` before anything imports
this module), and the worker's main process serves their sum (worker/cli/worker_metrics.py). Without that
directory they count in memory and nobody reads them (tests, the CLI). What Redis knows for every worker at
once (calls in flight, targets waiting, the directory copy's age) is read at scrape time instead.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BOX_CALLS = Counter("boxcut_box_calls", "Requests sent to Box, by endpoint and HTTP status (no_answer: none came)",
                    ["endpoint", "status"], registry=None)
BOX_RETRIES = Counter("boxcut_box_retries", "Box requests retried after an error, by endpoint", ["endpoint"],
                      registry=None)
RATE_LIMIT_PAUSES = Counter("boxcut_box_429_pauses", "Pauses of every worker that a 429 from Box asked for",
                            registry=None)
PAUSED_SECONDS = Counter("boxcut_box_paused_seconds", "Seconds of pause 429 answers asked for", registry=None)
RATE_WAIT_SECONDS = Counter("boxcut_rate_limit_wait_seconds", "Seconds spent waiting for the shared rate limit",
                            registry=None)
JOBS_FINISHED = Counter("boxcut_jobs_finished", "Jobs that reached a final state, by state", ["state"],
                        registry=None)
SUBMITTED_TO_ACCEPTED = Histogram(
    "boxcut_submitted_to_accepted_seconds", "From a job's submission to Box accepting its last target",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, float("inf")), registry=None)
SHIELD_ALERTS = Counter("boxcut_shield_alerts", "Box Shield alerts read from Box's event stream, by what the rule "
                        "table decided (terminate, approve, record) or skipped (unusable)", ["action"], registry=None)
EVENTS_READ = Counter("boxcut_events_read", "Enterprise events read from Box's event stream", registry=None)
STREAM_RESTARTS = Counter("boxcut_event_stream_restarts", "Times the event-stream reader started again from now, "
                          "by why (first, too_old, refused)", ["why"], registry=None)
ACTIVITY_AFTER = Counter("boxcut_activity_after_termination", "Events by a user after Box accepted their "
                         "termination, recorded in their job", registry=None)
NOTIFICATIONS = Counter("boxcut_notifications", "Notification attempts, by event (awaiting_approval, finished) and "
                        "outcome (delivered, retrying, failed)", ["event", "outcome"], registry=None)
BRAKE_ENGAGEMENTS = Counter("boxcut_brake_engagements", "Times the brake across jobs engaged, by scope (source, "
                            "total)", ["scope"], registry=None)
BRAKE_JOBS_HELD = Counter("boxcut_brake_jobs_held", "Jobs the brake across jobs held for approval, by scope",
                          ["scope"], registry=None)


def brake_engaged(scope: str) -> None:
    BRAKE_ENGAGEMENTS.labels(scope=scope).inc()


def brake_held(scope: str) -> None:
    BRAKE_JOBS_HELD.labels(scope=scope).inc()


def shield_alert(action: str) -> None:
    SHIELD_ALERTS.labels(action=action).inc()


def events_read(count: int) -> None:
    if count:
        EVENTS_READ.inc(count)


def stream_restarted(why: str) -> None:
    STREAM_RESTARTS.labels(why=why).inc()


def activity_after() -> None:
    ACTIVITY_AFTER.inc()


def notification(event: str, outcome: str) -> None:
    NOTIFICATIONS.labels(event=event, outcome=outcome).inc()


def box_call(endpoint: str, status: int | None) -> None:
    BOX_CALLS.labels(endpoint=_endpoint(endpoint), status=str(status) if status is not None else "no_answer").inc()


def box_retry(endpoint: str) -> None:
    BOX_RETRIES.labels(endpoint=_endpoint(endpoint)).inc()


def paused(seconds: float) -> None:
    RATE_LIMIT_PAUSES.inc()
    PAUSED_SECONDS.inc(seconds)


def waited_for_rate(seconds: float) -> None:
    if seconds > 0:
        RATE_WAIT_SECONDS.inc(seconds)


def job_finished(state: str, *, submitted_to_accepted: float | None) -> None:
    JOBS_FINISHED.labels(state=state).inc()
    if submitted_to_accepted is not None:
        SUBMITTED_TO_ACCEPTED.observe(max(0.0, submitted_to_accepted))


def _endpoint(path: str) -> str:
    """A path without its query or ids: `/users?filter_term=…` and `/users/123` count as `/users`."""
    head = path.split("?", 1)[0]
    parts = [p for p in head.split("/") if p and not p.isdigit()]
    return "/" + "/".join(parts)
