"""A body over the limit is refused (413) only once the rest of it was read and dropped, within bounds: a server
that answers and closes while the sender still writes makes a sender without `Expect: 100-continue` meet a
broken pipe instead of its 413."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from worker.intake import http
from worker.intake.http import ApiError, read_body

CHUNK = b"x" * 65536


def request_of(chunks: int, *, headers: dict[str, str] | None = None) -> tuple[Request, list[int]]:
    """A request whose body comes in `chunks` chunks, and the count of chunks the app has read so far."""
    read = [0]

    async def receive() -> dict[str, Any]:
        read[0] += 1
        return {"type": "http.request", "body": CHUNK, "more_body": read[0] < chunks}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive), read


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_read_to_its_end_before_the_413(declared: bool) -> None:
    headers = {"content-length": str(40 * len(CHUNK))} if declared else {}
    request, read = request_of(40, headers=headers)  # 2.5 times the limit, as 2.6 MB is beside 1 MiB
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_body(request, 16 * len(CHUNK)))
    assert refused.value.status == 413
    assert read[0] == 40


def test_a_sender_that_asked_first_is_refused_unread() -> None:
    request, read = request_of(40, headers={"content-length": str(40 * len(CHUNK)), "expect": "100-continue"})
    with pytest.raises(ApiError):
        asyncio.run(read_body(request, 4 * len(CHUNK)))
    assert read[0] == 0


def test_what_is_read_and_dropped_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    request, read = request_of(1000)
    with pytest.raises(ApiError):
        asyncio.run(read_body(request, 4 * len(CHUNK)))
    assert read[0] == 17  # four times the limit, and the chunk that passed it
    monkeypatch.setattr(http, "DISCARD_MAX_BYTES", 10 * len(CHUNK))
    capped, read = request_of(1000)
    with pytest.raises(ApiError):
        asyncio.run(read_body(capped, 4 * len(CHUNK)))
    assert read[0] == 11
    declared, unread = request_of(1000, headers={"content-length": str(1000 * len(CHUNK))})
    with pytest.raises(ApiError):
        asyncio.run(read_body(declared, 4 * len(CHUNK)))
    assert unread[0] == 0


def test_a_body_within_the_limit_is_read_whole() -> None:
    request, _ = request_of(3)
    assert asyncio.run(read_body(request, 4 * len(CHUNK))) == CHUNK * 3
