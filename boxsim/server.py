"""The HTTP layer: a threading server whose handler turns bytes into SimRequests and Replies into bytes."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from boxsim.errors import new_request_id
from boxsim.http_types import Reply, SimRequest
from boxsim.pipeline import process
from boxsim.state import SimState


class SimHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the simulator state and can cut every open connection."""

    daemon_threads = True
    request_queue_size = 128  # bursts from many worker threads must queue, not be refused
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SimState) -> None:
        super().__init__(address, SimRequestHandler)
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember each accepted connection so stop() can close keep-alive ones too."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget a connection as it closes."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer (a worker's task cancelled mid-request) is no error of Box's."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut every open client connection, so a stopped simulator looks down to its clients."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class SimRequestHandler(BaseHTTPRequestHandler):
    """Reads one HTTP request, hands it to the pipeline, writes the reply (or drops the connection)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real clients pool connections
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK stalls each reply ~40 ms.
    disable_nagle_algorithm = True
    server_version = "boxsim"
    timeout = 300  # seconds an idle keep-alive connection is kept
    server: SimHTTPServer

    def do_GET(self) -> None:
        """Serve GET."""
        self._serve()

    def do_POST(self) -> None:
        """Serve POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve PUT."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve DELETE."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve PATCH."""
        self._serve()

    def send_response(self, code: int, message: str | None = None) -> None:
        """Start an answer; server and date go lowercase too, since Box sends every header name lowercase."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("server", self.server_version)
        self.send_header("date", self.date_time_string())

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr lines; the pipeline logs each request through `logging`."""

    def _serve(self) -> None:
        """Answer the current request."""
        request = self._read_request()
        reply = process(self.server.state, request)
        if reply is None:
            self._drop()
        else:
            self._write(reply, request.request_id)

    def _read_request(self) -> SimRequest:
        """Decode the request line, headers and body."""
        received_at, started = time.time(), time.monotonic()
        parts = urlsplit(self.path)
        return SimRequest(
            method=self.command.upper(),
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            raw_body=self._read_body(),
            received_at=received_at,
            started=started,
            request_id=new_request_id(),
        )

    def _read_body(self) -> bytes:
        """Read the body by Content-Length, or chunk by chunk for chunked transfer encoding."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        """Read a chunked body through its last (empty) chunk and trailers."""
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after each chunk
        while self.rfile.readline().strip():
            pass  # trailers, up to the blank line
        return b"".join(chunks)

    def _write(self, reply: Reply, request_id: str) -> None:
        """Send a reply with lowercase Box-style headers."""
        payload = reply.payload()
        self.send_response(reply.status)
        self.send_header("box-request-id", request_id)
        if payload:
            self.send_header("content-type", "application/json")
        for name, value in reply.headers.items():
            self.send_header(name.lower(), value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        """Close the connection without answering, so the client sees a transport error."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
