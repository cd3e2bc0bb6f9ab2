"""Draft exploration."""

from __future__ import annotations

import os

import schemathesis
from schemathesis import Case

from tests.unit.intake_fixtures import INTAKE_TOKEN, OPERATOR_TOKEN, make_intake

INTAKE = make_intake()
APP = INTAKE.client.app
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(max_examples=int(os.environ.get("EXAMPLES", "20")), deterministic=True,
                                database="none")


def token_for(case: Case) -> str | None:
    path = case.operation.path
    if path.startswith("/v1/jobs"):
        return OPERATOR_TOKEN
    if path.startswith("/v1/alerts"):
        return INTAKE_TOKEN
    return None


@schema.parametrize()
def test_api(case: Case) -> None:
    token = token_for(case)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    print("CASE", case.meta, repr(case.body)[:200], case.media_type)
    case.call_and_validate(headers=headers)
