"""A TCP proxy in front of Redis that can drop traffic the way a network partition does: the soak's `redis_drop`
fault (Redis unreachable, not restarted).

Stopping redis-server (`redis_restart`) is a loud fault: clients see a refused connection or a reset at once.
A partition is a quiet one: Redis stays up and keeps what it holds, but nothing the clients send arrives and
nothing comes back, so a client learns of it only from its own timeouts; when the partition ends, the
connections that lived through it are dead (the peer answers their retransmissions with a reset) and new ones
work. `DropProxy.drop(seconds)` plays that for `seconds`:

- bytes in either direction are read and discarded (never forwarded, never answered), and whatever was queued
  for forwarding when the drop began is discarded too: a client waiting for a reply times out;
- new connections are accepted (the kernel completes the handshake, as a client's connect would succeed to a
  load balancer in front of a partitioned Redis) but never connected upstream; what they send is discarded;
- a side that closes during the drop is not told to the other: Redis keeps a connection whose client gave up,
  and what it sends there (a BRPOP's answer) is lost, as in a partition;
- when the drop ends, every connection that lived through it (opened before or during it) is reset on both
  sides, and `drop` returns only once they are closed; new connections are forwarded normally again.

Outside a drop it forwards bytes as they come. When the upstream refuses a connection (Redis restarting), the
client's connection is reset at once, so the client retries rather than waits.

One thread accepts; each connection pair has a thread of its own that waits in `select` with a short timeout
(`POLL_SECONDS`), so a drop, its end or `stop` is noticed within that time without busy-looping.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from types import TracebackType

# How long a thread waits in select before looking at the drop and stop flags again.
POLL_SECONDS = 0.1
# How long a connection to the upstream may take before the client's connection is closed: loopback answers in
# microseconds, so a connect this slow means the upstream is wedged.
CONNECT_TIMEOUT_SECONDS = 2.0
# Bytes held for one direction before the proxy stops reading the sender (back-pressure, not unbounded memory).
BUFFER_BYTES = 1 << 20
# How long the end of a drop waits for the threads of the connections it closes.
CLOSE_WAIT_SECONDS = 2.0
RECV_BYTES = 65536


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a peer answers a connection it no longer knows."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Pair:
    """One client connection and its upstream connection, forwarded by a thread of its own."""

    def __init__(self, proxy: DropProxy, client: socket.socket, *, born_dropping: bool) -> None:
        self.proxy, self.client, self.born_dropping = proxy, client, born_dropping
        self.upstream: socket.socket | None = None
        self.doomed = threading.Event()  # set when a drop this pair lived through ends: reset both sides
        self.clean = False  # a side closed outside a drop: the other is closed (FIN), not reset
        self.thread = threading.Thread(target=self._run, name="drop-proxy-pair", daemon=True)

    def _run(self) -> None:
        try:
            # A connection made during a drop is never connected upstream: held, its bytes discarded, until the
            # drop ends and resets it.
            if self.born_dropping or self._connect():
                self._forward()
        finally:
            for sock in (self.client, self.upstream):
                if sock is not None and self.clean:
                    sock.close()
                elif sock is not None:
                    _reset(sock)
            self.proxy._forget(self)

    def _connect(self) -> bool:
        """Connect upstream; False when it refuses (or cannot be reached): the client is then reset at once."""
        try:
            upstream = socket.create_connection((self.proxy.host, self.proxy.upstream_port),
                                                timeout=CONNECT_TIMEOUT_SECONDS)
        except OSError:
            return False
        upstream.setblocking(False)
        self.upstream = upstream
        return True

    def _live(self) -> bool:
        return not self.doomed.is_set() and not self.proxy._stopped.is_set()

    def _forward(self) -> None:
        """Move bytes both ways until a side closes, the drop this pair lived through ends, or the proxy stops.

        While the proxy drops, whatever is read or still queued is discarded, and a side that closes is not told
        to the other (a partition carries no FIN either: Redis keeps the connection, and what it sends on it, such
        as a BRPOP's answer, is lost)."""
        ends = [sock for sock in (self.client, self.upstream) if sock is not None]
        queued = {sock: bytearray() for sock in ends}  # bytes waiting to be written to the key
        peer = {sock: other for sock, other in ((self.client, self.upstream), (self.upstream, self.client))
                if sock is not None}
        with selectors.DefaultSelector() as selector:
            while self._live() and ends:
                dropping = self.proxy.dropping
                if dropping:
                    for buffer in queued.values():
                        buffer.clear()
                for sock in ends:
                    other = peer[sock]
                    reading = dropping or other is None or len(queued[other]) < BUFFER_BYTES
                    _want(selector, sock, reading=reading, writing=bool(queued[sock]))
                for key, events in selector.select(POLL_SECONDS):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    if not self._live() or ready not in ends:
                        break
                    if events & selectors.EVENT_WRITE and queued[ready] and not _send(ready, queued[ready]):
                        return
                    if not events & selectors.EVENT_READ:
                        continue
                    data = _recv(ready)
                    # The doom is set before the drop's end is, so a pair that sees neither did not live through
                    # a drop that has just ended.
                    passing = not self.proxy.dropping and not self.doomed.is_set()
                    if data is None and passing:  # the side closed: so does the other, once told what was queued
                        _flush(peer[ready], queued)
                        self.clean = True
                        return
                    if data is None:  # the side closed during a drop: the other is held until the drop ends
                        selector.unregister(ready)
                        ends.remove(ready)
                        _reset(ready)
                    elif passing and (other := peer[ready]) is not None:
                        queued[other] += data


def _want(selector: selectors.BaseSelector, sock: socket.socket, *, reading: bool, writing: bool) -> None:
    """Watch `sock` for what the pair waits for now (nothing: not watched)."""
    events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if writing else 0)
    try:
        current = selector.get_key(sock).events
    except KeyError:
        current = 0
    if events == current:
        return
    if not events:
        selector.unregister(sock)
    elif current:
        selector.modify(sock, events)
    else:
        selector.register(sock, events)


