"""`boxcut intake --workers 2`: keep-alive senders that connect together are spread over both worker processes (each
listens on a socket of its own), and both take signed alerts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.harness import REPO, Stack, free_port, running_stack, until
from worker.intake.auth import signature

pytestmark = pytest.mark.integration

SECRET = "workers-hmac-secret"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("workers"), worker=False,
                       extra_env={"BOXCUT_INTAKE_HMAC_SECRETS": SECRET}) as running:
        yield running


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _connections(pid: int, port: int) -> int:
    """How many established TCP connections to `port` the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                count += 1
    return count


def _signed_alert(event_id: str) -> bytes:
    body = json.dumps({"alertId": event_id, "title": "t", "alertContext": {"user": "jdoe@example.com"}}).encode()
    stamp = str(int(time.time()))
    head = (f"POST /v1/alerts/panther HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Boxcut-Timestamp: {stamp}\r\n"
            f"X-Boxcut-Signature: {signature(SECRET, stamp, body)}\r\n\r\n")
    return head.encode() + body


def test_connections_made_together_are_spread_over_both_workers_and_each_takes_alerts(stack: Stack) -> None:
    port = free_port()
    with (stack.tmp / "intake-workers.log").open("wb") as log:
        intake = subprocess.Popen([sys.executable, "-m", "worker.cli", "intake", "--port", str(port), "--workers", "2"],
                                  env=stack.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    clients: list[socket.socket] = []
    try:
        until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200,
              "the intake's workers answering", ignoring=(requests.RequestException,))
        until(lambda: len(_children(intake.pid)) >= 2, "two worker processes")
        time.sleep(1)  # both workers listening, not only the first to start
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        for n, client in enumerate(clients):
            client.sendall(_signed_alert(f"evt-{n}"))
        answers = [client.recv(65536) for client in clients]
        assert all(a.startswith(b"HTTP/1.1 202") for a in answers), answers
        held = {pid: _connections(pid, port) for pid in _children(intake.pid)}
        serving = [count for count in held.values() if count]
        assert len(serving) == 2 and sum(serving) == 16, held  # all on one: a chance of 2 in 2**16
    finally:
        for client in clients:
            client.close()
        os.killpg(intake.pid, signal.SIGTERM)
        intake.wait(timeout=30)
