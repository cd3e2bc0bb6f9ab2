"""The soak's Redis: a primary and a replica behind three Sentinels, as the project runs it where a failover must
lose nothing, with a TCP proxy in front of each server so that the soak can cut one off.

Everything reaches the servers through their proxies: the Sentinels, the replication link, and the clients (each
server announces its proxy's port, so that is the address the Sentinels hand out). Cutting a proxy is then a
partition of that server from everyone, as a network fault makes it.

The faults it makes, each on the server the Sentinels name primary at that moment:
- `failover`: SIGKILL the primary; the Sentinels promote the replica; the old one restarted rejoins as a replica;
- `restart`: a clean shutdown and a start again within the Sentinels' patience (no failover);
- `fill` / `free`: full as `maxmemory` with `noeviction` makes it, then room again;
- `drop`: its proxy drops all traffic for some seconds (shorter than the Sentinels' patience).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.drills.private_redis import PrivateRedis
from tests.drills.sentinels import SentinelGroup
from tests.soak.proxy import DropProxy

# How long the Sentinels wait before they call a silent primary down: longer than a restart or a drop here, so
# those stay what they are; a SIGKILL is what fails over.
DOWN_AFTER_MS = 6000


class ProxiedSentinels:
    """A Sentinel group whose servers sit behind drop proxies; the soak's faults on Redis, one at a time."""

    def __init__(self, directory: Path) -> None:
        self.proxies: dict[int, DropProxy] = {}  # a server's own port -> its proxy
        self.group = SentinelGroup(directory, down_after_ms=DOWN_AFTER_MS, front=self._front)
        self.url = self.group.url
        self._lock = threading.Lock()  # one Redis fault at a time: each acts on the primary as named when it starts

    def _front(self, port: int) -> int:
        proxy = DropProxy(port)
        proxy.start()
        self.proxies[port] = proxy
        return proxy.port

    def start(self) -> None:
        self.group.start()

    def stop(self) -> None:
        self.group.stop()
        for proxy in self.proxies.values():
            proxy.stop()

    def primary(self) -> PrivateRedis:
        """The primary now: a client of its own (not through the proxy) for the soak's bookkeeping."""
        self.group.settle_roles()
        return self.group.primary

    def failover(self) -> float:
        """SIGKILL the primary, wait until the replica is promoted, restart the old one as a replica. Returns
        seconds from the kill to the promotion."""
        with self._lock:
            primary = self.primary()
            killed_at = primary.kill()
            promoted_at = self.group.wait_for_failover(timeout=90)
            self.group.rejoin(timeout=90)
            return promoted_at - killed_at

    def restart(self, down: float) -> None:
        with self._lock:
            primary = self.primary()
            primary.shutdown()
            time.sleep(down)
            primary.start()

    def fill(self, seconds: float) -> None:
        with self._lock:
            primary = self.primary()
            primary.fill()
            try:
                time.sleep(seconds)
            finally:
                primary.free()

    def drop(self, seconds: float) -> None:
        with self._lock:
            self.proxies[self.primary().port].drop(seconds)
