"""Checking simulated requests against Box's spec and Box's documented 400 rules."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from jsonschema import ValidationError

from boxsim.errors import ApiError, bad_request, invalid_parameter
from boxsim.http_types import SimRequest
from boxsim.openapi_schema import (
    query_parameter_validator,
    request_body_validator,
    response_body_validator,
)
from boxsim.spec import operation, query_parameters, request_media_type

JSON_PAYLOAD_MESSAGE = "Supported payload format is JSON"
MAX_USERS_OFFSET = 10_000  # documented for GET /users: larger offsets are refused with a 400
INTEGER_TEXT = re.compile(r"-?\d+")


@dataclass(frozen=True)
class TerminateRule:
    """Box's documented 400 rules for one terminate_sessions operation."""

    fields: tuple[str, ...]
    empty_message: str
    format_messages: Mapping[str, str]


TERMINATE_RULES: dict[str, TerminateRule] = {
    "post_users_terminate_sessions": TerminateRule(
        fields=("user_ids", "user_logins"),
        empty_message="Users can not be NULL or EMPTY",
        format_messages={"user_ids": "User id format is string", "user_logins": "User login format is string"},
    ),
    "post_groups_terminate_sessions": TerminateRule(
        fields=("group_ids",),
        empty_message="Groups can not be NULL or EMPTY",
        format_messages={"group_ids": "group id format is string"},
    ),
}


def _describe(errors: list[ValidationError]) -> list[str]:
    """Render schema errors as 'json path: message' lines in a stable order."""
    return [f"{e.json_path}: {e.message}" for e in sorted(errors, key=lambda e: (e.json_path, e.message))]


def validate_request_body(operation_id: str, body: object) -> list[str]:
    """Check a request body against the operation's requestBody schema; return the problems (none = valid).

    Raises ValueError for an operation the subset does not hold or one without a request body.
    """
    validator = request_body_validator(operation_id, request_media_type(operation_id))
    return _describe(list(validator.iter_errors(body)))


def validate_response_body(operation_id: str, status: int, body: object) -> list[str]:
    """Check a JSON response body against the operation's response schema for that status (or default)."""
    responses = operation(operation_id).get("responses", {})
    key = str(status) if str(status) in responses else "default"
    return _describe(list(response_body_validator(operation_id, key).iter_errors(body)))


