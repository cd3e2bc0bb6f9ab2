"""The request and reply values passed between the HTTP layer and the simulated endpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimRequest:
    """One received HTTP request, decoded enough for routing and validation."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_body: bytes
    received_at: float  # epoch seconds, for the request log
    started: float  # monotonic seconds, for measuring latency
    request_id: str

    def header(self, name: str) -> str | None:
        """Return a request header by case-insensitive name."""
        return self.headers.get(name.lower())

    def first(self, name: str) -> str | None:
        """Return the first value of a query parameter, if given."""
        values = self.query.get(name)
        return values[0] if values else None

    def content_type(self) -> str:
        """Return the media type of the body without parameters, lowercased."""
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass
class Reply:
    """What to answer: a status, lowercase-named headers and a JSON body (None for an empty body)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    log_token_id: str | None = None  # id of a token this reply issued, for the request log

    def payload(self) -> bytes:
        """Return the encoded body; empty when there is no body or the status forbids one."""
        if self.body is None or self.status in (204, 304):
            return b""
        return json.dumps(self.body).encode("utf-8")
