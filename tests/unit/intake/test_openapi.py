"""The intake against its own OpenAPI document: schemathesis, in process over ASGI, bounded and deterministic.

Every operation of the served `/openapi.json` gets generated requests (schemathesis's examples, coverage and
fuzzing phases; valid and invalid data) sent with valid credentials, so they reach the handlers. Each answer must
not be a 5xx, and must conform to the document: a documented status, its content type, its body schema, its
headers; plus schemathesis's other default checks (schema-valid data accepted, schema-invalid data refused, the
`Allow` of a 405). A few requests go without credentials and must get the contract's 401. Odd bodies that a
generator does not write (unpaired surrogates, huge numbers, deep nesting) and the job routes with a real job are
sent explicitly, their answers held to the same document.

Deterministic (derandomized, no example database) and bounded: about `MAX_EXAMPLES` fuzzed cases per operation
plus the coverage phase's fixed cases, a few hundred in all (see `test_the_run_stays_bounded`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any, cast

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import Case
from schemathesis.checks import (  # type: ignore[attr-defined]  # the module registers them lazily
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response
from schemathesis.hooks import HookContext

from tests.unit.intake_fixtures import INTAKE_TOKEN, OPERATOR_TOKEN, make_intake
from worker.intake.app import IntakeDeps, intake_app_from_deps
from worker.intake.auth import Authenticator
from worker.jobs.model import JobState

# Fuzzed cases per operation (the coverage phase adds its own fixed set); raise it locally for a deeper run.
MAX_EXAMPLES = int(os.environ.get("BOXCUT_TEST_OPENAPI_EXAMPLES", "15"))
# Cases sent in all: the run must stay a few hundred (a schema change that explodes the coverage phase shows here).
# 27 operations: the brake's two (GET /v1/brake, POST /v1/brake/release with its JSON body) added about 50 cases,
# and the login pattern (no character that lower-cases into ASCII) about 40; a whole run was 870 cases. The security
# schemes the document declares (worker/intake/openapi_security.py) made 947: the coverage phase sends each
# protected operation's requests without, and with wrong, credentials too.
CASE_BUDGET = 27 * MAX_EXAMPLES + 560

INTAKE = make_intake()
APP = INTAKE.client.app
DOCUMENT_PATH = "/openapi.json"

# A pushed SET is text (a compact JWS) under its own media type.
schemathesis.serializer.alias("application/secevent+jwt", "text/plain")

schema = schemathesis.openapi.from_asgi(DOCUMENT_PATH, APP)
schema.config.generation.update(deterministic=True, database="none")
SETTINGS = hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_headers_conformance, response_schema_conformance]

sent: Counter[str] = Counter()  # cases per test and operation
answered: Counter[str] = Counter()  # statuses per operation, printed at the end: the run must reach the handlers


def credentials(path: str) -> dict[str, str]:
    """The header a caller of this path needs: an operator token for `/v1/jobs*`, an intake token for alerts."""
    if path.startswith(("/v1/jobs", "/v1/offboarding")):
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    if path.startswith("/v1/alerts"):
        return {"Authorization": f"Bearer {INTAKE_TOKEN}"}
    return {}


def _has_float_id(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("id"), float) or any(_has_float_id(v) for v in value.values())
    return isinstance(value, list) and any(_has_float_id(v) for v in value)


@schema.hook
def filter_body(context: HookContext, body: Any) -> bool:
    # JSON Schema counts `5.0` as an integer, but Python's json reads it as a float and the generic adapter
    # refuses a Box id written that way (422). No schema can tell 5 from 5.0, so such ids are not generated.
    operation = context.operation
    return not (operation is not None and operation.path == "/v1/alerts" and _has_float_id(body))


# Schema-valid data the intake may rightly refuse: a sender's own payload is any JSON object (or list), and one
# that names nobody is refused with the documented 422 (`no_identity`); an offboarding file is any text or list
# in the schema's terms, and one with a bad row is refused whole (422 `invalid_file`). Only this one check is
# left out there.
# A pushed SET is any string in the schema's terms, and only a signed one is taken (tests/unit/ssf).
VENDOR_PAYLOAD_PATHS = {"/v1/alerts/{source}", "/v1/alerts/okta", "/v1/offboarding", "/v1/ssf/events"}


@schema.parametrize()
@SETTINGS
def test_every_answer_conforms_to_the_document(case: Case) -> None:
    sent[case.operation.label] += 1
    excluded = [positive_data_acceptance] if case.operation.path in VENDOR_PAYLOAD_PATHS and case.method == "POST" \
        else []
    response = case.call(headers=credentials(case.operation.path))
    answered[f"{case.operation.label} {response.status_code}"] += 1
    case.validate_response(response, headers=credentials(case.operation.path), excluded_checks=excluded)


# -- without credentials -------------------------------------------------------------------------------------

# The Shared Signals push route asks no credentials: a SET's signature is its authentication (tests/unit/ssf).
unauthenticated = schemathesis.openapi.from_asgi(DOCUMENT_PATH, APP).include(path_regex="^/v1/(?!ssf/)")
# Schema-valid requests only: FastAPI checks parameters before the handler checks credentials, so an invalid one
# is answered 422 (in the contract's shape) even without credentials.
unauthenticated.config.generation.update(modes=["positive"], deterministic=True, database="none")
unauthenticated.config.phases.update(phases=["fuzzing"])


@unauthenticated.parametrize()
@hypothesis.settings(SETTINGS, max_examples=3)
def test_without_credentials_every_v1_operation_answers_the_contracts_401(case: Case) -> None:
    sent[f"unauthenticated {case.operation.label}"] += 1
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call()
    case.validate_response(response, checks=CONFORMANCE)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == ["Bearer"]
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "unauthorized" and body["error"]["message"]


# -- the document itself -------------------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only local references are expected"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} points at nothing"
        node = node[part]
    return node


def test_the_document_is_served_valid_and_complete() -> None:
    answer = INTAKE.client.get(DOCUMENT_PATH)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    document = answer.json()
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    for ref in _refs(document):  # which the meta-schema does not check: every `$ref` leads somewhere
        _resolve(document, ref)
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert {("/v1/alerts", "post"), ("/v1/alerts/{source}", "post"), ("/v1/alerts/okta", "get"),
            ("/v1/alerts/okta", "post"), ("/v1/jobs", "get"), ("/v1/jobs/{job_id}", "get"),
            ("/v1/jobs/{job_id}/cancel", "post")} <= operations
    for path, method in operations:
        for status, response in document["paths"][path][method]["responses"].items():
            if status.startswith(("4", "5")) and path.startswith("/v1/"):
                declared = response["content"]["application/json"]["schema"]
                # RFC 8935 gives a SET's refusal its own shape; the push route's other errors are the contract's.
                shape = "SetError" if (path, status) == ("/v1/ssf/events", "400") else "ErrorBody"
                assert declared == {"$ref": f"#/components/schemas/{shape}"}, f"{method.upper()} {path} {status}"


def _assert_contract_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str)


@pytest.mark.parametrize("path", list(schema.raw_schema["paths"]))
def test_undeclared_methods_get_405_with_allow_in_the_contracts_shape(path: str) -> None:
    # schemathesis's own probe checks the status and `Allow` but not the body (405 is in no operation's document).
    documented = {method.upper() for method in schema.raw_schema["paths"][path]}
    concrete = path.replace("{source}", "splunk").replace("{job_id}", "j-0")
    for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - documented):
        sent[f"undeclared method {path}"] += 1
        response = INTAKE.client.request(method, concrete, headers=credentials(path))
        _assert_contract_error(response, 405, "method_not_allowed")
        assert set(response.headers["allow"].split(", ")) == documented, (method, response.headers["allow"])


def test_an_unknown_path_gets_404_in_the_contracts_shape() -> None:
    sent["unknown path"] += 1
    _assert_contract_error(INTAKE.client.get("/v1/nothing", headers=credentials("/v1/jobs")), 404, "not_found")


# -- odd bodies, sent as bytes -------------------------------------------------------------------------------

ODD_BODIES = {
    "unpaired surrogate in the reason": b'{"targets": [{"type": "user", "id": "1"}], "reason": "\\ud800"}',
    "unpaired surrogate in a login": b'{"targets": [{"type": "user", "login": "\\udc00@example.com"}]}',
    "a number of 5000 digits": b'{"targets": [{"type": "user", "id": ' + b"7" * 5000 + b"}]}",
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "not UTF-8": b'{"targets": [{"type": "user", "login": "\xff@example.com"}]}',
    "not JSON": b'{"targets": [',
    "empty": b"",
}
# Where each is posted, and the document's path that serves it.
ALERT_PATHS = {"/v1/alerts": "/v1/alerts", "/v1/alerts/splunk": "/v1/alerts/{source}",
               "/v1/alerts/box-shield": "/v1/alerts/{source}", "/v1/alerts/okta": "/v1/alerts/okta"}


@pytest.mark.parametrize("path", list(ALERT_PATHS))
@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_odd_bodies_get_a_documented_4xx(path: str, name: str) -> None:
    sent[f"odd body POST {path}"] += 1
    response = INTAKE.client.post(path, content=ODD_BODIES[name],
                                  headers={"Content-Type": "application/json", **credentials(path)})
    schema[ALERT_PATHS[path]]["POST"].Case().validate_response(response, checks=CONFORMANCE)
    assert response.status_code in (400, 422), response.text


# -- the job routes with real jobs ---------------------------------------------------------------------------


def _new_job() -> str:
    answer = INTAKE.post("/v1/alerts", {"targets": [{"type": "user", "login": "jdoe@example.com"}]})
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def _call(path: str, method: str, **path_parameters: str) -> Response:
    case = schema[path][method].Case(path_parameters=path_parameters or None, headers=credentials(path))
    sent[f"real job {case.operation.label}"] += 1
    response = case.call()
    case.validate_response(response, checks=CONFORMANCE)
    return response


def test_job_routes_answer_as_documented_for_a_real_job() -> None:
    job_id = _new_job()
    assert _call("/v1/jobs/{job_id}", "GET", job_id=job_id).json()["job_id"] == job_id
    listed = _call("/v1/jobs", "GET").json()["jobs"]
    assert job_id in [row["job_id"] for row in listed]
    assert _call("/v1/jobs/{job_id}/report", "GET", job_id=job_id).json()["report"]["job"]["job_id"] == job_id
    assert _call("/v1/jobs/{job_id}/cancel", "POST", job_id=job_id).json()["state"] == "cancelled"
    assert _call("/v1/jobs/{job_id}/cancel", "POST", job_id=job_id).json()["state"] == "cancelled"  # again: done
    settled = _new_job()
    INTAKE.store.transition(settled, to=JobState.SUCCEEDED, allowed_from=[JobState.QUEUED])
    late = _call("/v1/jobs/{job_id}/cancel", "POST", job_id=settled)
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_cancellable"


def test_readyz_answers_as_documented_when_a_dependency_is_down() -> None:
    # The generated run only sees a ready intake (its readiness is a fake); here the broker is down.
    deps = IntakeDeps(settings=INTAKE.settings, store=INTAKE.store, intake=cast(Any, None),  # readyz needs none
                      auth=Authenticator(INTAKE.settings),
                      readiness=lambda: {"redis": "ok", "broker": "unavailable: OperationalError"})
    case = schema["/readyz"]["GET"].Case()
    sent["real readiness GET /readyz"] += 1
    response = case.call(app=intake_app_from_deps(deps))
    # A 503 is readiness's documented answer here, not a server error: every other check still applies.
    case.validate_response(response, checks=[c for c in CONFORMANCE if c is not not_a_server_error])
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


# -- the size of the run -------------------------------------------------------------------------------------


def test_the_run_stays_bounded() -> None:
    # Last in the file, so it sees the whole run's count (and less under `-k`: only the upper bound is checked).
    print(json.dumps(dict(sorted(answered.items())), indent=1), json.dumps(sent, indent=1),
          f"\n{sum(sent.values())} cases")
    assert sum(sent.values()) <= CASE_BUDGET, dict(sent)
