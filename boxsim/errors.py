"""Box-shaped error answers: the ClientError body and the exception that carries one out of a handler."""

from __future__ import annotations

import secrets
from http import HTTPStatus
from typing import Any

HELP_URL = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/"
RATE_LIMIT_MESSAGE = "Request rate limit exceeded, please try again later"

# Codes and messages Box uses for the statuses boxsim can produce on its own or through fault rules.
DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad Request"),
    403: ("access_denied_insufficient_permissions", "Access denied - insufficient permission"),
    404: ("not_found", "Not Found"),
    405: ("method_not_allowed", "Method Not Allowed"),
    429: ("rate_limit_exceeded", RATE_LIMIT_MESSAGE),
    500: ("internal_server_error", "Internal Server Error"),
    503: ("unavailable", "Unavailable"),
}


def new_request_id() -> str:
    """Return a fresh random request id, as Box puts in `request_id` and `box-request-id`."""
    return secrets.token_hex(8)


def default_error(status: int) -> tuple[str, str]:
    """Return the (code, message) pair Box would use for an error with this HTTP status."""
    if status in DEFAULT_ERRORS:
        return DEFAULT_ERRORS[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return phrase.lower().replace(" ", "_").replace("-", "_"), phrase


def invalid_parameter(name: str, message: str) -> dict[str, str]:
    """Build one `context_info.errors` entry naming the offending parameter."""
    return {"reason": "invalid_parameter", "name": name, "message": message}


def error_body(
    status: int,
    code: str | None = None,
    message: str | None = None,
    errors: list[dict[str, str]] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Build a ClientError body; code and message default to Box's for the status."""
    default_code, default_message = default_error(status)
    body: dict[str, Any] = {
        "type": "error",
        "status": status,
        "code": code or default_code,
        "message": message or default_message,
        "request_id": request_id or new_request_id(),
        "help_url": HELP_URL,
    }
    if errors:
        body["context_info"] = {"errors": errors}
    return body


class ApiError(Exception):
    """Raised by request handling to answer with a Box error body instead of a result."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or default_error(status)[1])
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        """Render this error as the ClientError body Box would send."""
        return error_body(self.status, self.code, self.message, self.errors, request_id)


def bad_request(message: str, name: str, detail: str | None = None) -> ApiError:
    """Build the 400 Box answers for one invalid parameter."""
    return ApiError(400, message, code="bad_request", errors=[invalid_parameter(name, detail or message)])
