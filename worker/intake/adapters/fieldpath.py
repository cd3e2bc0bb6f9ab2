"""Field paths: say where in a sender's JSON payload an identity (or another value) sits.

A path is dot-separated keys. A key followed by `[]` means "every element of the list under that key";
`[field=value]` keeps only the elements (objects) whose `field` equals `value`, ignoring case. A segment
that is only `[]` steps into the current node, so `[].user` reads `user` from every element of a top-level list.

    result.user                          the `user` key of the `result` object
    alerts[].user.email                  `user.email` of every alert
    ResultsJson[].user                   `user` of every result row
    Entities[Type=account].Name          `Name` of every entity whose `Type` is "account"

`values_at` returns every string (stripped, empties dropped) or integer (as a string) found; a list of such
values at the end of a path counts element by element (Splunk sends multivalue fields as lists). Objects,
floats, booleans and nulls are ignored: they are never identities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# One segment: an optional key, then an optional `[]` or `[field=value]`; the value may hold dots.
_SEGMENT = re.compile(r"(?P<key>[^.\[\]=]*)(?P<select>\[(?:(?P<field>[^\[\]=]+)=(?P<value>[^\[\]]*))?\])?")

Reader = Callable[[object, str], list[str]]


@dataclass(frozen=True)
class Step:
    """One segment of a parsed path: a key to follow, then maybe a list to fan out over (filtered)."""

    key: str
    each: bool
    match: tuple[str, str] | None


@lru_cache(maxsize=256)
def parse_path(path: str) -> tuple[Step, ...]:
    """Split a path into steps; a malformed path (`a..b`, `a[`, a trailing dot) raises ValueError."""
    steps: list[Step] = []
    pos = 0
    while True:
        found = _SEGMENT.match(path, pos)
        if found is None or not (found["key"] or found["select"]):
            raise ValueError(f"bad field path {path!r} at character {pos}")
        match = (found["field"].strip(), found["value"].strip()) if found["field"] else None
        steps.append(Step(key=found["key"], each=bool(found["select"]), match=match))
        pos = found.end()
        if pos == len(path):
            return tuple(steps)
        if path[pos] != ".":
            raise ValueError(f"bad field path {path!r} at character {pos}")
        pos += 1


def nodes_at(payload: object, path: str) -> list[object]:
    """Every JSON node (of any type) that `path` reaches in `payload`, in document order."""
    nodes: list[object] = [payload]
    for step in parse_path(path):
        nodes = [child for node in nodes for child in _apply(step, node)]
    return nodes


def _apply(step: Step, node: object) -> list[object]:
    if step.key:
        if not isinstance(node, dict) or step.key not in node:
            return []
        node = node[step.key]
    if not step.each:
        return [node]
    # A sender that has one element may send it bare instead of in a list; strings never fan out.
    elements: list[object] = list(node) if isinstance(node, list) else [node] if isinstance(node, dict) else []
    if step.match is None:
        return elements
    field, wanted = step.match
    return [item for item in elements if isinstance(item, dict) and _same(item.get(field), wanted)]


def _same(value: object, wanted: str) -> bool:
    return isinstance(value, str) and value.strip().casefold() == wanted.casefold()


def scalar_text(value: object) -> str | None:
    """A string (stripped) or an integer as a string; None for empty strings and every other type."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def values_at(payload: object, path: str) -> list[str]:
    """Every string or integer (as a string) found at `path`, in document order; see the module docstring."""
    found: list[str] = []
    for node in nodes_at(payload, path):
        for item in node if isinstance(node, list) else [node]:
            text = scalar_text(item)
            if text is not None:
                found.append(text)
    return found


def split_list_head(paths: Sequence[str]) -> tuple[str, list[str]] | None:
    """The list segment that every path starts with (`alerts[]`) and the rest of each path, or None."""
    first = paths[0]
    end = first.find("]")
    if end < 0:
        return None
    head = first[: end + 1]
    if not all(path.startswith(head + ".") for path in paths):
        return None
    return head, [path[len(head) + 1 :] for path in paths]


def first_found(payload: object, paths: Sequence[str], read: Reader = values_at) -> list[str]:
    """Values of the first path (in order) that yields any: later paths are fallbacks, not additions.

    When every path starts with the same list (`alerts[].user.email`, `alerts[].user.name`), the fallback is
    decided per element, so an alert without an e-mail still counts when another alert has one.
    """
    split = split_list_head(paths)
    if split is None:
        return _first(payload, paths, read)
    head, rests = split
    return [value for element in nodes_at(payload, head) for value in _first(element, rests, read)]


def _first(payload: object, paths: Sequence[str], read: Reader) -> list[str]:
    for path in paths:
        found = read(payload, path)
        if found:
            return found
    return []
