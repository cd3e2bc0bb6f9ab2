"""Turning the OpenAPI 3.0 subset into JSON Schema validators (nullable, component $refs)."""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from boxsim.spec import load_subset, operation, operation_pointer

DOCUMENT_URI = "urn:boxsim:box-openapi-subset"


def to_json_schema(node: Any) -> Any:
    """Return a copy of an OpenAPI 3.0 schema tree rewritten as JSON Schema (draft 7).

    OpenAPI 3.0 spells "may be null" as `nullable: true` beside `type`; JSON Schema needs the null type
    (and null in any enum) instead. Everything else in the subset is already valid draft 7.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is not True:
        return converted
    if "enum" in converted:
        converted["enum"] = [*converted["enum"], None]
    if isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
        return converted
    return {"anyOf": [converted, {"type": "null"}]}


@cache
def _registry() -> Registry[Any]:
    """Return a registry holding the converted subset so `#/components/schemas/...` refs resolve."""
    resource: Resource[Any] = DRAFT7.create_resource(to_json_schema(load_subset()))
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    return registry


def _escape(token: str) -> str:
    """Escape one JSON pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def validator_at(pointer: str) -> Draft7Validator:
    """Return a validator for the schema at a JSON pointer inside the subset document."""
    return Draft7Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=_registry())


@cache
def request_body_validator(operation_id: str, media_type: str) -> Draft7Validator:
    """Return the validator of an operation's request body schema for one media type."""
    pointer = f"{operation_pointer(operation_id)}/requestBody/content/{_escape(media_type)}/schema"
    return validator_at(pointer)


@cache
def response_body_validator(operation_id: str, status: str) -> Draft7Validator:
    """Return the validator of an operation's JSON response schema for one status key."""
    pointer = f"{operation_pointer(operation_id)}/responses/{status}/content/application~1json/schema"
    return validator_at(pointer)


@cache
def query_parameter_validator(operation_id: str, name: str) -> Draft7Validator:
    """Return the validator of one query parameter's schema."""
    for index, parameter in enumerate(operation(operation_id).get("parameters", [])):
        if parameter.get("in") == "query" and parameter.get("name") == name:
            return validator_at(f"{operation_pointer(operation_id)}/parameters/{index}/schema")
    raise ValueError(f"operation {operation_id!r} has no query parameter {name!r}")
