"""The intake's credentials, declared in its OpenAPI document (`components.securitySchemes`, and each operation's
`security`), so /docs offers an Authorize button and clients' generators know what to send. A declaration only:
the routes check credentials themselves (worker/intake/auth.py, slack_routes.py), as before."""

from __future__ import annotations

from typing import Any

from worker.intake.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER
from worker.intake.slack_routes import PATH as SLACK_PATH
from worker.intake.slack_routes import SIGNATURE_HEADER as SLACK_SIGNATURE_HEADER

INTAKE_TOKEN, OPERATOR_TOKEN = "intakeToken", "operatorToken"
SIGNATURE, SIGNATURE_TIMESTAMP, SLACK_SIGNATURE = "hmacSignature", "hmacTimestamp", "slackSignature"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    INTAKE_TOKEN: {"type": "http", "scheme": "bearer",
                   "description": "A sender's token: one of BOXCUT_INTAKE_TOKENS (`Authorization: Bearer <token>`)."},
    OPERATOR_TOKEN: {"type": "http", "scheme": "bearer",
                     "description": "An operator's token: one of BOXCUT_OPERATOR_TOKENS. A sender's token gets 403."},
    SIGNATURE: {"type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
                "description": "A signed sender (BOXCUT_INTAKE_HMAC_SECRETS): `v1=<hex HMAC-SHA256 of "
                               "\"<timestamp>.<raw body>\">`, with the timestamp in " + TIMESTAMP_HEADER + "."},
    SIGNATURE_TIMESTAMP: {"type": "apiKey", "in": "header", "name": TIMESTAMP_HEADER,
                          "description": "The Unix time the signature covers (with " + SIGNATURE_HEADER + ")."},
    SLACK_SIGNATURE: {"type": "apiKey", "in": "header", "name": SLACK_SIGNATURE_HEADER,
                      "description": "Slack's signature of its interactivity requests (BOXCUT_SLACK_SIGNING_SECRET): "
                                     "`v0=<hex HMAC-SHA256>`, with X-Slack-Request-Timestamp."},
}

# A sender proves itself by a token or by a signature (both signature headers together).
Requirements = list[dict[str, list[str]]]

SENDER: Requirements = [{INTAKE_TOKEN: []}, {SIGNATURE: [], SIGNATURE_TIMESTAMP: []}]
OPERATOR: Requirements = [{OPERATOR_TOKEN: []}]
# A Shared Signals SET authenticates by its own signature (a JWS, checked against the transmitter's keys): no
# credential travels beside it.
NONE: Requirements = []


def declare_security(document: dict[str, Any]) -> None:
    """Add the schemes to `document` and each operation's requirement, by what its route checks."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            required = _required(path, operation.get("tags", []))
            if required is not None:
                operation["security"] = required


def _required(path: str, tags: list[str]) -> Requirements | None:
    if "operator" in tags:
        return OPERATOR
    if path.startswith("/v1/alerts"):
        return SENDER
    if path.startswith("/v1/ssf/"):
        return NONE
    if path == SLACK_PATH:  # kept out of the document today (Slack's own form posts), declared should it join
        return [{SLACK_SIGNATURE: []}]
    return None  # health and metrics ask nothing
