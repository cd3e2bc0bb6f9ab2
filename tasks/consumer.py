"""The worker's consumer: Celery's, trying a broker that went away again every second or two, not every 30 s.

Celery's consumer reconnects through kombu's `ensure_connection` with kombu's default intervals: 2 s, then 2 s
more each round, up to 30 s between rounds. A broker back after a restart or a failover then waits for the next
round: drills showed the first Box call 5 s after a Sentinel had named the new primary, and after a long outage
a worker may sleep 30 s past Redis's return. Here the rounds are 0.5 s apart at first, 0.5 s more each time, at
most 2 s apart: a worker waiting for its broker asks a Redis (or a Sentinel) once or twice a second, which costs
nothing, and finds it back within two seconds.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

FIRST_RETRY_SECONDS = 0.5
RETRY_STEP_SECONDS = 0.5
MAX_RETRY_SECONDS = 2.0


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=FIRST_RETRY_SECONDS, interval_step=RETRY_STEP_SECONDS,
            interval_max=MAX_RETRY_SECONDS)
        return super().ensure_connected(conn)
