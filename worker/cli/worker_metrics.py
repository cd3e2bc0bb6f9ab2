"""`boxcut worker --metrics-port`: the worker's /metrics, summed over its pool processes.

`prepare()` runs before anything imports prometheus-client: it points PROMETHEUS_MULTIPROC_DIR at an empty
directory of this worker's own, so every pool process (forked later) counts in files there. `serve()` starts the
HTTP server in the main process with a registry that sums those files (prometheus-client's multiprocess mode),
plus what Redis knows for every worker at once, read at scrape time: calls in flight and targets waiting per
endpoint, the age of the shared directory copy, and Redis's headroom (worker/jobs/headroom.py: memory used and
its limit, a settled job's bytes, jobs a day, the days of jobs the free memory holds, the hot window's need, the
jobs in Redis and those waiting to settle), measured on a small sample so that a scrape stays cheap.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Keys whose MEMORY USAGE a scrape measures, of each kind (packed copies, idempotency keys): a few round trips'
# worth, so that a scrape every 15 s costs Redis nothing worth counting.
HEADROOM_SAMPLE = 5


def prepare() -> str:
    """Give this worker an empty multiprocess directory (before prometheus-client is imported); returns it."""
    directory = tempfile.mkdtemp(prefix="boxcut-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)  # the main process leaves after its pool
    return directory


def serve(settings: Settings, port: int, *, host: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` from a thread of this (the main) process."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_SharedState(settings))
    start_http_server(port, addr=host, registry=registry)


class _SharedState:
    """Gauges read from Redis when scraped: the same for every worker, so any one of them may be scraped."""

    def __init__(self, settings: Settings) -> None:
        from worker.connections import redis_client
        from worker.event_stream.cursor import StreamCursor
        from worker.jobs.send_queue import SendQueue
        from worker.jobs.store import JobStore
        from worker.run.directory_cache import DirectoryCache

        client = redis_client(settings)
        self.settings = settings
        self.store = JobStore.from_settings(client, settings)
        self.cursor = StreamCursor(client, key_prefix=settings.key_prefix)
        self.queue = SendQueue(client, key_prefix=settings.key_prefix)
        self.directory = DirectoryCache(client, key_prefix=settings.key_prefix,
                                        ttl_seconds=settings.directory_cache_ttl_seconds)

    def collect(self) -> Iterator[Any]:
        """The gauges; none while Redis does not answer, so the counters are still served during an outage."""
        import redis

        try:
            yield from self._gauges()
        except redis.RedisError:
            return

    def _gauges(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from worker.run.settlement import ENDPOINTS

        in_flight = GaugeMetricFamily("boxcut_calls_in_flight", "Terminate calls taken and not yet answered",
                                      labels=["endpoint"])
        waiting = GaugeMetricFamily("boxcut_targets_waiting", "Box ids waiting in the send queue for a call",
                                    labels=["endpoint"])
        now_ms = int(time.time() * 1000)
        for endpoint in ENDPOINTS.values():
            depth = self.queue.depth(endpoint, now_ms=now_ms)
            in_flight.add_metric([endpoint], depth.in_flight)
            waiting.add_metric([endpoint], depth.waiting_ids)
        yield in_flight
        yield waiting
        age = self.directory.age_seconds()
        copy_age = GaugeMetricFamily("boxcut_directory_copy_age_seconds",
                                     "Age of the shared copy of the directory (absent when there is none)")
        if age is not None:
            copy_age.add_metric([], age)
        yield copy_age
        yield from self._stream_gauges()
        yield from self._headroom_gauges()

    def _stream_gauges(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        status = self.cursor.status()
        now = time.time()
        quiet = status.shield_quiet_seconds(now)
        since = GaugeMetricFamily("boxcut_shield_alert_quiet_seconds", "Seconds since a SHIELD_ALERT last came "
                                  "through Box's event stream (since reading began, if none ever has)")
        silent = GaugeMetricFamily("boxcut_shield_alerts_silent", "1 when no SHIELD_ALERT came through the event "
                                   "stream for BOXCUT_SHIELD_QUIET_HOURS: Shield rules may not publish there")
        read_age = GaugeMetricFamily("boxcut_event_stream_read_age_seconds", "Seconds since the event stream was "
                                     "last read")
        if quiet is not None:
            since.add_metric([], quiet)
            silent.add_metric([], 1.0 if quiet > self.settings.shield_quiet_hours * 3600 else 0.0)
        if status.last_read_at is not None:
            read_age.add_metric([], now - status.last_read_at)
        active = GaugeMetricFamily("boxcut_jobs_active_after_termination", "Kept jobs whose users acted in Box "
                                   "after Box accepted their termination")
        active.add_metric([], float(self.cursor.redis.zcard(f"{self.settings.key_prefix}jobs:active_after")))
        yield from (since, silent, read_age, active)

    def _headroom_gauges(self) -> Iterator[Any]:
        """Redis's headroom: the numbers `boxcut doctor` prints, for alerts before Redis fills (a full Redis, with
        maxmemory-policy noeviction, refuses every write: containment stops)."""
        from prometheus_client.core import GaugeMetricFamily

        from worker.jobs.headroom import measure, waiting_to_settle

        room = measure(self.store, hot_days=self.settings.hot_days, sample=HEADROOM_SAMPLE,
                       idempotency_ttl_seconds=self.settings.idempotency_ttl_seconds)
        values = (
            ("boxcut_redis_used_bytes", "Memory Redis uses (INFO memory used_memory)", room.used_bytes),
            ("boxcut_redis_max_bytes", "Redis's maxmemory (0: no limit)", room.max_bytes),
            ("boxcut_job_redis_bytes", "Bytes a settled job takes in Redis over the hot window (estimated from a "
             "sample: its packed copy, index entry and share of an idempotency key)", room.bytes_per_job),
            ("boxcut_jobs_per_day", "Jobs created a day, at the rate of the last 24 h (scaled up from less while "
             "Redis holds younger jobs only)", room.jobs_per_day),
            ("boxcut_redis_days_left", "Days of jobs, at that rate, the free memory (maxmemory - used) holds were "
             "nothing to leave Redis; +Inf with no maxmemory or no jobs",
             math.inf if room.days_left is None else room.days_left),
            ("boxcut_hot_window_bytes", "What a full hot window (BOXCUT_HOT_DAYS) holds at that rate",
             room.hot_window_bytes),
            ("boxcut_jobs_waiting_to_settle", "Finished jobs still in their working form in Redis, not settled into "
             "the archive yet", waiting_to_settle(self.store)),
        )
        for name, documentation, value in values:
            yield GaugeMetricFamily(name, documentation, value=float(value))
        in_redis = GaugeMetricFamily("boxcut_jobs_in_redis", "Jobs in Redis: working (full records, not settled "
                                     "yet) or hot (packed copies)", labels=["form"])
        in_redis.add_metric(["working"], room.jobs_working)
        in_redis.add_metric(["hot"], room.jobs_hot)
        yield in_redis
