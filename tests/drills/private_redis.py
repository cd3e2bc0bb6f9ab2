"""A redis-server of a drill's own, on its own port (never the shared one), with AOF, that the drill may stop,
restart or fill."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.harness import free_port


class PrivateRedis:
    """A redis-server of this drill's own, on its own port, with AOF in `directory`."""

    def __init__(self, directory: Path, *, fsync: str = "everysec", password: str | None = None) -> None:
        self.port, self.directory, self.fsync, self.password = free_port(), directory, fsync, password
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, password=self.password)

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed (scripts/ensure-redis-server installs it)"
        subprocess.run([server, "--port", str(self.port), "--dir", str(self.directory), "--appendonly", "yes",
                        "--appendfsync", self.fsync, "--save", "", "--daemonize", "yes",
                        "--maxmemory-policy", "noeviction",
                        *(["--requirepass", self.password] if self.password else [])], check=True)
        deadline = time.monotonic() + 10
        while not self._answers():
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)

    def shutdown(self) -> None:
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it goes
            self.client().shutdown()  # a clean SHUTDOWN: the AOF is flushed

    def kill(self) -> None:
        """SIGKILL the server: no goodbye; what the AOF holds (fsync every second) is what comes back."""
        pid = int(self.client().info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self._answers():
            assert time.monotonic() < deadline, "the private redis-server did not die"
            time.sleep(0.05)

    def fill(self, *, headroom_bytes: int = 2_000_000) -> int:
        """Make Redis full as `maxmemory` with `noeviction` makes it: a limit just above what it holds, then
        ballast until it refuses writes, and the limit lowered under what it holds. Returns the ballast keys written."""
        client = self.client()
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + headroom_bytes)
        written, chunk = 0, "x" * 65536
        with contextlib.suppress(redis.exceptions.OutOfMemoryError):
            while True:
                client.set(f"ballast:{written}", chunk)
                written += 1
        # Whatever is freed meanwhile (a key deleted, a client gone) stays below the line: the limit is set
        # under what Redis now holds, so it refuses every write that needs memory until `free`.
        client.config_set("maxmemory", max(1, int(client.info("memory")["used_memory"]) - 1_000_000))
        return written

    def free(self) -> None:
        """Delete the ballast and lift the limit."""
        client = self.client()
        keys = list(client.scan_iter(match="ballast:*", count=1000))
        if keys:
            client.delete(*keys)
        client.config_set("maxmemory", 0)

    def refuses_writes(self) -> bool:
        try:
            self.client().set("probe", "1")
        except redis.exceptions.OutOfMemoryError:
            return True
        return False

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1, password=self.password).ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.shutdown()