def parse_json_body(request: SimRequest) -> object:
    """Decode a JSON request body, answering Box's 400 when the payload is not JSON."""
    if request.content_type() != "application/json":
        raise bad_request(JSON_PAYLOAD_MESSAGE, "body")
    try:
        return cast(object, json.loads(request.raw_body.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad_request(JSON_PAYLOAD_MESSAGE, "body") from None


def check_terminate_body(operation_id: str, body: object) -> dict[str, list[str]]:
    """Apply Box's 400 rules, then the spec's schema, to a terminate_sessions body; return its id lists."""
    rule = TERMINATE_RULES[operation_id]
    if isinstance(body, dict):
        _check_id_formats(rule, body)
        _check_not_empty(rule, body)
    _check_schema(operation_id, body)
    fields = cast(dict[str, Any], body)
    return {name: list(fields.get(name) or []) for name in rule.fields}


def _check_id_formats(rule: TerminateRule, body: dict[str, Any]) -> None:
    """Refuse id lists holding anything but strings, with Box's message for it."""
    for name in rule.fields:
        values = body.get(name)
        if isinstance(values, list) and any(not isinstance(v, str) for v in values):
            raise bad_request(rule.format_messages[name], name)


def _check_not_empty(rule: TerminateRule, body: dict[str, Any]) -> None:
    """Refuse a body whose id lists are all null, missing or empty."""
    if all(body.get(name) in (None, []) for name in rule.fields):
        raise bad_request(rule.empty_message, rule.fields[0])


def _check_schema(operation_id: str, body: object) -> None:
    """Refuse a body the spec's request schema rejects, naming each offending field."""
    validator = request_body_validator(operation_id, "application/json")
    errors = sorted(validator.iter_errors(body), key=lambda e: e.json_path)
    if errors:
        details = [invalid_parameter(_error_field(e), e.message) for e in errors]
        raise ApiError(400, "Bad Request", code="bad_request", errors=details)


def _error_field(error: ValidationError) -> str:
    """Name the top-level body field a schema error is about."""
    if error.validator == "required" and isinstance(error.instance, dict):
        required = cast(list[str], error.validator_value)
        missing = [name for name in required if name not in error.instance]
        if missing:
            return str(missing[0])
    return str(error.path[0]) if error.path else "body"


class QueryValues:
    """Query parameters of one request, converted to the types the spec declares for them."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def integer(self, name: str, default: int) -> int:
        """Return an integer parameter, or the default when absent."""
        value = self._values.get(name, default)
        return int(value)

    def boolean(self, name: str) -> bool:
        """Return a boolean parameter; absent means false."""
        return bool(self._values.get(name, False))

    def text(self, name: str) -> str | None:
        """Return a string parameter, or None when absent."""
        value = self._values.get(name)
        return None if value is None else str(value)

    def items(self, name: str) -> list[str] | None:
        """Return a comma-separated list parameter, or None when absent or empty."""
        value = self._values.get(name)
        return [str(v) for v in value] if value else None


def parse_query(operation_id: str, query: Mapping[str, list[str]]) -> QueryValues:
    """Convert and check the query parameters the operation declares; unknown ones are ignored, like Box."""
    declared = query_parameters(operation_id)
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name, raw_values in query.items():
        if name not in declared or not raw_values:
            continue
        raw = raw_values[0]
        try:
            values[name] = _convert(name, raw, declared[name].get("schema", {}))
        except ValueError as exc:
            errors.append(invalid_parameter(name, str(exc)))
            continue
        errors.extend(_schema_problems(operation_id, name, raw, values[name]))
    errors.extend(_paging_problems(operation_id, values))
    if errors:
        raise ApiError(400, "Bad Request", code="bad_request", errors=errors)
    return QueryValues(values)


def _convert(name: str, raw: str, schema: Mapping[str, Any]) -> Any:
    """Turn one raw query value into the type its schema declares; ValueError explains a mismatch."""
    kind = schema.get("type")
    if kind == "integer":
        if not INTEGER_TEXT.fullmatch(raw.strip()):
            raise ValueError(f"Invalid value '{raw}'. '{name}' must be an integer.")
        return int(raw)
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"Invalid value '{raw}'. '{name}' must be true or false.")
        return raw.lower() == "true"
    if kind == "array":
        # The spec declares these with explode=false: one comma-separated value.
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def _schema_problems(operation_id: str, name: str, raw: str, value: Any) -> list[dict[str, str]]:
    """Check a converted value against the parameter's schema (maximum, enum...)."""
    validator = query_parameter_validator(operation_id, name)
    return [invalid_parameter(name, f"Invalid value '{raw}'. {e.message}") for e in validator.iter_errors(value)]


def _paging_problems(operation_id: str, values: Mapping[str, Any]) -> list[dict[str, str]]:
    """Apply the paging rules the spec states in prose rather than schema."""
    problems: list[dict[str, str]] = []
    for name, minimum in (("limit", 1), ("offset", 0)):
        if isinstance(values.get(name), int) and values[name] < minimum:
            problems.append(invalid_parameter(name, f"Invalid value '{values[name]}'. Must be at least {minimum}."))
    offset = values.get("offset")
    if operation_id == "get_users" and isinstance(offset, int) and offset > MAX_USERS_OFFSET:
        message = f"Invalid value '{offset}'. Offsets over {MAX_USERS_OFFSET} are refused; use usemarker."
        problems.append(invalid_parameter("offset", message))
    if "marker" in values and values.get("usemarker") is not True:
        problems.append(invalid_parameter("marker", "'marker' requires usemarker=true."))
    return problems
