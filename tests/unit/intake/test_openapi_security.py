"""The OpenAPI document declares the intake's credentials, so /docs shows an Authorize button: every operation
that checks credentials names the ones it takes; health, metrics and Shared Signals (a SET is signed) take none."""

from __future__ import annotations

from typing import Any

from tests.unit.intake_fixtures import make_intake

DOCUMENT = make_intake().client.get("/openapi.json").json()


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in DOCUMENT["paths"].items() for method, op in ops.items()]


def test_the_schemes_are_declared() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["intakeToken"]["type"] == "http" and schemes["intakeToken"]["scheme"] == "bearer"
    assert schemes["operatorToken"]["type"] == "http" and schemes["operatorToken"]["scheme"] == "bearer"
    headers = {name: (schemes[name]["in"], schemes[name]["name"].lower())
               for name in ("hmacSignature", "hmacTimestamp", "slackSignature")}
    assert headers == {"hmacSignature": ("header", "x-boxcut-signature"),
                       "hmacTimestamp": ("header", "x-boxcut-timestamp"),
                       "slackSignature": ("header", "x-slack-signature")}


def test_each_protected_operation_names_its_credentials() -> None:
    checked = 0
    for path, method, op in operations():
        if "operator" in op.get("tags", []):
            assert op["security"] == [{"operatorToken": []}], (method, path)
        elif path.startswith("/v1/alerts"):
            assert op["security"] == [{"intakeToken": []}, {"hmacSignature": [], "hmacTimestamp": []}], (method, path)
        elif path.startswith("/v1/ssf/"):
            assert op["security"] == [], (method, path)
        else:
            assert path in ("/healthz", "/readyz", "/metrics") and "security" not in op, (method, path)
            continue
        checked += 1
        for requirement in op["security"]:
            assert set(requirement) <= set(DOCUMENT["components"]["securitySchemes"])
    assert checked >= 14  # alerts (4), jobs (3), actions (3), offboarding, brake (2), ssf
