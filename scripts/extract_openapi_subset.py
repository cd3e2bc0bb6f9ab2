"""Cut Box's OpenAPI spec down to the operations boxsim serves, for shipping inside the boxsim package.

Usage: python scripts/extract_openapi_subset.py SPEC_PATH OUT_PATH

Keeps the named operations (with their path-level parameters) and every `components.schemas` entry they
reference, following `$ref` transitively, so the subset still resolves on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KEPT_OPERATIONS: tuple[str, ...] = (
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
)
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
SCHEMA_REF_PREFIX = "#/components/schemas/"
# Top-level keys worth keeping; tags and externalDocs only describe the parts we dropped.
KEPT_TOP_LEVEL = ("openapi", "info", "servers", "security")


def iter_refs(node: Any) -> Iterator[str]:
    """Yield every `$ref` string found anywhere inside a JSON node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from iter_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_refs(item)


def select_paths(spec: dict[str, Any], operation_ids: tuple[str, ...]) -> dict[str, Any]:
    """Return the `paths` object restricted to the wanted operations; fail if one is missing."""
    kept: dict[str, Any] = {}
    found: set[str] = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and operation.get("operationId") in operation_ids:
                kept.setdefault(path, {})[method] = operation
                found.add(operation["operationId"])
        if path in kept and "parameters" in item:
            kept[path]["parameters"] = item["parameters"]
    missing = set(operation_ids) - found
    if missing:
        raise SystemExit(f"operations not found in spec: {sorted(missing)}")
    return kept


def referenced_schemas(spec: dict[str, Any], roots: Any) -> dict[str, Any]:
    """Collect the component schemas reachable from `roots` through `$ref`, transitively."""
    schemas: dict[str, Any] = spec["components"]["schemas"]
    collected: dict[str, Any] = {}
    pending = list(iter_refs(roots))
    while pending:
        ref = pending.pop()
        if not ref.startswith(SCHEMA_REF_PREFIX):
            raise SystemExit(f"unsupported $ref (only component schemas are followed): {ref}")
        name = ref[len(SCHEMA_REF_PREFIX) :]
        if name not in collected:
            collected[name] = schemas[name]
            pending.extend(iter_refs(schemas[name]))
    return dict(sorted(collected.items()))


def build_subset(spec: dict[str, Any], operation_ids: tuple[str, ...] = KEPT_OPERATIONS) -> dict[str, Any]:
    """Build the trimmed spec document holding only `operation_ids` and what they need."""
    paths = select_paths(spec, operation_ids)
    subset: dict[str, Any] = {key: spec[key] for key in KEPT_TOP_LEVEL if key in spec}
    subset["paths"] = paths
    components: dict[str, Any] = {"schemas": referenced_schemas(spec, paths)}
    if "securitySchemes" in spec.get("components", {}):
        components["securitySchemes"] = spec["components"]["securitySchemes"]
    subset["components"] = components
    return subset


def main(argv: list[str] | None = None) -> int:
    """Read SPEC_PATH, write the subset to OUT_PATH and report what was kept."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("spec_path", type=Path)
    parser.add_argument("out_path", type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec_path.read_text(encoding="utf-8"))
    subset = build_subset(spec)
    args.out_path.parent.mkdir(parents=True, exist_ok=True)
    args.out_path.write_text(json.dumps(subset, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(
        f"wrote {args.out_path}: {len(KEPT_OPERATIONS)} operations, {len(subset['components']['schemas'])} schemas",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
