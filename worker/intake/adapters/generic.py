"""boxcut's own envelope (`POST /v1/alerts`): checks every field's type and passes the targets through."""

from __future__ import annotations

from collections.abc import Sequence

from worker.errors import InvalidRequest, NoIdentityFound, PayloadError
from worker.intake.adapters.base import Envelope, as_object, dedupe_targets, default_reason
from worker.jobs.targets import check_target

# Documentation only: the envelope's targets are fixed by the contract and cannot be moved by settings.
DEFAULT_PATHS: tuple[str, ...] = ("targets[]",)



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
    """One envelope target, checked by the one target check (`worker.jobs.targets`), its naming key only."""
    try:
        target = check_target(raw, f"targets[{index}]")
    except InvalidRequest as error:
        raise PayloadError(error.field, error.problem) from None
    target.pop("reason", None)  # the envelope's reason is the job's; targets carry none of their own
    return target


def _event_id(value: object) -> str | None:
    """The envelope's `id`: a string or a whole number, not blank."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise PayloadError("id", "must be a string or an integer")
    if not value.strip():
        raise PayloadError("id", "must not be empty")
    return value.strip()


def _optional_str(body: dict[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(key, "must be a string")
    return value.strip() or None


def _dry_run(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise PayloadError("dry_run", "must be true or false")
    return value
