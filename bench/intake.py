"""Benchmark: sustained signed alert posts to `boxcut intake` on loopback, beside a bare /healthz.

    .venv/bin/python bench/intake.py [--seconds 6] [--clients 16] [--workers 1,2,4] [--runs 3]

For each `--workers` value it starts the intake (`boxcut intake --workers N`: N uvicorn processes on one port)
on a free loopback port against the Redis at BOXCUT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a
key prefix of its own, deleted afterwards. No worker runs: jobs are created and enqueued, which is all the
intake does. Each run has three phases: `--clients` keep-alive connections posting /healthz for `--seconds`,
then signed alerts (a new event each) for `--seconds`, then one connection posting alerts one at a time (the
latency of an idle intake). It prints requests per second and p50/p99 latency of each phase and the ratio
signed alerts/s : /healthz/s of the same run; with `--runs` > 1, the min..max of each over the runs (the
machine is shared and noisy: compare ranges, not single numbers).

The load comes from one process of plain asyncio (uvloop when installed) writing prepared HTTP/1.1 requests,
so the client's own cost per request is small beside the server's; both share the machine's cores. `--client
requests` sends the same requests the first version's way (a thread and requests.Session per connection).
"""

from __future__ import annotations

import argparse
import asyncio
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
from dataclasses import dataclass, field

import requests
from benchkit import REPO, delete_prefix

from worker.intake.auth import signature

SECRET = "bench-hmac-secret"
HOST = "127.0.0.1"
ALERT_PATH = "/v1/alerts/panther"
IDLE_REQUESTS = 300


