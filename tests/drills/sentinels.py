"""A Redis primary, a replica and three Sentinels of a drill's own, on private ports (never the shared Redis), that
the drill may take the primary from."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import free_port, until

SERVICE = "boxcut"
# Quick to notice and to fail over, for a drill: a primary silent for 1 s is down; a failover may take 5 s.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class SentinelGroup:
    """A primary, a replica of it, and three Sentinels watching them as service `boxcut` (quorum 2)."""

    def __init__(self, directory: Path, *, password: str | None = None, down_after_ms: int = DOWN_AFTER_MS,
                 front: Callable[[int], int] | None = None) -> None:
        """`front`, when given, puts something in front of each server (a proxy, for a soak): called with the
        server's port, it returns the port that reaches it. The Sentinels, the replication link and the clients the
        Sentinels point then all go through the fronts."""
        self.directory, self.password, self.down_after_ms = directory, password, down_after_ms
        self.primary = PrivateRedis(directory / "primary", password=password)
        self.replica = PrivateRedis(directory / "replica", password=password)
        for server in (self.primary, self.replica):
            server.announce_port = front(server.port) if front else None
        self.replica.replica_of = self.seen_port(self.primary)
        self.sentinel_ports = [free_port() for _ in range(3)]
        # Each Sentinel told its peers and the replica up front, instead of learning them over 10 s or more.
        self.sentinel_ids = {port: secrets.token_hex(20) for port in self.sentinel_ports}
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{SERVICE}"

    @staticmethod
    def seen_port(server: PrivateRedis) -> int:
        """The port the Sentinels and clients reach `server` by: its front's, or its own."""
        return server.announce_port or server.port

    def named_primary(self) -> PrivateRedis | None:
        """The server a majority of the Sentinels name primary now (None while they disagree or are unsure)."""
        named = []
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                address = self._sentinel(port).sentinel_get_master_addr_by_name(SERVICE)
                named += [s for s in (self.primary, self.replica)
                          if isinstance(address, tuple) and int(address[1]) == self.seen_port(s)]
        for server in (self.primary, self.replica):
            if named.count(server) >= 2:
                return server
        return None

    def settle_roles(self) -> None:
        """Take the roles the Sentinels give: after a failover nobody asked for (a primary cut off too long), the
        servers swap."""
        if self.named_primary() is self.replica:
            self._swap()

    def _swap(self) -> None:
        """The replica is the primary now, and the old primary its replica: a restart of either starts it so
        (a primary started with `--replicaof`, the old role, would follow its own replica)."""
        self.primary, self.replica = self.replica, self.primary
        self.primary.replica_of = None
        self.replica.replica_of = self.seen_port(self.primary)

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        self._wait(lambda: self.replica.follows(self.primary), "the replica did not sync with the primary")
        for port in self.sentinel_ports:
            self._start_sentinel(port)
        self._wait(lambda: all(self._sentinel(p).sentinel_master(SERVICE).get("num-other-sentinels") == 2
                               and self._sentinel(p).sentinel_master(SERVICE).get("num-slaves") == 1
                               for p in self.sentinel_ports),
                   "the Sentinels did not find each other and the replica")

    def wait_for_failover(self, timeout: float = 60.0) -> float:
        """Wait until the replica answers as primary and a Sentinel names it (clients ask the Sentinels in turn and
        take the first answer naming a primary): return when it did. Then wait until every Sentinel names it, and
        swap the two: `primary` is the new one, `replica` the old, to be restarted (`rejoin`)."""
        promoted = self.replica
        self._wait(lambda: promoted.client().info("replication").get("role") == "master"
                   and any(self._names(p, promoted) for p in self.sentinel_ports),
                   "the Sentinels did not promote the replica", timeout=timeout, interval=0.02)
        promoted_at = time.monotonic()
        self._wait(lambda: all(self._names(p, promoted) for p in self.sentinel_ports),
                   "the Sentinels did not agree on the new primary", timeout=timeout)
        self._swap()
        return promoted_at

    def rejoin(self, timeout: float = 60.0) -> None:
        """Restart the old primary (now `replica`): the Sentinels make it a replica of the new one; wait until it
        has synced, so that it may be promoted in turn."""
        self.replica.start()
        self._wait(lambda: self.replica.client().info("replication").get("master_link_status") == "up"
                   and self.replica.client().info("replication").get("master_port") == self.seen_port(self.primary),
                   "the old primary did not rejoin as a replica", timeout=timeout)
        self._wait(lambda: all(self._sees_replica(p) for p in self.sentinel_ports),
                   "the Sentinels did not see the rejoined replica up", timeout=timeout)

    def _sees_replica(self, port: int) -> bool:
        seen = self.seen_port(self.replica)
        return any(int(r["port"]) == seen and not r.get("is_sdown") and not r.get("is_disconnected")
                   for r in self._sentinel(port).sentinel_slaves(SERVICE))

    def _names(self, port: int, server: PrivateRedis) -> bool:
        named = self._sentinel(port).sentinel_get_master_addr_by_name(SERVICE)
        return isinstance(named, tuple) and int(named[1]) == self.seen_port(server)

    def stop(self) -> None:
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                self._sentinel(port).shutdown(nosave=True)
        for server in (self.replica, self.primary):  # a primary stopping first would wait for its replica
            with contextlib.suppress(redis.RedisError, ValueError):
                server.shutdown()

    def _start_sentinel(self, port: int) -> None:
        folder = self.directory / f"sentinel-{port}"
        folder.mkdir(parents=True)
        conf = folder / "sentinel.conf"  # a Sentinel rewrites its file as it learns: one of its own each
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\ndaemonize yes\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.seen_port(self.primary)} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
            + (f"sentinel auth-pass {SERVICE} {self.password}\n" if self.password else "")
            + f"sentinel myid {self.sentinel_ids[port]}\n"
            f"sentinel known-replica {SERVICE} 127.0.0.1 {self.seen_port(self.replica)}\n"
            + "".join(f"sentinel known-sentinel {SERVICE} 127.0.0.1 {peer} {peer_id}\n"
                      for peer, peer_id in self.sentinel_ids.items() if peer != port))
        subprocess.run(sentinel_command(conf), check=True)
        self._wait(lambda: bool(self._sentinel(port).ping()), f"the Sentinel on {port} did not start")

    @staticmethod
    def _sentinel(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True, retry=Retry(NoBackoff(), 0))

    @staticmethod
    def _wait(ready: Callable[[], bool], problem: str, *, timeout: float = 30.0, interval: float = 0.05) -> None:
        until(ready, problem, timeout=timeout, interval=interval, ignoring=(redis.RedisError,))

def sentinel_command(conf: Path) -> list[str]:
    """Debian's `redis-sentinel` where installed; it is `redis-server` in Sentinel mode, which serves alike."""
    sentinel = shutil.which("redis-sentinel")
    if sentinel:
        return [sentinel, str(conf)]
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (scripts/ensure-redis-server installs it)"
    return [server, str(conf), "--sentinel"]


@contextlib.contextmanager
def sentinel_group(directory: Path, *, password: str | None = None) -> Iterator[SentinelGroup]:
    group = SentinelGroup(directory, password=password)
    try:
        group.start()
        yield group
    finally:
        group.stop()
