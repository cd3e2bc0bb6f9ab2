"""The soak's dropping proxy (tests/soak/proxy.py) against a real redis-server: it forwards, it drops the way a
partition does and heals with dead connections, it resets a client at once when Redis refuses, and it retargets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.drills.private_redis import PrivateRedis
from tests.soak.proxy import DropProxy

# A real redis-server, as the drills use; `make test` runs these like every other test.
pytestmark = pytest.mark.drill


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", aof=False)
    server.start()
    yield server
    server.shutdown()


@pytest.fixture
def proxy(upstream: PrivateRedis) -> Iterator[DropProxy]:
    with DropProxy(upstream.port) as started:
        yield started


def _client(port: int, *, timeout: float = 2.0) -> redis.Redis:
    """A client that reports a timeout or a refusal at once (no retries)."""
    return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _raw(port: int, *, timeout: float = 1.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _closed(sock: socket.socket) -> bool:
    """The peer closed the connection (EOF or reset) rather than answering; a timeout propagates."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def _connected_clients(probe: redis.Redis) -> int:
    """The connections the server counts, the probe's own among them."""
    return int(probe.info("clients")["connected_clients"])


def _until(condition: Callable[[], bool], what: str, *, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_forwards_commands_to_the_upstream(proxy: DropProxy, upstream: PrivateRedis) -> None:
    client = _client(proxy.port)
    assert client.ping()
    client.set("through-proxy", "yes")
    assert client.get("through-proxy") == b"yes"
    assert upstream.client().get("through-proxy") == b"yes"  # it landed in the upstream, not somewhere else


def test_drop_is_a_black_hole_then_resets_what_lived_through_it(proxy: DropProxy, upstream: PrivateRedis) -> None:
    client = _client(proxy.port, timeout=0.5)
    assert client.ping()
    before = _raw(proxy.port)
    before.sendall(b"PING\r\n")
    assert before.recv(1024) == b"+PONG\r\n"
    probe = upstream.client()
    held = _connected_clients(probe)  # the probe's own, the client's and the raw one's

    dropper = threading.Thread(target=proxy.drop, args=(2.0,))
    dropper.start()
    _until(lambda: proxy.dropping, "the proxy never started dropping")
    with pytest.raises((redis.TimeoutError, redis.ConnectionError)):
        client.ping()
    before.sendall(b"PING\r\n")  # discarded: never answered, not even after the drop
    during = _raw(proxy.port, timeout=0.3)  # the kernel accepts it ...
    during.sendall(b"PING\r\n")
    with pytest.raises(TimeoutError):  # ... but nothing answers
        during.recv(1024)
    time.sleep(0.3)
    # The client gave up and closed its side; as in a partition, Redis is not told.
    assert _connected_clients(probe) == held

    dropper.join(timeout=5)
    assert not dropper.is_alive() and not proxy.dropping
    during.settimeout(1.0)
    assert _closed(before), "a connection that lived through the drop was not closed (or answered late)"
    assert _closed(during), "a connection made during the drop was not closed (or answered late)"
    _until(lambda: _connected_clients(probe) == held - 2, "the upstream side of the dropped connections is open")
    assert client.ping()  # redis-py reconnects, and new connections work
    assert _client(proxy.port).set("after-drop", "1")


def test_a_refused_upstream_closes_the_client_at_once(proxy: DropProxy, upstream: PrivateRedis) -> None:
    assert _client(proxy.port).ping()
    upstream.shutdown()
    # A proxy that hung would make these time out (TimeoutError, not ConnectionError / EOF).
    with pytest.raises(redis.ConnectionError):
        _client(proxy.port, timeout=1.0).ping()
    try:
        sock = _raw(proxy.port, timeout=1.0)
    except ConnectionResetError:  # the reset came before connect() returned
        return
    assert _closed(sock)


def test_retarget_sends_new_connections_to_the_new_upstream(proxy: DropProxy, upstream: PrivateRedis,
                                                            tmp_path: Path) -> None:
    second = PrivateRedis(tmp_path / "second", aof=False)
    second.start()
    try:
        upstream.client().set("where", "first")
        second.client().set("where", "second")
        earlier = _client(proxy.port)
        assert earlier.get("where") == b"first"
        proxy.retarget(second.port)
        assert _client(proxy.port).get("where") == b"second"
        assert earlier.get("where") == b"first"  # a connection made before is left where it was
    finally:
        second.shutdown()


def test_many_concurrent_connections(proxy: DropProxy) -> None:
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            client = _client(proxy.port)
            for i in range(20):
                client.set(f"many:{n}:{i}", "x" * 1000 * i)
                assert client.get(f"many:{n}:{i}") == b"x" * 1000 * i
            client.close()
        except BaseException as error:  # reported below, from the test's thread
            failures.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(60)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert not failures, failures
    assert not any(worker.is_alive() for worker in workers)


def test_stop_closes_everything_and_is_idempotent(upstream: PrivateRedis) -> None:
    proxy = DropProxy(upstream.port)
    proxy.start()
    sock = _raw(proxy.port)
    sock.sendall(b"PING\r\n")
    assert sock.recv(1024) == b"+PONG\r\n"
    proxy.stop()
    proxy.stop()
    assert _closed(sock)
    with pytest.raises(ConnectionRefusedError):
        _raw(proxy.port)