def _recv(sock: socket.socket) -> bytes | None:
    """What `sock` has to read (b"" when nothing after all); None when it closed (EOF or reset)."""
    try:
        data = sock.recv(RECV_BYTES)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError:
        return None
    return data or None


def _flush(sock: socket.socket | None, queued: dict[socket.socket, bytearray]) -> None:
    """Best effort: write what is queued for `sock` before it is closed (a reply sent just before a QUIT)."""
    if sock is None or not queued.get(sock):
        return
    with contextlib.suppress(OSError):
        sock.settimeout(POLL_SECONDS)
        sock.sendall(queued[sock])


def _send(sock: socket.socket, buffer: bytearray) -> bool:
    """Write what `sock` takes of `buffer`; False when the connection is gone."""
    try:
        sent = sock.send(buffer)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
    del buffer[:sent]
    return True


class DropProxy:
    """A TCP proxy on a free loopback port to `host:upstream_port` that `drop` turns into a black hole for a
    while (see the module's docstring)."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream_port, self.host = upstream_port, host
        self.port = 0  # the port clients connect to, once started
        self._lock = threading.Lock()
        self._drops = 0  # drops in progress: the link is a black hole while any is
        self._pairs: set[_Pair] = set()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def dropping(self) -> bool:
        return self._drops > 0

    def start(self) -> None:
        """Listen on a free loopback port (`port`) and forward from a thread of its own."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)  # Celery workers open dozens of connections at once
        listener.setblocking(False)
        self._listener, self.port = listener, int(listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), name="drop-proxy-accept",
                                          daemon=True)
        self._acceptor.start()

    def retarget(self, upstream_port: int) -> None:
        """Send new connections to `upstream_port`; connections already made stay where they are."""
        self.upstream_port = upstream_port

    def drop(self, seconds: float) -> None:
        """Be a black hole for `seconds` (blocking), then reset every connection that lived through it."""
        with self._lock:
            self._drops += 1
        self._stopped.wait(seconds)
        with self._lock:
            survivors = list(self._pairs) if self._drops == 1 else []
            for pair in survivors:  # doomed before the drop ends: see _Pair._forward
                pair.doomed.set()
            self._drops -= 1
        for pair in survivors:
            pair.thread.join(CLOSE_WAIT_SECONDS)

    def stop(self) -> None:
        """Close the listener and every connection; a second call does nothing."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._acceptor is not None:
            self._acceptor.join(CLOSE_WAIT_SECONDS)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.thread.join(CLOSE_WAIT_SECONDS)

    def __enter__(self) -> DropProxy:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _accept(self, listener: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not self._stopped.is_set():
                if not selector.select(POLL_SECONDS):
                    continue
                try:
                    client, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # closed under us
                    return
                client.setblocking(False)
                with self._lock:
                    pair = _Pair(self, client, born_dropping=self.dropping)
                    self._pairs.add(pair)
                pair.thread.start()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
