"""What every sender adapter shares: the envelope it produces, the protocol it implements, its errors, helpers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from worker.errors import AdapterError, NoIdentityFound, PayloadError
from worker.event_stream.shield import ShieldFacts
from worker.identity import login_key, login_problem
from worker.intake.adapters.fieldpath import Reader, first_found, nodes_at, parse_path, scalar_text, values_at

__all__ = [
    "Adapter",
    "Envelope",
    "as_object",
    "decoded_field",
    "dedupe_targets",
    "default_reason",
    "each_event",
    "looks_like_email",
    "required_logins",
    "resolve_paths",
    "text_at",
    "user_targets",
    "values_at",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Envelope:
    """One alert in the generic envelope's terms, ready to become a job: who to cut off, why, and its event id.

    `targets` use the generic envelope's form: `{"type": "user", "login": ...}`, `{"type": "user", "id": ...}`,
    `{"type": "group", "id": ...}`, `{"type": "group", "name": ...}`. `source_event_id` is None when the sender
    gives no event id; the caller then de-duplicates on the `Idempotency-Key` header.
    """

    targets: list[dict[str, str]]
    reason: str
    severity: str | None
    source_event_id: str | None
    link: str | None
    dry_run: bool = False
    # A Box Shield alert's category, priority and risk score: the rule table decides what its job does.
    shield: ShieldFacts | None = None


class Adapter(Protocol):
    """A sender's payload parser: `source` is its URL name in `POST /v1/alerts/{source}`."""

    source: str

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """Turn one decoded JSON body into envelopes; `paths`, when given, replace the default identity paths."""
        ...


def as_object(payload: object, field: str = "payload") -> dict[str, object]:
    """The payload as a JSON object, or PayloadError: every sender posts an object at the top."""
    if not isinstance(payload, dict):
        raise PayloadError(field, "must be a JSON object")
    return payload


def decoded_field(body: dict[str, object], key: str) -> dict[str, object]:
    """The body with `body[key]` decoded when it came as a string of JSON (a template quoted it), else as is."""
    raw = body.get(key)
    if not isinstance(raw, str):
        return body
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError as error:
        raise PayloadError(key, f"is a string but not JSON ({error.msg})") from error
    return {**body, key: decoded}


def resolve_paths(paths: Sequence[str] | None, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """The identity paths to use: `paths` when given (they replace the defaults), else `defaults`; checked."""
    if paths is None:
        return defaults
    # A lone string is a Sequence[str] too; taken letter by letter it would be nonsense.
    if isinstance(paths, str):
        raise ValueError("paths must be a sequence of field paths, not one string")
    chosen = tuple(paths)
    if not chosen:
        raise ValueError("paths must name at least one field path")
    for path in chosen:
        parse_path(path)
    return chosen


def text_at(payload: object, path: str) -> str | None:
    """An optional text field (a plain path): a string or number as text, None if absent; else PayloadError."""
    nodes = nodes_at(payload, path)
    if not nodes or nodes[0] is None:
        return None
    value = nodes[0]
    if isinstance(value, float):
        return repr(value)
    text = scalar_text(value)
    if text is None and not isinstance(value, str):
        raise PayloadError(path, "must be a string")
    return text


def default_reason(source: str) -> str:
    """The reason recorded when a sender's payload carries none."""
    return f"{source} alert"


def looks_like_email(value: str) -> bool:
    """Whether a value has the shape of an e-mail address (Box logins are e-mail addresses)."""
    return _EMAIL.fullmatch(value) is not None


def user_targets(logins: Iterable[str]) -> list[dict[str, str]]:
    """User targets by login, deduplicated ignoring case (as resolution matches), first spelling and order kept;
    PayloadError for a value that is no login (`login_problem`), raised here so a batch skips only its event."""
    kept = [login.strip() for login in logins if login.strip()]
    for login in kept:
        if problem := login_problem(login):
            raise PayloadError(f"login {login[:100]!r}", f"is not a Box login ({problem})")
    return dedupe_targets({"type": "user", "login": login} for login in kept)


def dedupe_targets(targets: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Targets without repeats, order kept; logins compare by `login_key` (as resolution does), the rest exactly."""
    seen: set[tuple[tuple[str, str], ...]] = set()
    kept: list[dict[str, str]] = []
    for target in targets:
        key = tuple(sorted((k, login_key(v) if k == "login" else v) for k, v in target.items()))
        if key not in seen:
            seen.add(key)
            kept.append(target)
    return kept


def each_event(events: Iterable[T], build: Callable[[T], Envelope]) -> list[Envelope]:
    """One envelope per event of a batch, skipping (with a warning) events that name nobody or hold a bad value
    (an id that is not a Box id), so one odd or hostile event cannot stop the containment of the others; when no
    event is usable, the first refusal is raised."""
    envelopes: list[Envelope] = []
    refusals: list[AdapterError] = []
    for event in events:
        try:
            envelopes.append(build(event))
        except AdapterError as refusal:
            refusals.append(refusal)
    if refusals and not envelopes:
        raise refusals[0]
    for skipped in refusals:
        log.warning("skipped an event of a batch: %s", skipped)
    return envelopes


def required_logins(payload: object, paths: Sequence[str], *, read: Reader = values_at,
                    note: str | None = None) -> list[str]:
    """The identities at the first of `paths` that holds any; NoIdentityFound, naming every path tried, if none."""
    logins = first_found(payload, paths, read)
    if not logins:
        raise NoIdentityFound(paths, note=note)
    return logins
