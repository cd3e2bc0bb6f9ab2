"""Offset- and marker-based pagination of collection answers."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from boxsim.errors import bad_request

T = TypeVar("T")
MARKER_PREFIX = "boxsim:"


def encode_marker(index: int) -> str:
    """Return the opaque marker that resumes a listing at `index`."""
    return base64.urlsafe_b64encode(f"{MARKER_PREFIX}{index}".encode()).decode().rstrip("=")


def decode_marker(marker: str) -> int:
    """Return the listing index a marker stands for; a marker boxsim did not make is a 400."""
    try:
        text = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)).decode()
        if text.startswith(MARKER_PREFIX) and text[len(MARKER_PREFIX) :].isdigit():
            return int(text[len(MARKER_PREFIX) :])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise bad_request("Bad Request", "marker", f"Invalid value '{marker}'. Not a marker from this listing.")


def offset_page(items: Sequence[T], offset: int, limit: int, render: Callable[[T], Any]) -> dict[str, Any]:
    """Return one offset-paged answer: total_count, limit, offset and the entries."""
    return {
        "total_count": len(items),
        "limit": limit,
        "offset": offset,
        "entries": [render(item) for item in items[offset : offset + limit]],
    }


def marker_page(items: Sequence[T], marker: str | None, limit: int, render: Callable[[T], Any]) -> dict[str, Any]:
    """Return one marker-paged answer: limit, next_marker (None on the last page) and the entries."""
    start = decode_marker(marker) if marker else 0
    end = start + limit
    return {
        "limit": limit,
        "next_marker": encode_marker(end) if end < len(items) else None,
        "entries": [render(item) for item in items[start:end]],
    }
