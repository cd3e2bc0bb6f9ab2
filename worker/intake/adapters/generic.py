"""boxcut's own envelope (`POST /v1/alerts`): checks every field's type and passes the targets through."""

from __future__ import annotations

from collections.abc import Sequence

from worker.errors import NoIdentityFound, PayloadError
from worker.identity import box_id_problem
from worker.intake.adapters.base import Envelope, as_object, dedupe_targets, default_reason

# Documentation only: the envelope's targets are fixed by the contract and cannot be moved by settings.
DEFAULT_PATHS: tuple[str, ...] = ("targets[]",)

# Which keys may name each kind of target; a target gives exactly one of them.
_TARGET_KEYS: dict[str, tuple[str, str]] = {"user": ("id", "login"), "group": ("id", "name")}


class GenericAdapter:
    """Validates the generic envelope: `id`, `reason`, `severity`, `dry_run` and `targets`."""

    source = "generic"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """The envelope as sent, or PayloadError naming the first field of the wrong type."""
        if paths is not None:
            raise ValueError("the generic envelope's targets are fixed by the contract; paths do not apply")
        body = as_object(payload)
        return [Envelope(
            targets=_targets(body.get("targets")),
            reason=_optional_str(body, "reason") or default_reason(self.source),
            severity=_optional_str(body, "severity"),
            source_event_id=_event_id(body.get("id")),
            link=None,
            dry_run=_dry_run(body.get("dry_run")),
        )]


def _targets(raw: object) -> list[dict[str, str]]:
    if raw is None:
        raise NoIdentityFound(DEFAULT_PATHS)
    if not isinstance(raw, list):
        raise PayloadError("targets", "must be a list")
    if not raw:
        raise NoIdentityFound(DEFAULT_PATHS, note="targets is empty")
    return dedupe_targets(_target(index, item) for index, item in enumerate(raw))


def _target(index: int, raw: object) -> dict[str, str]:
    field = f"targets[{index}]"
    if not isinstance(raw, dict):
        raise PayloadError(field, "must be an object")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _TARGET_KEYS:
        raise PayloadError(f"{field}.type", 'must be "user" or "group"')
    keys = _TARGET_KEYS[kind]
    given = [key for key in keys if raw.get(key) is not None]
    if not given:
        raise PayloadError(field, f"needs an {keys[0]} or a {keys[1]}")
    if len(given) > 1:
        # Two identities in one target could name two different people; acting on either might be wrong.
        raise PayloadError(field, f"gives both {keys[0]} and {keys[1]}; give one")
    key = given[0]
    value = _identity(f"{field}.{key}", raw[key], number_ok=key == "id")
    if key == "id" and (problem := box_id_problem(value)):
        raise PayloadError(f"{field}.id", problem)
    return {"type": kind, key: value}


def _identity(field: str, value: object, *, number_ok: bool) -> str:
    if number_ok and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise PayloadError(field, "must be a string" + (" or an integer" if number_ok else ""))
    if not value.strip():
        raise PayloadError(field, "must not be empty")
    return value.strip()


def _optional_str(body: dict[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(key, "must be a string")
    return value.strip() or None


def _event_id(value: object) -> str | None:
    if value is None:
        return None
    return _identity("id", value, number_ok=True)


def _dry_run(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise PayloadError("dry_run", "must be true or false")
    return value
