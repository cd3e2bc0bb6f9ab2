"""HTTP plumbing shared by the intake's routes: the contract's errors and a body read with a size limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect


class ApiError(Exception):
    """An error answered in the contract's shape: `{"error": {"code": ..., "message": ...}}`."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, headers=self.headers)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error in the contract's shape; `headers` are added (e.g. the `Allow` a 405 must carry)."""
    sent = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=sent or None)


def require_json_content_type(request: Request) -> None:
    """415 unless the body is declared JSON (`application/json`, or a `+json` type, any charset)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        shown = media_type or "none"
        raise ApiError(415, "unsupported_media_type", f"send Content-Type: application/json (got {shown})")


# An oversized body is read and thrown away up to this much, for at most this long, before the 413 is sent: a
# server that answers and closes while the sender still writes makes the sender's kernel meet a reset, and a
# client without `Expect: 100-continue` (urllib, requests) then sees a broken pipe instead of the 413, which its
# retry logic takes for a transient fault. Past either bound the connection is closed, as nginx's lingering close.
# The bound is a few times the limit (a sender's body is rarely many times too large), at most DISCARD_MAX_BYTES:
# anyone may send a body, before any credential is checked, and it should cost the intake little.
DISCARD_LIMITS = 4
DISCARD_MAX_BYTES = 16 * 1024 * 1024
DISCARD_MAX_SECONDS = 5.0


def discard_bound(limit: int) -> int:
    """How much of a refused body is read and dropped at the most, for a body limit of `limit` bytes."""
    return min(DISCARD_LIMITS * limit, DISCARD_MAX_BYTES)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as it is known to exceed `limit`: from Content-Length, or while
    streaming, so an oversized body is never held whole. The rest of a refused body is read and discarded (within
    bounds) first, so the sender reads its 413."""
    declared = request.headers.get("content-length")
    stream = request.stream()
    size = 0
    if declared and declared.isdigit() and int(declared) > limit:
        refused = ApiError(413, "payload_too_large", f"body is {declared} bytes; the limit is {limit}")
        # a sender that asked first (100-continue) is refused unread: it sends nothing more
        if request.headers.get("expect", "").lower() != "100-continue" and int(declared) <= discard_bound(limit):
            await _discard(stream, 0, discard_bound(limit))
        raise refused
    chunks = []
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _discard(stream, size, discard_bound(limit))
            raise ApiError(413, "payload_too_large", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _discard(stream: AsyncIterator[bytes], size: int, bound: int) -> None:
    """Read what is left of a refused body and drop it, until it ends, `bound` bytes in all were read, or
    DISCARD_MAX_SECONDS passed; a sender that hangs up meanwhile ends it too."""
    async def drain() -> None:
        nonlocal size
        async for chunk in stream:
            size += len(chunk)
            if size > bound:
                return

    with contextlib.suppress(TimeoutError, ClientDisconnect):
        await asyncio.wait_for(drain(), DISCARD_MAX_SECONDS)


def parse_json(body: bytes) -> Any:
    """The decoded body; 400 when it is not UTF-8 (RFC 8259; a leading BOM is ignored, as it allows), not valid
    JSON, or holds what would fail later (a 500, or a job record Redis refuses): an unpaired surrogate escape
    (`"\\ud800"`: no character), a number of more digits than Python converts (4,300), nesting deeper than
    Python's recursion limit."""
    text = utf8_text(body)
    try:
        payload = json.loads(text)
        json.dumps(payload, ensure_ascii=False).encode()  # UnicodeEncodeError on an unpaired surrogate
    except json.JSONDecodeError as exc:
        message = f"body is not valid JSON at line {exc.lineno} column {exc.colno}"
    except UnicodeError:
        message = "body holds an unpaired surrogate escape (\\ud800 to \\udfff): no character"
    except RecursionError:
        message = "body is nested too deeply to read"
    except ValueError:  # json's "Exceeds the limit (4300 digits) for integer string conversion"
        message = "body holds a number of more than 4300 digits"
    else:
        return payload
    raise ApiError(400, "malformed_json", message)


def utf8_text(body: bytes) -> str:
    """The body as text, or 400: JSON between systems is UTF-8 (RFC 8259 section 8.1). `json.loads(bytes)` would
    guess UTF-16 or UTF-32 from the first bytes and accept them; boxcut does not guess."""
    # UTF-8 JSON never holds a NUL byte; UTF-16 and UTF-32 JSON always does (its braces and quotes are ASCII).
    if b"\x00" in body:
        raise ApiError(400, "malformed_json", "body is not UTF-8 (it holds NUL bytes, as UTF-16 or UTF-32 do): "
                                              "send JSON in UTF-8")
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not UTF-8 (at byte {exc.start}): "
                                              "send JSON in UTF-8") from None