@dataclass
class Phase:
    """What one phase measured: latencies (s) of the answers under 300, and the other statuses."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, pct: int) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100)[pct - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each loaded phase")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections in the loaded phases")
    parser.add_argument("--workers", default="1", help="intake processes; a comma list runs each, e.g. 1,2,4")
    parser.add_argument("--runs", type=int, default=1, help="runs per --workers value; prints min..max")
    parser.add_argument("--client", choices=["asyncio", "requests"], default="asyncio",
                        help="asyncio: prepared requests on plain asyncio connections (cheap per request); "
                             "requests: a thread per connection with requests.Session (the first version of this "
                             "benchmark: its own cost caps /healthz far below the server's)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _use_uvloop()
    print(f"client: {args.client}, {args.clients} connections, {args.seconds:.0f} s a phase", flush=True)
    for workers in [int(w) for w in args.workers.split(",")]:
        runs = [_run(workers, args, number) for number in range(1, args.runs + 1)]
        if len(runs) > 1:
            _summary(workers, runs)


def _run(workers: int, args: argparse.Namespace, number: int) -> dict[str, float]:
    redis_url = os.environ.get("BOXCUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"boxcut-bench-{uuid.uuid4().hex[:8]}:"
    port = _free_port()
    env = {**os.environ, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": prefix,
           "BOXCUT_INTAKE_HMAC_SECRETS": SECRET, "BOXCUT_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "worker.cli", "intake", "--port", str(port)]
    command += ["--workers", str(workers)] if workers != 1 else []  # so it also runs against an older intake
    server = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait_for(f"http://{HOST}:{port}/healthz")
        load = _threads_load if args.client == "requests" else _asyncio_load
        load(port, _post_alert, args.clients, 1.5)  # every worker up, its connections made
        health = load(port, _get_healthz, args.clients, args.seconds)
        alerts = load(port, _post_alert, args.clients, args.seconds)
        idle = load(port, _post_alert, 1, 60.0, count=IDLE_REQUESTS)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        delete_prefix(redis_url, prefix)
    ratio = alerts.rate / health.rate if health.rate else float("nan")
    print(f"workers {workers}, run {number}:")
    _report("  GET /healthz", health, args.clients)
    _report(f"  POST {ALERT_PATH} (signed, new event each)", alerts, args.clients)
    _report(f"  POST {ALERT_PATH}, idle intake (one at a time)", idle, 1)
    print(f"  ratio signed alerts/healthz: throughput {ratio:.2f}, p50 latency "
          f"{alerts.pct(50) / health.pct(50):.2f}x", flush=True)
    return {"healthz/s": health.rate, "alerts/s": alerts.rate, "ratio": ratio,
            "alert p50 ms": alerts.pct(50) * 1000, "idle p50 ms": idle.pct(50) * 1000}


def _summary(workers: int, runs: list[dict[str, float]]) -> None:
    parts = []
    for name in runs[0]:
        values = [run[name] for run in runs]
        fmt = "{:.2f}" if name == "ratio" or name.endswith("ms") else "{:.0f}"
        parts.append(f"{name} {fmt.format(min(values))}..{fmt.format(max(values))}")
    print(f"workers {workers}, {len(runs)} runs, min..max: " + ", ".join(parts), flush=True)


def _get_healthz() -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def _post_alert() -> bytes:
    payload = {"alertId": uuid.uuid4().hex, "title": "bench", "alertContext": {"user": "jdoe@example.com"}}
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    head = (f"POST {ALERT_PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Boxcut-Timestamp: {stamp}\r\n"
            f"X-Boxcut-Signature: {signature(SECRET, stamp, body)}\r\n\r\n")
    return head.encode() + body


def _asyncio_load(port: int, request: Callable[[], bytes], clients: int, seconds: float, *,
                  count: int | None = None) -> Phase:
    return asyncio.run(_load(port, request, clients, seconds, count=count))


def _threads_load(port: int, request: Callable[[], bytes], clients: int, seconds: float, *,
                  count: int | None = None) -> Phase:
    """As `_load`, with a thread and a requests.Session per connection, sending the same requests."""
    phase, lock = Phase(seconds), threading.Lock()
    started = time.monotonic()
    stop_at = started + seconds

    def client() -> None:
        session, sent = requests.Session(), 0
        while time.monotonic() < stop_at and (count is None or sent < count):
            head, _, body = request().partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            began = time.perf_counter()
            status = session.request(method, f"http://{HOST}:{port}{path}", data=body or None, headers=headers,
                                     timeout=10).status_code
            elapsed = time.perf_counter() - began
            with lock:
                (phase.latencies.append(elapsed) if status < 300 else phase.failures.append(status))
            sent += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = min(seconds, time.monotonic() - started) if count is not None else seconds
    return phase


async def _load(port: int, request: Callable[[], bytes], clients: int, seconds: float, *,
                count: int | None = None) -> Phase:
    """`clients` keep-alive connections sending `request()` one after another for `seconds` (or `count`
    requests each)."""
    phase = Phase(seconds)
    stop_at = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(_connection(port, request, stop_at, count, phase) for _ in range(clients)))
    phase.seconds = min(seconds, time.monotonic() - started) if count is not None else seconds
    return phase


async def _connection(port: int, request: Callable[[], bytes], stop_at: float, count: int | None,
                      phase: Phase) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    sent = 0
    try:
        while time.monotonic() < stop_at and (count is None or sent < count):
            message = request()
            began = time.perf_counter()
            writer.write(message)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if length:
                await reader.readexactly(length)
            elapsed = time.perf_counter() - began
            status = int(head[9:12])
            (phase.latencies.append(elapsed) if status < 300 else phase.failures.append(status))
            sent += 1
    finally:
        writer.close()


def _content_length(head: bytes) -> int:
    marker = b"\r\ncontent-length:"
    at = head.lower().find(marker)
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + len(marker))
    return int(head[at + len(marker):end].strip())


def _report(name: str, phase: Phase, clients: int) -> None:
    failed = f"; {len(phase.failures)} failed, e.g. status {phase.failures[0]}" if phase.failures else ""
    print(f"{name}: {phase.rate:.0f} req/s over {phase.seconds:.1f} s with {clients} clients; "
          f"p50 {phase.pct(50) * 1000:.1f} ms, p99 {phase.pct(99) * 1000:.1f} ms{failed}")


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
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
