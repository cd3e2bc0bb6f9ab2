"""Access to the bundled Box OpenAPI subset: operations, parameters and request/response schemas."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SUBSET_RESOURCE = "box-openapi-subset.json"


@cache
def load_subset() -> dict[str, Any]:
    """Return the bundled spec subset, read once from the installed package."""
    text = (resources.files("boxsim") / "openapi" / SUBSET_RESOURCE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def _operation_index() -> dict[str, tuple[str, str]]:
    """Map each operationId in the subset to its (path, method)."""
    index: dict[str, tuple[str, str]] = {}
    for path, item in load_subset()["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                index[operation["operationId"]] = (path, method)
    return index


def operation_ids() -> list[str]:
    """Return the operationIds the subset holds."""
    return sorted(_operation_index())


def _locate(operation_id: str) -> tuple[str, str]:
    """Return the (path, method) of an operation; ValueError names the known ones if it is not there."""
    try:
        return _operation_index()[operation_id]
    except KeyError:
        raise ValueError(f"unknown operation {operation_id!r}; known: {operation_ids()}") from None


def operation_pointer(operation_id: str) -> str:
    """Return the JSON pointer of an operation inside the subset document."""
    path, method = _locate(operation_id)
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"/paths/{escaped}/{method}"


def operation(operation_id: str) -> dict[str, Any]:
    """Return the operation object for an operationId."""
    path, method = _locate(operation_id)
    result: dict[str, Any] = load_subset()["paths"][path][method]
    return result


def query_parameters(operation_id: str) -> dict[str, dict[str, Any]]:
    """Return the operation's query parameters by name."""
    params = operation(operation_id).get("parameters", [])
    return {p["name"]: p for p in params if p.get("in") == "query"}


def request_media_type(operation_id: str) -> str:
    """Return the media type of the operation's request body (JSON preferred)."""
    content = operation(operation_id).get("requestBody", {}).get("content", {})
    if not content:
        raise ValueError(f"operation {operation_id!r} takes no request body")
    return "application/json" if "application/json" in content else next(iter(content))
