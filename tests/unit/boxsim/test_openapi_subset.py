"""The bundled Box OpenAPI subset and the script that cuts it from Box's full spec."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from boxsim.openapi_schema import to_json_schema
from boxsim.spec import load_subset, operation_ids

ROOT = Path(__file__).resolve().parents[3]
SERVED = {
    "post_oauth2_token",
    "get_users",
    "get_users_id",
    "get_users_me",
    "get_groups",
    "get_groups_id",
    "get_groups_id_memberships",
    "post_users_terminate_sessions",
    "post_groups_terminate_sessions",
    "get_events",
}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_openapi_subset", ROOT / "scripts/extract_openapi_subset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {v for k, v in node.items() if k == "$ref"} | {r for v in node.values() for r in refs(v)}
    if isinstance(node, list):
        return {r for item in node for r in refs(item)}
    return set()


def test_bundled_subset_holds_exactly_the_served_operations_and_resolves() -> None:
    subset = load_subset()

    assert set(operation_ids()) == SERVED
    schemas = subset["components"]["schemas"]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs(subset))
    assert len(schemas) < 50  # trimmed: the whole spec has hundreds; GET /events brings the Event schemas
    assert (ROOT / "boxsim/openapi/LICENSE").read_text().lstrip().startswith("Apache License")
    assert "c9a878a9" in (ROOT / "boxsim/openapi/NOTICE.md").read_text()


def test_script_keeps_wanted_operations_and_their_schemas_transitively() -> None:
    script = load_script()
    ok = {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}
    spec = {
        "openapi": "3.0.2",
        "info": {"title": "t"},
        "tags": [{"name": "dropped"}],
        "paths": {
            "/keep": {"get": {"operationId": "keep_me", "responses": ok}},
            "/drop": {"get": {"operationId": "drop_me", "responses": {}}},
        },
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "B": {"items": {"$ref": "#/components/schemas/C"}},
                "C": {"type": "string"},
                "Unused": {"type": "integer"},
            }
        },
    }

    subset = script.build_subset(spec, ("keep_me",))

    assert list(subset["paths"]) == ["/keep"]
    assert sorted(subset["components"]["schemas"]) == ["A", "B", "C"]
    assert "tags" not in subset and subset["openapi"] == "3.0.2"


def test_script_fails_when_an_operation_is_missing(tmp_path: Path) -> None:
    script = load_script()
    source = tmp_path / "spec.json"
    source.write_text(json.dumps({"openapi": "3.0.2", "paths": {}, "components": {"schemas": {}}}))

    with pytest.raises(SystemExit, match="operations not found"):
        script.main([str(source), str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_nullable_becomes_a_json_schema_null_type() -> None:
    converted = to_json_schema(
        {
            "properties": {
                "a": {"type": "string", "nullable": True},
                "b": {"type": "string", "enum": ["x"], "nullable": True},
                "c": {"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": True},
                "d": {"type": "integer", "nullable": False},
            }
        }
    )

    props = converted["properties"]
    assert props["a"] == {"type": ["string", "null"]}
    assert props["b"] == {"type": ["string", "null"], "enum": ["x", None]}
    assert props["c"] == {"anyOf": [{"allOf": [{"$ref": "#/components/schemas/X"}]}, {"type": "null"}]}
    assert props["d"] == {"type": "integer"}
