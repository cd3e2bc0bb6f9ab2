"""The one check of a target's shape, for every entrance: the generic envelope, submitting, offboarding files.

A target is `{"type": "user", "id" | "login": ...}` or `{"type": "group", "id" | "name": ...}`: exactly one
naming key, a string (an id may come as a whole number), not blank once stripped, and an id that is a Box id
(`worker.identity`), and a user's login a login (`login_problem`: an e-mail address, and no character that
would make it compare equal to another login). Entrances add their own rules on top, never fewer.
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.errors import InvalidRequest
from worker.identity import box_id_problem, login_problem

# Which keys may name each kind of target; a target gives exactly one of them.
NAMING_KEYS: dict[str, tuple[str, str]] = {"user": ("id", "login"), "group": ("id", "name")}


def check_target(spec: object, where: str) -> dict[str, str]:
    """The target `spec` names, as `{"type": ..., key: value}` (plus its own `reason`, if it gave one), or
    InvalidRequest naming the field at `where` (e.g. `targets[2].id`) and what is wrong with it."""
    if not isinstance(spec, Mapping):
        raise InvalidRequest(where, "must be an object")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in NAMING_KEYS:
        raise InvalidRequest(f"{where}.type", "must be \"user\" or \"group\"")
    clean = {"type": kind}
    reason = spec.get("reason")
    if isinstance(reason, str) and reason.strip():
        clean["reason"] = reason.strip()  # an offboarding row's own reason, kept with its target
    # A key given as "" counts as given (and is refused as empty): `{"id": "", "login": ...}` may be a sender's bug.
    present = [key for key in NAMING_KEYS[kind] if spec.get(key) is not None]
    first, second = NAMING_KEYS[kind]
    if not present:
        raise InvalidRequest(where, f"needs an {first} or a {second}")
    if len(present) > 1:
        # Two identities in one target could name two different people; acting on either might be wrong.
        raise InvalidRequest(where, f"gives both {first} and {second}; give one")
    key = present[0]
    value = _naming_value(f"{where}.{key}", key, spec[key])
    if kind == "user" and key == "login" and (problem := login_problem(value)):
        raise InvalidRequest(f"{where}.login", f"is not a Box login ({problem})")
    return clean | {key: value}


def _naming_value(field: str, key: str, value: object) -> str:
    """One naming value as stripped text, or InvalidRequest: ids are Box ids, logins and names not blank."""
    if key == "id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string" + (" or an integer" if key == "id" else ""))
    text = value.strip()
    if not text:
        raise InvalidRequest(field, "must not be empty")
    if key == "id" and (problem := box_id_problem(text)):
        raise InvalidRequest(field, problem)
    return text
