"""A receiver of boxcut's notifications for the soak: a small HTTP server on loopback that checks each POST's
signature the way boxcut signs it (docs/notifications.md, worker/signing.py), records every post, and answers
200, or 500 while it is told to refuse (a receiver outage, as a fault).

    receiver = NoticeReceiver(SECRET)
    url = receiver.start()                  # http://127.0.0.1:<free port>/notify
    env = notify_env(url, SECRET)           # the settings that make the stack notify it, with soak timings
    receiver.refuse(times=3)                # the next 3 signed posts are answered 500
    receiver.refuse(seconds=5)              # every signed post for 5 s is answered 500
    receiver.notices()                      # every post so far, oldest first
    receiver.stop()

Each post is recorded as a dict: `receiver` (the URL `start` returned: a notice names its receiver so),
`at` (epoch seconds received), `status` (what it was answered), `signed` (its signature is right and its
timestamp fresh), `headers` (the few read: timestamp, signature, user agent, content type) and `body` (the
parsed JSON object; None when the body is not one). It takes boxcut's own JSON, not Slack's body.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

# What the soak's stack notifies with (the defaults are 5 s, 10 s and 8: a soak would drain for minutes): the audit
# stream followed twice a second (as the test harness's FAST_ENV does), a refused notice tried again after 0.5 s,
# doubling, 8 attempts in all (the default), so one refused every time gives up 63.5 s after its first try: a
# refusal spell and kills meanwhile (each spends an attempt) stay well inside it.
POLL_SECONDS = 0.5
RETRY_SECONDS = 0.5
NOTIFY_ATTEMPTS = 8
# docs/notifications.md: "A receiver checks the raw body, before parsing it, and refuses a stale timestamp".
MAX_SKEW_SECONDS = 300.0
_READ_HEADERS = (TIMESTAMP_HEADER, SIGNATURE_HEADER, "user-agent", "content-type")


def notify_env(url: str, secret: str, *, attempts: int = NOTIFY_ATTEMPTS) -> dict[str, str]:
    """The settings that make the stack notify the receiver at `url`, signed with `secret`, with soak timings."""
    return {"BOXCUT_NOTIFY_URLS": url, "BOXCUT_NOTIFY_HMAC_SECRET": secret,
            "BOXCUT_NOTIFY_POLL_SECONDS": f"{POLL_SECONDS:g}", "BOXCUT_NOTIFY_RETRY_SECONDS": f"{RETRY_SECONDS:g}",
            "BOXCUT_NOTIFY_ATTEMPTS": str(attempts)}


def is_signed(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> bool:
    """Whether `body` came from boxcut: `X-Boxcut-Signature` is the HMAC boxcut computes (worker/signing.py) over
    `X-Boxcut-Timestamp` and the raw body, and that timestamp is within MAX_SKEW_SECONDS of `now`."""
    stamp, sent = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    try:
        skew = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        return False
    return skew <= MAX_SKEW_SECONDS and hmac.compare_digest(signature(secret, stamp, body).encode(), sent.encode())


class NoticeReceiver:
    """boxcut's notification receiver for a soak: records every post, answers 200 (401 to a post not signed
    with `secret`, 400 to a body that is no JSON object), or `status` while told to refuse."""

    def __init__(self, secret: str, *, path: str = "/notify") -> None:
        self.secret, self.path = secret, path
        self.url = ""
        self._lock = threading.Lock()
        self._got: list[dict[str, Any]] = []
        self._refuse_times = 0
        self._refuse_until = 0.0
        self._refuse_status = 500
        self._slow_until, self._delay = 0.0, 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NoticeReceiver:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> str:
        """Serve on a free loopback port, on a thread of its own; returns the URL to notify."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._linger()
                status = receiver._take(raw, {name: self.headers.get(name, "") for name in _READ_HEADERS})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="soak-receiver", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def refuse(self, times: int = 0, *, seconds: float = 0.0, status: int = 500) -> None:
        """Answer `status` (500: boxcut tries again) to the next `times` signed posts, and to every signed post
        for the next `seconds`; whichever lasts longer."""
        with self._lock:
            self._refuse_times = max(self._refuse_times, times)
            self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)
            self._refuse_status = status

    def slow(self, *, seconds: float, delay: float) -> None:
        """Take `delay` seconds over each answer for the next `seconds`: a notification task then runs that long,
        and a worker killed meanwhile dies in the middle of one."""
        with self._lock:
            self._slow_until, self._delay = time.monotonic() + seconds, delay

    def _linger(self) -> None:
        with self._lock:
            delay = self._delay if time.monotonic() < self._slow_until else 0.0
        time.sleep(delay)

    def notices(self) -> list[dict[str, Any]]:
        """Every post received so far, oldest first (copies of the records)."""
        with self._lock:
            return [dict(n) for n in self._got]

    def _take(self, raw: bytes, headers: dict[str, str]) -> int:
        """Record one post and decide its answer."""
        received = time.time()
        signed = is_signed(self.secret, headers, raw, now=received)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        with self._lock:
            if not signed:
                status = 401
            elif self._refuse_times > 0 or time.monotonic() < self._refuse_until:
                self._refuse_times = max(0, self._refuse_times - 1)
                status = self._refuse_status
            else:
                status = 200 if body is not None else 400
            self._got.append({"receiver": self.url, "at": received, "status": status, "signed": signed,
                              "headers": {k: v for k, v in headers.items() if v}, "body": body})
        return status
