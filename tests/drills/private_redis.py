"""A redis-server of a drill's own, on its own port (never the shared one), with AOF (unless asked without), that
the drill may stop, restart or fill."""

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
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.integration.harness import free_port


class PrivateRedis:
    """A redis-server of this drill's own, on its own port, with AOF in `directory`."""

    def __init__(self, directory: Path, *, fsync: str = "everysec", password: str | None = None,
                 replica_of: int | None = None, aof: bool = True) -> None:
        self.port, self.directory, self.fsync, self.password = free_port(), directory, fsync, password
        self.aof = aof  # off for a test that times replication: a busy disk stalls an AOF server's event loop
        self.replica_of = replica_of  # the primary's port, for a replica
        # The port others reach this server by, when that is not its own (a proxy in front of it): told to its
        # primary as a replica, so that Sentinel hands clients that port.
        self.announce_port: int | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client that says at once when the server is gone (redis-py's default retries back off for seconds)."""
        return redis.Redis(port=self.port, socket_timeout=5, password=self.password, retry=Retry(NoBackoff(), 0))

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed (scripts/ensure-redis-server installs it)"
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([server, "--port", str(self.port), "--dir", str(self.directory),
                        "--appendonly", "yes" if self.aof else "no", "--appendfsync", self.fsync,
                        "--save", "", "--daemonize", "yes",
                        "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0",
                        "--logfile", str(self.directory / "redis.log"),
                        *(["--requirepass", self.password, "--masterauth", self.password] if self.password else []),
                        *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
                        *(["--replica-announce-ip", "127.0.0.1", "--replica-announce-port", str(self.announce_port)]
                          if self.announce_port else [])],
                       check=True)
        deadline = time.monotonic() + 10
        while not self._answers():
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)

    def follows(self, primary: PrivateRedis) -> bool:
        """This replica has synced with `primary`, written its first AOF (if it keeps one), and `primary` counts it
        online.

        After a sync the replica rewrites its AOF in a child, and finishing that (renames and fsyncs) runs on its
        main thread: under a busy disk it holds the replica's acknowledgements back for a second or more. And until
        the replica's first acknowledgement the primary does not count it, so WAIT answers 0 at once. A test that
        times writes against the replica starts when neither can happen."""
        link = self.client().info("replication").get("master_link_status") == "up"
        aof = self.client().info("persistence")
        rewritten = not int(aof["aof_enabled"]) or (
            int(aof["aof_rewrites"]) >= 1 and not int(aof["aof_rewrite_in_progress"])
            and not int(aof["aof_rewrite_scheduled"]))
        online = primary.client().info("replication").get("slave0", {}).get("state") == "online"
        return link and rewritten and online

    def shutdown(self) -> None:
        """A clean SHUTDOWN: the AOF is flushed. A replica that has just synced refuses until it has written its
        first AOF ("Writing initial AOF, can't exit"): asked again until it goes."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().shutdown()  # redis-py takes the closed connection for success
                return
            except redis.ConnectionError:  # gone already
                return
            except redis.ResponseError:
                assert time.monotonic() < deadline, "the private redis-server refused to shut down"
                time.sleep(0.1)

    def kill(self) -> float:
        """SIGKILL the server: no goodbye; what the AOF holds (fsync every second) is what comes back. Returns the
        moment (time.monotonic) of the kill."""
        pid = int(self.client().info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        deadline = time.monotonic() + 10
        while self._answers():
            assert time.monotonic() < deadline, "the private redis-server did not die"
            time.sleep(0.05)
        return killed_at

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
            return bool(redis.Redis(port=self.port, socket_timeout=1, password=self.password,
                                    retry=Retry(NoBackoff(), 0)).ping())
        except (redis.ConnectionError, redis.TimeoutError):  # a server starting on a busy disk is slow to answer
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.shutdown()
