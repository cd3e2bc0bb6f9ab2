"""Benchmark: sustained signed alert posts to `boxcut intake` on loopback, beside a bare /healthz.

    .venv/bin/python bench/intake.py [--seconds 10] [--clients 8]

Starts the intake (one uvicorn process) on a free loopback port against the Redis at BOXCUT_TEST_REDIS_URL
(default redis://127.0.0.1:6379/0) under a key prefix of its own, deleted afterwards. No worker runs: jobs are
created and enqueued, which is all the intake does. Each phase runs `--clients` keep-alive clients for
`--seconds`; it prints requests per second and p50/p99 latency for each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import requests
from benchkit import REPO, delete_prefix

from worker.intake.auth import signature

SECRET = "bench-hmac-secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    port = _free_port()
    env = {**os.environ, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": prefix,
           "BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "worker.cli", "intake", "--port", str(port)], env=env,
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base + "/healthz")
        health = _phase(lambda s: s.get(base + "/healthz", timeout=10), args.clients, args.seconds)
        alerts = _phase(lambda s: _post_signed(s, base + "/v1/alerts/panther"), args.clients, args.seconds)
        _report("GET /healthz", health, args)
        _report("POST /v1/alerts/panther (signed, new event each)", alerts, args)
        print(f"ratio alerts/healthz: throughput {len(alerts) / len(health):.2f}, "
              f"p50 latency {_pct(alerts, 50) / _pct(health, 50):.2f}x")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        delete_prefix(redis_url, prefix)


def _post_signed(session: requests.Session, url: str) -> requests.Response:
    payload = {"alertId": uuid.uuid4().hex, "title": "bench", "alertContext": {"user": "jdoe@example.com"}}
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
               "X-Boxcut-Signature": signature(SECRET, stamp, body)}
    return session.post(url, data=body, headers=headers, timeout=10)


def _phase(call: Callable[[requests.Session], requests.Response], clients: int, seconds: float) -> list[float]:
    """Latencies (s) of every successful request that `clients` threads made in `seconds`."""
    latencies: list[float] = []
    failures: list[int] = []
    lock, stop_at = threading.Lock(), time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            status = call(session).status_code
            elapsed = time.perf_counter() - started
            with lock:
                (latencies.append(elapsed) if status < 300 else failures.append(status))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"  {len(failures)} requests failed, e.g. status {failures[0]}")
    return latencies


def _pct(latencies: list[float], pct: int) -> float:
    return statistics.quantiles(latencies, n=100)[pct - 1] if len(latencies) > 1 else latencies[0]


def _report(name: str, latencies: list[float], args: argparse.Namespace) -> None:
    print(f"{name}: {len(latencies) / args.seconds:.0f} req/s over {args.seconds:.0f} s with {args.clients} "
          f"clients; p50 {_pct(latencies, 50) * 1000:.1f} ms, p99 {_pct(latencies, 99) * 1000:.1f} ms")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the intake did not answer at {url}")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
