"""Fakes at the seams of the Box client: a clock that only moves when slept on, a scripted HTTP transport,
token sources and fetchers that count their calls."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from worker.box.auth import FetchedToken

# A whole second, so that HTTP dates (whole seconds) computed from it are exact.
START = 1_750_000_000.0


class FakeClock:
    """Time that moves only when `sleep` is called; every sleep is recorded."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str | None = None

    def content(self) -> bytes:
        if self.text is not None:
            return self.text.encode()
        return b"" if self.body is None else json.dumps(self.body).encode()


def box_error(status: int, code: str, message: str = "", request_id: str = "req-1", **headers: str) -> Reply:
    """A Box ClientError answer."""
    body = {"type": "error", "status": status, "code": code, "message": message or code, "request_id": request_id}
    return Reply(status, body, headers)


Script = Reply | Exception | Callable[[requests.PreparedRequest], Reply]


class ScriptedAdapter(BaseAdapter):
    """A transport that answers from a queue of scripted replies (or raises scripted errors) and records
    every request it was given, with its timeout."""

    def __init__(self, replies: Iterable[Script] = ()) -> None:
        super().__init__()
        self.replies: deque[Script] = deque(replies)
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def add(self, *replies: Script) -> None:
        self.replies.extend(replies)

    def send(
        self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
        verify: Any = True, cert: Any = None, proxies: Any = None,
    ) -> requests.Response:
        self.requests.append(request)
        self.timeouts.append(timeout)
        if not self.replies:
            raise AssertionError(f"unexpected request: {request.method} {request.url}")
        item = self.replies.popleft()
        if isinstance(item, Exception):
            raise item
        reply = item if isinstance(item, Reply) else item(request)
        return _response(request, reply)

    def close(self) -> None:
        pass

    def bodies(self) -> list[Any]:
        return [json.loads(r.body) if r.body else None for r in self.requests]

    def bearer_tokens(self) -> list[str]:
        return [str(r.headers.get("Authorization", "")).removeprefix("Bearer ") for r in self.requests]


def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
    response = requests.Response()
    response.status_code = reply.status
    response._content = reply.content()
    headers = {"content-type": "text/plain" if reply.text is not None else "application/json", **reply.headers}
    response.headers = CaseInsensitiveDict(headers)
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    return response


def scripted_session(*replies: Script) -> tuple[requests.Session, ScriptedAdapter]:
    """A requests.Session whose every request goes to a ScriptedAdapter."""
    session = requests.Session()
    adapter = ScriptedAdapter(replies)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


class CountingFetcher:
    """A token fetcher that issues tok-1, tok-2, ... and counts its calls."""

    def __init__(self, expires_in: float = 3600.0, on_fetch: Callable[[], None] | None = None) -> None:
        self.calls = 0
        self.expires_in = expires_in
        self.on_fetch = on_fetch

    def fetch(self) -> FetchedToken:
        self.calls += 1
        if self.on_fetch is not None:
            self.on_fetch()
        return FetchedToken(access_token=f"tok-{self.calls}", expires_in=self.expires_in)


class FakeTokens:
    """A token source that hands out tok-1 and moves to the next token when one is invalidated."""

    def __init__(self) -> None:
        self.current = 1
        self.invalidated: list[str] = []

    def get(self) -> str:
        return f"tok-{self.current}"

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        if token == self.get():
            self.current += 1
